/* Signatures of disk image formats, to refuse an image declared raw that is in fact another
 * format.
 *
 * QEMU opens a raw image as raw and never looks inside, but the bytes stay a hazard: any tool
 * that later probes the file (qemu-img info without -f, a backup or conversion script, an
 * operator's guestmount) would follow a qcow2 backing file or a VMDK descriptor's extents
 * naming host files.  OpenStack refuses such images since OSSA-2024-001 (its format
 * inspector); so do we, by the same magic numbers, in the first sector and, for VHD, in the
 * footer of the last sector. */
#include "storage/qcow2/qcow2.h"
#include "storage/qcow2/qcow2-private.h"

#include <string.h>

static const struct signature {
    const char *format;
    const char *where; /* for messages */
    bool in_tail;      /* at offset in the last QCOW2_PROBE_TAIL_SIZE bytes */
    size_t offset;
    const char *magic;
    size_t magic_size;
} signatures[] = {
#define SIG(format, where, in_tail, offset, magic)                                                 \
    {                                                                                              \
        format, where, in_tail, offset, magic, sizeof(magic) - 1                                   \
    }
    SIG("qcow2", "\"QFI\\xfb\" at offset 0", false, 0, "QFI\xfb"),
    SIG("QED", "\"QED\\0\" at offset 0", false, 0, "QED\0"),
    SIG("VMDK", "\"KDMV\" (sparse extent) at offset 0", false, 0, "KDMV"),
    SIG("VMDK", "\"COWD\" (ESX sparse extent) at offset 0", false, 0, "COWD"),
    SIG("VMDK", "a descriptor (\"# Disk DescriptorFile\") at offset 0", false, 0,
        "# Disk DescriptorFile"),
    SIG("VHDX", "\"vhdxfile\" at offset 0", false, 0, "vhdxfile"),
    SIG("VHD", "\"conectix\" at offset 0", false, 0, "conectix"),
    SIG("VHD", "\"conectix\" in the footer (the last 512 bytes)", true, 0, "conectix"),
    SIG("VDI", "signature 0xbeda107f at offset 0x40", false, 0x40, "\x7f\x10\xda\xbe"),
    SIG("LUKS", "\"LUKS\\xba\\xbe\" at offset 0", false, 0, "LUKS\xba\xbe"),
    SIG("Parallels", "\"WithoutFreeSpace\" at offset 0", false, 0, "WithoutFreeSpace"),
    SIG("Parallels", "\"WithouFreSpacExt\" at offset 0", false, 0, "WithouFreSpacExt"),
    SIG("Bochs", "\"Bochs Virtual HD Image\" at offset 0", false, 0, "Bochs Virtual HD Image"),
#undef SIG
};

const char *
qcow2_probe_foreign(const uint8_t *head, size_t head_size, const uint8_t *tail, const char **where)
{
    for (size_t i = 0; i < NA_ARRAY_SIZE(signatures); i++) {
        const struct signature *s = &signatures[i];
        const uint8_t *buf = s->in_tail ? tail : head;
        size_t size = s->in_tail ? (tail ? QCOW2_PROBE_TAIL_SIZE : 0) : head_size;
        if (buf && s->offset + s->magic_size <= size &&
            memcmp(buf + s->offset, s->magic, s->magic_size) == 0) {
            *where = s->where;
            return s->format;
        }
    }
    return NULL;
}
