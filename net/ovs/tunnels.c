/* The integration bridge's tunnel ports: which ones it should have (from the peers and the
 * node's own networks), and making the OVS database hold exactly those.  See tunnels.h. */
#include <config.h>

#include "net/ovs/tunnels.h"
#include "net/ovs/ovs-private.h"

#include <stdlib.h>
#include <string.h>

#include "openvswitch/vlog.h"
#include "ovsdb-idl.h"

void
ovs_tunnels_clear(struct ovs_tunnel_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->items[i].remote_ip);
        free(s->items[i].vnis);
    }
    free(s->items);
    s->items = NULL;
    s->n = 0;
}

static bool
has_vni(const uint32_t *vnis, size_t n, uint32_t vni)
{
    for (size_t i = 0; i < n; i++)
        if (vnis[i] == vni)
            return true;
    return false;
}

static struct ovs_tunnel *
tunnel_find(const struct ovs_tunnel_set *tunnels, const char *remote_ip)
{
    for (size_t i = 0; remote_ip && i < tunnels->n; i++)
        if (strcmp(tunnels->items[i].remote_ip, remote_ip) == 0)
            return &tunnels->items[i];
    return NULL;
}

/* The tunnel to remote_ip in out, added when it is not there yet. */
static struct ovs_tunnel *
tunnel_get(struct ovs_tunnel_set *out, const char *remote_ip)
{
    struct ovs_tunnel *t = tunnel_find(out, remote_ip);
    if (!t) {
        t = &out->items[out->n++];
        t->remote_ip = na_xstrdup(remote_ip);
    }
    return t;
}

static void
tunnel_add_vni(struct ovs_tunnel *t, uint32_t vni)
{
    t->vnis = na_xrealloc(t->vnis, (t->n_vnis + 1) * sizeof(*t->vnis));
    t->vnis[t->n_vnis++] = vni;
}

void
ovs_tunnels_compute(const struct ovs_tunnel_config *cfg, const uint32_t *local_vnis, size_t n_local,
                    const struct ovs_net_peer *peers, size_t n_peers, struct ovs_tunnel_set *out)
{
    out->items = na_xcalloc(n_peers + 1, sizeof(*out->items));
    out->n = 0;
    for (size_t i = 0; cfg->local_ip && i < n_peers; i++) {
        const struct ovs_net_peer *peer = &peers[i];
        if (!*peer->endpoint || strcmp(peer->endpoint, cfg->local_ip) == 0)
            continue;
        for (size_t j = 0; j < peer->n_vnis; j++)
            if (has_vni(local_vnis, n_local, peer->vnis[j]))
                tunnel_add_vni(tunnel_get(out, peer->endpoint), peer->vnis[j]);
    }
    for (size_t k = 0; k < out->n; k++)
        out->items[k].n_vnis = na_u32_sort_unique(out->items[k].vnis, out->items[k].n_vnis);
}

void
ovs_tunnels_from_bridge(const struct ovs_tunnel_config *cfg, const struct ovsrec_bridge *br,
                        const uint32_t *local_vnis, size_t n_local, struct ovs_tunnel_set *out)
{
    out->items = na_xcalloc(br->n_ports + 1, sizeof(*out->items));
    out->n = 0;
    for (size_t i = 0; cfg->local_ip && i < br->n_ports; i++) {
        const char *remote = smap_get(&br->ports[i]->external_ids, "nodeagent-tunnel");
        const char *vnis = smap_get(&br->ports[i]->external_ids, "nodeagent-vnis");
        if (!remote || !vnis || tunnel_find(out, remote))
            continue;
        struct ovs_tunnel *t = tunnel_get(out, remote);
        for (const char *p = vnis; *p;) {
            char *end = NULL;
            unsigned long v = strtoul(p, &end, 10);
            if (end == p || v > UINT32_MAX)
                break;
            if (has_vni(local_vnis, n_local, (uint32_t)v))
                tunnel_add_vni(t, (uint32_t)v);
            p = *end == ',' ? end + 1 : end;
        }
        t->n_vnis = na_u32_sort_unique(t->vnis, t->n_vnis);
    }
}

/* Whether the tunnel interface is what the configuration asks for. */
static bool
iface_right(const struct ovs_tunnel_config *cfg, const struct ovsrec_interface *iface,
            const char *remote_ip)
{
    const char *remote = smap_get(&iface->options, "remote_ip");
    const char *key = smap_get(&iface->options, "key");
    const char *local = smap_get(&iface->options, "local_ip");
    return cfg->local_ip && strcmp(iface->type, cfg->type) == 0 && remote &&
           strcmp(remote, remote_ip) == 0 && key && strcmp(key, "flow") == 0 && local &&
           strcmp(local, cfg->local_ip) == 0;
}

/* "300,301": a tunnel's networks as recorded on its port (external_ids:nodeagent-vnis). */
static char *
vnis_text(const struct ovs_tunnel *t)
{
    size_t size = 0;
    char *text = NULL;
    FILE *f = open_memstream(&text, &size);
    for (size_t i = 0; i < t->n_vnis; i++)
        fprintf(f, "%s%u", i ? "," : "", t->vnis[i]);
    fclose(f);
    return text;
}

static void
record_vnis(const struct ovsrec_port *port, const struct ovs_tunnel *t)
{
    char *vnis = vnis_text(t);
    const char *had = smap_get(&port->external_ids, "nodeagent-vnis");
    if (!had || strcmp(had, vnis) != 0)
        ovsrec_port_update_external_ids_setkey(port, "nodeagent-vnis", vnis);
    free(vnis);
}

static void
add_port(const struct ovs_tunnel_config *cfg, struct ovsdb_idl_txn *txn,
         const struct ovsrec_bridge *br, const struct ovs_tunnel *t)
{
    char name[16];
    ovs_net_tunnel_port_name(t->remote_ip, name);
    struct ovsrec_interface *iface = ovsrec_interface_insert(txn);
    ovsrec_interface_set_name(iface, name);
    ovsrec_interface_set_type(iface, cfg->type);
    struct smap options = SMAP_INITIALIZER(&options);
    smap_add(&options, "remote_ip", t->remote_ip);
    smap_add(&options, "local_ip", cfg->local_ip);
    smap_add(&options, "key", "flow");
    ovsrec_interface_set_options(iface, &options);
    smap_destroy(&options);
    struct ovsrec_port *port = ovsrec_port_insert(txn);
    ovsrec_port_set_name(port, name);
    ovsrec_port_set_interfaces(port, &iface, 1);
    ovsrec_port_update_external_ids_setkey(port, "nodeagent-tunnel", t->remote_ip);
    record_vnis(port, t);
    ovsrec_bridge_update_ports_addvalue(br, port);
    na_log(NA_LOG_INFO, NULL, "adding a tunnel port", "bridge=%s port=%s type=%s remote_ip=%s",
           cfg->bridge, name, cfg->type, t->remote_ip);
}

void
ovs_tunnels_ensure(const struct ovs_tunnel_config *cfg, struct ovsdb_idl_txn *txn,
                   const struct ovsrec_bridge *br, const struct ovs_tunnel_set *want)
{
    bool *present = na_xcalloc(want->n + 1, sizeof(*present));
    for (size_t i = 0; i < br->n_ports; i++) {
        const struct ovsrec_port *port = br->ports[i];
        const char *remote = smap_get(&port->external_ids, "nodeagent-tunnel");
        if (!remote)
            continue;
        const struct ovs_tunnel *t = tunnel_find(want, remote);
        if (t && port->n_interfaces == 1 && iface_right(cfg, port->interfaces[0], remote)) {
            present[t - want->items] = true;
            record_vnis(port, t);
            continue;
        }
        na_log(NA_LOG_INFO, NULL, "removing a tunnel port", "bridge=%s port=%s remote_ip=%s",
               cfg->bridge, port->name, remote);
        ovsrec_bridge_update_ports_delvalue(br, port);
    }
    for (size_t k = 0; k < want->n; k++)
        if (!present[k])
            add_port(cfg, txn, br, &want->items[k]);
    free(present);
}

int
ovs_tunnels_ofport(const struct ovs_tunnel_config *cfg, const struct ovsrec_bridge *br,
                   const char *remote_ip)
{
    for (size_t i = 0; br && i < br->n_ports; i++) {
        const struct ovsrec_port *port = br->ports[i];
        const char *remote = smap_get(&port->external_ids, "nodeagent-tunnel");
        if (!remote || strcmp(remote, remote_ip) != 0 || port->n_interfaces != 1)
            continue;
        const struct ovsrec_interface *iface = port->interfaces[0];
        if (iface_right(cfg, iface, remote_ip) && iface->n_ofport && iface->ofport[0] > 0)
            return (int)iface->ofport[0];
    }
    return 0;
}
