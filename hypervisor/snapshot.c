/* Internal snapshots through libvirt: create, revert, delete, list (snapshot.h). */
#include "hypervisor/snapshot.h"
#include "hypervisor/hypervisor-private.h"

#include <errno.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdlib.h>
#include <string.h>

static void
snapshot_free(virDomainSnapshotPtr *s)
{
    if (*s)
        virDomainSnapshotFree(*s);
}

#define cleanup_snapshot __attribute__((cleanup(snapshot_free)))

static bool
last_error_is(int code)
{
    virErrorPtr e = virGetLastError();
    return e && e->code == code;
}

void
hv_snapshots_free(struct hv_snapshot *snaps, size_t n)
{
    for (size_t i = 0; snaps && i < n; i++) {
        free(snaps[i].name);
        free(snaps[i].parent);
        free(snaps[i].description);
        free(snaps[i].state);
    }
    free(snaps);
}

int
hv_snapshot_supported(struct hv_conn *conn, const char *uuid, struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "snapshot", &c, err);
    if (ret < 0)
        return ret;
    cleanup_free char *xml = virDomainGetXMLDesc(c.dom, VIR_DOMAIN_XML_INACTIVE);
    if (!xml)
        return hv_error(err, "read definition of", uuid);
    if (strstr(xml, "<loader") || strstr(xml, "<nvram"))
        return na_error_quiet(err, NA_CODE_UNSUPPORTED, ENOTSUP,
                              "instance %s boots with UEFI firmware (pflash): libvirt keeps no "
                              "internal snapshot of it",
                              uuid);
    struct hv_domain_meta meta;
    if ((ret = hv_domain_meta_parse(xml, &meta, err)) < 0)
        return ret;
    for (size_t i = 0; i < meta.n_disks; i++) {
        const struct hv_domain_disk *d = &meta.disks[i];
        if (d->device && strcmp(d->device, "disk") == 0 && d->format &&
            strcmp(d->format, "qcow2") != 0) {
            na_error_quiet(err, NA_CODE_UNSUPPORTED, ENOTSUP,
                           "instance %s has a writable %s disk (%s): internal snapshots need "
                           "qcow2",
                           uuid, d->format, d->target ? d->target : "?");
            hv_domain_meta_clear(&meta);
            return -ENOTSUP;
        }
    }
    hv_domain_meta_clear(&meta);
    return 0;
}

/* The <domainsnapshot> document that names the snapshot; every string escaped. */
static char *
snapshot_xml(const char *name, const char *description)
{
    xmlChar *n = xmlEncodeSpecialChars(NULL, (const xmlChar *)name);
    xmlChar *d = xmlEncodeSpecialChars(NULL, (const xmlChar *)description);
    char *xml = na_xasprintf("<domainsnapshot><name>%s</name><description>%s</description>"
                             "</domainsnapshot>",
                             (const char *)n, (const char *)d);
    xmlFree(n);
    xmlFree(d);
    return xml;
}

static int
snapshot_exists(virDomainPtr dom, const char *name)
{
    virDomainSnapshotPtr s = virDomainSnapshotLookupByName(dom, name, 0);
    if (s) {
        virDomainSnapshotFree(s);
        return 1;
    }
    return last_error_is(VIR_ERR_NO_DOMAIN_SNAPSHOT) ? 0 : -1;
}

int
hv_snapshot_create(struct hv_conn *conn, const char *uuid, const char *name,
                   const char *description, struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "snapshot", &c, err);
    if (ret < 0)
        return ret;
    int exists = snapshot_exists(c.dom, name);
    if (exists < 0)
        return hv_error(err, "look up the snapshot of", uuid);
    if (exists)
        return 0;
    cleanup_free char *xml = snapshot_xml(name, description);
    virDomainSnapshotPtr s = virDomainSnapshotCreateXML(c.dom, xml, 0);
    if (s) {
        virDomainSnapshotFree(s);
        return 0;
    }
    /* An attempt a crash cut short may have still been running in libvirt, and finished. */
    ret = hv_error(err, "snapshot", uuid);
    if (snapshot_exists(c.dom, name) == 1) {
        na_error_clear(err);
        return 0;
    }
    na_error_wrap(err, "snapshot `%s`", name);
    return ret;
}

int
hv_snapshot_revert(struct hv_conn *conn, const char *uuid, const char *name, struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "revert", &c, err);
    if (ret < 0)
        return ret;
    cleanup_snapshot virDomainSnapshotPtr s = virDomainSnapshotLookupByName(c.dom, name, 0);
    if (!s) {
        if (last_error_is(VIR_ERR_NO_DOMAIN_SNAPSHOT))
            return na_error_quiet(err, NA_CODE_NOT_FOUND, ENOENT,
                                  "instance %s has no snapshot `%s` in libvirt", uuid, name);
        return hv_error(err, "look up the snapshot of", uuid);
    }
    if (virDomainRevertToSnapshot(s, 0) < 0)
        return hv_error(err, "revert", uuid);
    return 0;
}

int
hv_snapshot_delete(struct hv_conn *conn, const char *uuid, const char *name, bool children,
                   struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "delete a snapshot of", &c, err);
    if (ret < 0)
        return ret;
    cleanup_snapshot virDomainSnapshotPtr s = virDomainSnapshotLookupByName(c.dom, name, 0);
    if (!s)
        return last_error_is(VIR_ERR_NO_DOMAIN_SNAPSHOT)
                   ? 0
                   : hv_error(err, "look up the snapshot of", uuid);
    if (virDomainSnapshotDelete(s, children ? VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN : 0) < 0)
        return hv_error(err, "delete a snapshot of", uuid);
    return 0;
}

/* --- reading libvirt's snapshot XML ---------------------------------------------------- */

static xmlNodePtr
child(xmlNodePtr parent, const char *name)
{
    for (xmlNodePtr n = parent ? parent->children : NULL; n; n = n->next)
        if (n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0)
            return n;
    return NULL;
}

static char *
child_text(xmlNodePtr parent, const char *name)
{
    xmlNodePtr n = child(parent, name);
    xmlChar *t = n ? xmlNodeGetContent(n) : NULL;
    char *s = na_xstrdup(t ? (const char *)t : "");
    xmlFree(t);
    return s;
}

int
hv_snapshot_parse_xml(const char *xml, struct hv_snapshot *s, struct na_error **err)
{
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "snapshot.xml", NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!root || strcmp((const char *)root->name, "domainsnapshot") != 0) {
        xmlFreeDoc(doc);
        return na_error_set(err, NA_CODE_HYPERVISOR, 0,
                            "libvirt's snapshot XML is not a "
                            "<domainsnapshot>");
    }
    s->description = child_text(root, "description");
    s->state = child_text(root, "state");
    cleanup_free char *created = child_text(root, "creationTime");
    s->created_s = strtoll(created, NULL, 10);
    xmlNodePtr memory = child(root, "memory");
    xmlChar *kind = memory ? xmlGetProp(memory, (const xmlChar *)"snapshot") : NULL;
    s->memory = kind && strcmp((const char *)kind, "internal") == 0;
    xmlFree(kind);
    xmlFreeDoc(doc);
    return 0;
}

static int
describe(virDomainSnapshotPtr snap, struct hv_snapshot *s, struct na_error **err)
{
    s->name = na_xstrdup(virDomainSnapshotGetName(snap));
    virDomainSnapshotPtr parent = virDomainSnapshotGetParent(snap, 0);
    s->parent = na_xstrdup(parent ? virDomainSnapshotGetName(parent) : "");
    if (parent)
        virDomainSnapshotFree(parent);
    else if (!last_error_is(VIR_ERR_NO_DOMAIN_SNAPSHOT))
        return hv_error(err, "parent of snapshot", s->name);
    s->current = virDomainSnapshotIsCurrent(snap, 0) == 1;
    cleanup_free char *xml = virDomainSnapshotGetXMLDesc(snap, 0);
    if (!xml)
        return hv_error(err, "read snapshot", s->name);
    return hv_snapshot_parse_xml(xml, s, err);
}

int
hv_snapshot_list(struct hv_conn *conn, const char *uuid, struct hv_snapshot **out, size_t *n,
                 struct na_error **err)
{
    *out = NULL;
    *n = 0;
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "list the snapshots of", &c, err);
    if (ret < 0)
        return ret;
    virDomainSnapshotPtr *snaps = NULL;
    int count = virDomainListAllSnapshots(c.dom, &snaps, 0);
    if (count < 0)
        return hv_error(err, "list the snapshots of", uuid);
    struct hv_snapshot *list = na_xcalloc((size_t)count + 1, sizeof(*list));
    ret = 0;
    for (int i = 0; i < count; i++) {
        if (ret == 0)
            ret = describe(snaps[i], &list[i], err);
        virDomainSnapshotFree(snaps[i]);
    }
    free(snaps);
    if (ret < 0) {
        hv_snapshots_free(list, (size_t)count);
        return ret;
    }
    *out = list;
    *n = (size_t)count;
    return 0;
}
