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

/* stats.c: one domain's typed parameters from virConnectGetAllDomainStats() into *out (which
 * it first zeroes).  -EINVAL when domain_name is not "na-<uuid>"; unknown, mistyped or
 * out-of-range parameters are skipped. */
int hv_stats_parse(const char *domain_name, const virTypedParameter *params, int n_params,
                   struct hv_guest_stats *out);

#endif
