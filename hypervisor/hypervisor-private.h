/* Shared by the files of hypervisor/ only. */
#ifndef NODEAGENT_HYPERVISOR_PRIVATE_H
#define NODEAGENT_HYPERVISOR_PRIVATE_H

#include "hypervisor/hypervisor.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

/* A referenced connection for one call (virConnectClose() it), or NULL with err set
 * (UNAVAILABLE) while libvirt is not connected. */
virConnectPtr hv_borrow(struct hv_conn *conn, struct na_error **err);
/* Fills err from libvirt's last error: NOT_FOUND (-ENOENT) for a missing domain, else
 * HYPERVISOR. */
int hv_error(struct na_error **err, const char *what, const char *uuid);

/* connection.c: the domain and its connection for one call.  hv_call_begin(): 0 with c->dom
 * set; -ENOENT (NOT_FOUND) when there is no such domain, -ENOTCONN while libvirt is not
 * connected.  Release with hv_call_end(), or declare the struct cleanup_hv_call. */
struct hv_call {
    virConnectPtr virt;
    virDomainPtr dom;
};
int hv_call_begin(struct hv_conn *conn, const char *uuid, const char *what, struct hv_call *c,
                  struct na_error **err);
void hv_call_end(struct hv_call *c);
#define cleanup_hv_call __attribute__((cleanup(hv_call_end)))

/* stats.c: one domain's typed parameters from virConnectGetAllDomainStats() into *out (which
 * it first zeroes).  -EINVAL when domain_name is not "na-<uuid>"; unknown, mistyped or
 * out-of-range parameters are skipped. */
int hv_stats_parse(const char *domain_name, const virTypedParameter *params, int n_params,
                   struct hv_guest_stats *out);

#endif
