/* libFuzzer target: libvirt's domain XML as the agent reads it back
 * (hv_domain_meta_parse: virDomainGetXMLDesc's answer for every domain on the host, ours
 * or not, at start and at each reconciliation).  libvirt is trusted less than it seems: a
 * domain anyone defines on the host reaches this parser.  Finds crashes, leaks and
 * undefined behaviour in the parser and the XPath reads; checks that an error comes with a
 * message and no fields, that a success that claims a domain as ours has its uuid, that an
 * instance spec read back is within its bound and a DAC uid within uid_t, that the owner of
 * any domain claimed as ours can be rewritten (hv_domain_meta_with_owner, for adoption) and
 * of no other, and that clearing leaves nothing behind.
 *
 * fuzz-sources: hypervisor/domain_xml.c
 * fuzz-pkgs: libxml-2.0
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hypervisor/hypervisor.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    hv_domain_xml_init();
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *xml = malloc(size + 1);
    memcpy(xml, data, size);
    xml[size] = '\0';
    struct hv_domain_meta meta;
    struct na_error *err = NULL;
    int ret = hv_domain_meta_parse(xml, &meta, &err);
    if ((ret < 0) != (err != NULL) || (err && !err->msg))
        __builtin_trap();
    if (ret < 0) {
        if (meta.is_ours || meta.disks || meta.nics || meta.uuid)
            __builtin_trap();
    } else {
        if (meta.is_ours && !meta.uuid)
            __builtin_trap();
        if (meta.instance_spec_size > HV_INSTANCE_SPEC_MAX_SIZE ||
            (meta.instance_spec_size && !meta.instance_spec) ||
            (meta.instance_spec && !meta.is_ours))
            __builtin_trap();
        if (meta.dac_uid < -1 || meta.dac_uid > (int64_t)UINT32_MAX ||
            (meta.dac_uid < 0) != (meta.dac_gid < 0))
            __builtin_trap();
        /* What adoption does with it: ours parses, so its owner can be rewritten. */
        char *element = NULL;
        struct na_error *owner_err = NULL;
        int owned = hv_domain_meta_with_owner(xml, "n1", "00000000-0000-4000-8000-000000000000",
                                              &element, &owner_err);
        if (meta.is_ours ? owned < 0 || !element : owned >= 0 || element || !owner_err)
            __builtin_trap();
        free(element);
        na_error_clear(&owner_err);
        if ((meta.n_disks && !meta.disks) || (meta.n_nics && !meta.nics))
            __builtin_trap();
    }
    na_error_clear(&err);
    hv_domain_meta_clear(&meta);
    if (meta.disks || meta.nics || meta.domain_name || meta.n_disks || meta.n_nics ||
        meta.instance_spec)
        __builtin_trap();
    free(xml);
    return 0;
}
