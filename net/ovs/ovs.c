/* The OVS thread: ovsdb-idl and OpenFlow, converging the integration bridge to the desired
 * ports and peers.  See ovs.h for what it does; this file is the how (the flow table is
 * computed in flows.c, the tunnel ports are managed in tunnels.c).
 *
 * Locking: cfg strings, thread, wake and exit are set before the thread starts and never
 * change.  Fields marked (mu) are shared with the agent's threads under mu.  Everything
 * else belongs to the OVS thread alone.
 */
#include <config.h>

#include "net/ovs/ovs-private.h"
#include "net/ovs/tunnels.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "fatal-signal.h"
#include "latch.h"
#include "lib/vswitch-idl.h"
#include "openvswitch/ofp-bundle.h"
#include "openvswitch/ofp-ct.h"
#include "openvswitch/ofp-errors.h"
#include "openvswitch/ofp-flow.h"
#include "openvswitch/ofp-meter.h"
#include "openvswitch/ofp-msgs.h"
#include "openvswitch/ofp-util.h"
#include "openvswitch/ofpbuf.h"
#include "openvswitch/poll-loop.h"
#include "openvswitch/vconn.h"
#include "openvswitch/vlog.h"
#include "ovs-thread.h"
#include "ovsdb-idl.h"
#include "timeval.h"
#include "util.h"

/* A desired port, owning its strings. */
struct owned_port {
    struct ovs_net_port view; /* points into the fields below */
    char *id;
    char *mac;
    char **ips;
    size_t n_ips;
    char **groups;
    size_t n_groups;
};

struct port_set {
    struct owned_port *items;
    size_t n;
};

/* When the OVS thread first saw a port's interface on the bridge, for the `port bound` log
 * line (how long the interface waited for its flows). */
struct port_seen {
    char *id;
    int ofport;
    uint64_t seen_ns; /* na_mono_ns() */
    bool bound;
};

struct ovs_net {
    char *ovsdb;
    char *bridge;
    char *datapath_type;
    char *tunnel_type;
    char *local_ip;                      /* NULL: no tunnels */
    struct ovs_tunnel_config tunnel_cfg; /* points at bridge, tunnel_type, local_ip */
    char *openflow;                      /* "unix:<rundir>/<bridge>.mgmt" */
    char *vswitchd_pidfile;              /* "<rundir>/ovs-vswitchd.pid" */
    pthread_t thread;
    struct latch wake; /* set by the agent when the desired ports change */
    struct latch exit;

    pthread_mutex_t mu;
    pthread_cond_t bound_changed;
    struct port_set desired;          /* (mu) */
    struct ovs_sg_set desired_groups; /* (mu) */
    struct ovs_net_peer *peers;       /* (mu) owned copies */
    size_t n_peers;                   /* (mu) */
    bool peers_known;                 /* (mu) ovs_net_set_peers has been called */
    bool ports_set;                   /* (mu) ovs_net_set_ports has been called */
    uint64_t desired_gen;             /* (mu) bumped by every ovs_net_set_ports/peers */
    uint64_t converged_gen;           /* (mu) the desired_gen the bridge's flows last matched */
    char **bound;                     /* (mu) ids of the ports whose flows are installed */
    size_t n_bound;                   /* (mu) */
    bool db_up, of_up;                /* (mu) */

    /* The OVS thread's own. */
    struct port_set ports;    /* a copy of desired */
    struct ovs_sg_set groups; /* a copy of desired_groups */
    int *zones;               /* the ports' zones (ofports) the installed flows use */
    size_t n_zones;
    bool ports_known;              /* the agent has set its ports: net->ports is what it wants */
    bool zones_loaded;             /* zones holds (at least) what the bridge recorded at start */
    struct ovs_tunnel_set tunnels; /* computed from ports and peers */
    struct port_seen *seen;        /* one per port with an interface on the bridge */
    size_t n_seen;
    bool tunnels_known; /* false: peers unknown yet, tunnels as recorded in OVS */
    uint64_t ports_gen;
    struct ovs_flows installed; /* what the bridge holds, as far as the thread knows */
    bool installed_known;       /* false after a (re)connection: replace everything */
    struct ovs_meters meters;   /* the meters the bridge holds, as far as the thread knows */
    bool meters_known;          /* false after a (re)connection */
    struct vconn *vconn;
    long long retry_at;
};

static void
port_set_clear(struct port_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->items[i].id);
        free(s->items[i].mac);
        for (size_t j = 0; j < s->items[i].n_ips; j++)
            free(s->items[i].ips[j]);
        free(s->items[i].ips);
        for (size_t j = 0; j < s->items[i].n_groups; j++)
            free(s->items[i].groups[j]);
        free(s->items[i].groups);
    }
    free(s->items);
    s->items = NULL;
    s->n = 0;
}

static void
port_set_copy(struct port_set *dst, const struct ovs_net_port *ports, size_t n)
{
    dst->items = na_xcalloc(n + 1, sizeof(*dst->items));
    dst->n = n;
    for (size_t i = 0; i < n; i++) {
        struct owned_port *o = &dst->items[i];
        o->id = na_xstrdup(ports[i].id);
        o->mac = na_xstrdup(ports[i].mac);
        o->n_ips = ports[i].n_ips;
        o->ips = na_xcalloc(o->n_ips + 1, sizeof(*o->ips));
        for (size_t j = 0; j < o->n_ips; j++)
            o->ips[j] = na_xstrdup(ports[i].ips[j]);
        o->n_groups = ports[i].n_groups;
        o->groups = na_xcalloc(o->n_groups + 1, sizeof(*o->groups));
        for (size_t j = 0; j < o->n_groups; j++)
            o->groups[j] = na_xstrdup(ports[i].groups[j]);
        o->view = (struct ovs_net_port){.id = o->id,
                                        .vni = ports[i].vni,
                                        .mac = o->mac,
                                        .ips = (const char *const *)o->ips,
                                        .n_ips = o->n_ips,
                                        .bandwidth = ports[i].bandwidth,
                                        .groups = (const char *const *)o->groups,
                                        .n_groups = o->n_groups};
    }
}

static void
peers_free(struct ovs_net_peer *peers, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)peers[i].node_id);
        free((char *)peers[i].endpoint);
        free((uint32_t *)peers[i].vnis);
    }
    free(peers);
}

/* The networks of the ports, ascending, without repeats. */
static uint32_t *
local_vnis(const struct port_set *ports, size_t *n)
{
    uint32_t *v = na_xcalloc(ports->n + 1, sizeof(*v));
    for (size_t i = 0; i < ports->n; i++)
        v[i] = ports->items[i].view.vni;
    *n = na_u32_sort_unique(v, ports->n);
    return v;
}

/* --- the database side ----------------------------------------------------------------- */

static const struct ovsrec_bridge *
find_bridge(struct ovsdb_idl *idl, const char *name)
{
    const struct ovsrec_bridge *br;
    OVSREC_BRIDGE_FOR_EACH (br, idl)
        if (strcmp(br->name, name) == 0)
            return br;
    return NULL;
}

/* The integration bridge exists, with its datapath type and fail_mode=secure (without a
 * controller, a standalone bridge would fall back to NORMAL switching: no isolation). */
static void
ensure_bridge(struct ovs_net *net, struct ovsdb_idl *idl, struct ovsdb_idl_txn *txn,
              const struct ovsrec_bridge *br)
{
    if (!br) {
        const struct ovsrec_open_vswitch *root = ovsrec_open_vswitch_first(idl);
        if (!root)
            return;
        struct ovsrec_interface *iface = ovsrec_interface_insert(txn);
        ovsrec_interface_set_name(iface, net->bridge);
        ovsrec_interface_set_type(iface, "internal");
        struct ovsrec_port *port = ovsrec_port_insert(txn);
        ovsrec_port_set_name(port, net->bridge);
        ovsrec_port_set_interfaces(port, &iface, 1);
        struct ovsrec_bridge *nbr = ovsrec_bridge_insert(txn);
        ovsrec_bridge_set_name(nbr, net->bridge);
        ovsrec_bridge_set_ports(nbr, &port, 1);
        ovsrec_bridge_set_fail_mode(nbr, "secure");
        ovsrec_bridge_set_datapath_type(nbr, net->datapath_type);
        ovsrec_bridge_update_external_ids_setkey(nbr, "nodeagent-managed", "true");
        ovsrec_open_vswitch_update_bridges_addvalue(root, nbr);
        na_log(NA_LOG_INFO, NULL, "creating the integration bridge", "bridge=%s datapath_type=%s",
               net->bridge, net->datapath_type);
        return;
    }
    if (!br->fail_mode || strcmp(br->fail_mode, "secure") != 0)
        ovsrec_bridge_set_fail_mode(br, "secure");
    if (strcmp(br->datapath_type, net->datapath_type) != 0)
        ovsrec_bridge_set_datapath_type(br, net->datapath_type);
}

/* The port's interface on the bridge (with an OpenFlow port number), or NULL when it has
 * none yet.  An interface whose attached-mac (set by libvirt) is not the port's MAC is not
 * it. */
static const struct ovsrec_interface *
find_iface(const struct ovsrec_bridge *br, const struct ovs_net_port *p)
{
    for (size_t i = 0; br && i < br->n_ports; i++) {
        const struct ovsrec_port *port = br->ports[i];
        for (size_t j = 0; j < port->n_interfaces; j++) {
            const struct ovsrec_interface *iface = port->interfaces[j];
            const char *id = smap_get(&iface->external_ids, "iface-id");
            if (!id || strcmp(id, p->id) != 0 || iface->n_ofport == 0 || iface->ofport[0] <= 0)
                continue;
            const char *mac = smap_get(&iface->external_ids, "attached-mac");
            if (mac && strcasecmp(mac, p->mac) != 0)
                continue;
            return iface;
        }
    }
    return NULL;
}

/* The OpenFlow port number of the port's interface on the bridge, or 0 when it has none. */
static int
find_ofport(const struct ovsrec_bridge *br, const struct ovs_net_port *p)
{
    const struct ovsrec_interface *iface = find_iface(br, p);
    return iface ? (int)iface->ofport[0] : 0;
}

/* --- the OpenFlow side ----------------------------------------------------------------- */

static void
close_vconn(struct ovs_net *net, const char *why)
{
    if (net->vconn) {
        na_log(NA_LOG_WARN, NULL, "OpenFlow connection lost", "bridge=%s error=\"%s\"", net->bridge,
               why);
        vconn_close(net->vconn);
        net->vconn = NULL;
    }
    net->installed_known = false;
    net->meters_known = false;
    net->retry_at = time_msec() + 500;
    pthread_mutex_lock(&net->mu);
    net->of_up = false;
    pthread_mutex_unlock(&net->mu);
}

static int
queue_flow_mod(struct ovs_list *requests, enum ofputil_protocol proto, int command,
               const char *text)
{
    struct ofputil_flow_mod fm;
    enum ofputil_protocol usable;
    char *error = parse_ofp_flow_mod_str(&fm, text, NULL, NULL, command, &usable);
    if (error) {
        na_log(NA_LOG_ERROR, NULL, "bad flow", "flow=\"%s\" error=\"%s\"", text, error);
        free(error);
        return -EINVAL;
    }
    struct ofpbuf *msg = ofputil_encode_flow_mod(&fm, proto);
    ovs_list_push_back(requests, &msg->list_node);
    minimatch_destroy(&fm.match);
    free(fm.ofpacts);
    return 0;
}

/* Makes the bridge's flows with the agent's cookie equal to want, in one atomic bundle:
 * everything after a (re)connection, the difference with what is installed otherwise. */
static int
install(struct ovs_net *net, const struct ovs_flows *want)
{
    enum ofputil_protocol proto = ofputil_protocol_from_ofp_version(vconn_get_version(net->vconn));
    struct ovs_list requests;
    ovs_list_init(&requests);
    int ret = 0;
    size_t n_changes = 0;
    /* Learned flows point at tunnel port numbers: they go with any tunnel ingress flow that
     * goes or changes (a tunnel or a network leaving), and after a (re)connection. */
    bool forget_learned = !net->installed_known;
    if (!net->installed_known) {
        char *text = na_xasprintf("cookie=%#x/-1", OVS_NET_COOKIE);
        ret = queue_flow_mod(&requests, proto, OFPFC_DELETE, text);
        free(text);
        n_changes++;
    } else {
        for (size_t i = 0; i < net->installed.n && ret == 0; i++) {
            const struct ovs_flow *old = &net->installed.items[i];
            const struct ovs_flow *now = ovs_flows_find(want, old->key);
            if (ovs_flows_is_tunnel_ingress(old) &&
                (!now || strcmp(now->actions, old->actions) != 0))
                forget_learned = true;
            if (now)
                continue;
            char *text = na_xasprintf("cookie=%#x/-1,%s", OVS_NET_COOKIE, old->key);
            ret = queue_flow_mod(&requests, proto, OFPFC_DELETE_STRICT, text);
            free(text);
            n_changes++;
        }
    }
    if (forget_learned && ret == 0) {
        char *text =
            na_xasprintf("cookie=%#x/%#x", OVS_NET_LEARNED_COOKIE, OVS_NET_LEARNED_COOKIE_MASK);
        ret = queue_flow_mod(&requests, proto, OFPFC_DELETE, text);
        free(text);
        n_changes++;
    }
    for (size_t i = 0; i < want->n && ret == 0; i++) {
        const struct ovs_flow *have =
            net->installed_known ? ovs_flows_find(&net->installed, want->items[i].key) : NULL;
        if (have && strcmp(have->actions, want->items[i].actions) == 0)
            continue;
        char *text = na_xasprintf("cookie=%#x,%s,actions=%s", OVS_NET_COOKIE, want->items[i].key,
                                  want->items[i].actions);
        ret = queue_flow_mod(&requests, proto, OFPFC_ADD, text);
        free(text);
        n_changes++;
    }
    if (ret < 0 || n_changes == 0) {
        ofpbuf_list_delete(&requests);
        return ret;
    }
    struct ovs_list errors;
    int error = vconn_bundle_transact(net->vconn, &requests, OFPBF_ATOMIC | OFPBF_ORDERED, &errors);
    ofpbuf_list_delete(&requests);
    if (!error && !ovs_list_is_empty(&errors)) {
        struct ofpbuf *first = CONTAINER_OF(ovs_list_front(&errors), struct ofpbuf, list_node);
        enum ofperr e = ofperr_decode_msg(first->data, NULL);
        na_log(NA_LOG_ERROR, NULL, "bridge refused the flows", "bridge=%s error=\"%s\"",
               net->bridge, ofperr_to_string(e));
        error = EPROTO;
    }
    ofpbuf_list_delete(&errors);
    if (error) {
        close_vconn(net, ovs_strerror(error));
        return -error;
    }
    na_log(NA_LOG_DEBUG, NULL, "flows converged", "bridge=%s flows=%zu changes=%zu", net->bridge,
           want->n, n_changes);
    return 0;
}

/* Sends one meter mod and waits for the barrier after it.  *refused: the bridge's error
 * (0 when it took the mod).  A lost connection is closed and fails. */
static int
meter_mod(struct ovs_net *net, const char *text, int command, enum ofperr *refused)
{
    *refused = 0;
    struct ofputil_meter_mod mm;
    enum ofputil_protocol usable;
    char *error = parse_ofp_meter_mod_str(&mm, text, command, &usable);
    if (error) {
        na_log(NA_LOG_ERROR, NULL, "bad meter", "meter=\"%s\" error=\"%s\"", text, error);
        free(error);
        return -EINVAL;
    }
    struct ofpbuf *msg = ofputil_encode_meter_mod(vconn_get_version(net->vconn), &mm);
    free(mm.meter.bands);
    struct ofpbuf *reply = NULL;
    int ret = vconn_transact_noreply(net->vconn, msg, &reply);
    if (ret) {
        close_vconn(net, ovs_strerror(ret));
        return -ret;
    }
    if (reply) {
        *refused = ofperr_decode_msg(reply->data, NULL);
        ofpbuf_delete(reply);
    }
    return 0;
}

/* Gives the bridge the meters of want before the flows that use them go in: each one that is
 * new or changed is added, or modified when its id exists. */
static int
install_meters(struct ovs_net *net, const struct ovs_meters *want)
{
    for (size_t i = 0; i < want->n && net->vconn; i++) {
        const struct ovs_meter *w = &want->items[i];
        const struct ovs_meter *have =
            net->meters_known ? ovs_meters_find(&net->meters, w->id) : NULL;
        if (have && strcmp(have->text, w->text) == 0)
            continue;
        enum ofperr refused;
        int ret = meter_mod(net, w->text, have ? OFPMC13_MODIFY : OFPMC13_ADD, &refused);
        if (ret == 0 && refused == OFPERR_OFPMMFC_METER_EXISTS)
            ret = meter_mod(net, w->text, OFPMC13_MODIFY, &refused);
        if (ret < 0)
            return ret;
        if (refused) {
            na_log(NA_LOG_ERROR, NULL, "bridge refused a meter",
                   "bridge=%s meter=\"%s\" error=\"%s\"", net->bridge, w->text,
                   ofperr_to_string(refused));
            return -EPROTO;
        }
    }
    return net->vconn ? 0 : -ENOTCONN;
}

/* After the flows changed: the meters the thread installed that want no longer has are
 * deleted (no flow uses them any more). */
static void
remove_stale_meters(struct ovs_net *net, const struct ovs_meters *want)
{
    for (size_t i = 0; net->meters_known && i < net->meters.n && net->vconn; i++) {
        uint32_t id = net->meters.items[i].id;
        if (ovs_meters_find(want, id))
            continue;
        char text[32];
        snprintf(text, sizeof(text), "meter=%" PRIu32, id);
        enum ofperr refused;
        if (meter_mod(net, text, OFPMC13_DELETE, &refused) == 0 && refused)
            na_log(NA_LOG_WARN, NULL, "bridge refused to delete a meter",
                   "bridge=%s meter=%" PRIu32 " error=\"%s\"", net->bridge, id,
                   ofperr_to_string(refused));
    }
}

/* Answers echo requests and notices a closed connection. */
static void
drain_vconn(struct ovs_net *net)
{
    for (int i = 0; net->vconn && i < 50; i++) {
        struct ofpbuf *msg = NULL;
        int error = vconn_recv(net->vconn, &msg);
        if (error == EAGAIN)
            return;
        if (error) {
            close_vconn(net, error == EOF ? "closed by ovs-vswitchd" : ovs_strerror(error));
            return;
        }
        enum ofptype type;
        if (!ofptype_decode(&type, msg->data) && type == OFPTYPE_ECHO_REQUEST)
            vconn_send(net->vconn, ofputil_encode_echo_reply(msg->data));
        ofpbuf_delete(msg);
    }
}

static void
connect_vconn(struct ovs_net *net)
{
    if (net->vconn || time_msec() < net->retry_at)
        return;
    int error = vconn_open_block(net->openflow, 1u << OFP14_VERSION, 0, 1000, &net->vconn);
    if (error) {
        net->vconn = NULL;
        net->retry_at = time_msec() + 500;
        return;
    }
    net->installed_known = false;
    net->meters_known = false;
    pthread_mutex_lock(&net->mu);
    net->of_up = true;
    pthread_mutex_unlock(&net->mu);
    na_log(NA_LOG_INFO, NULL, "OpenFlow connection up", "bridge=%s", net->bridge);
}

/* The conntrack entries of a zone (a port's): flushed when the port's interface leaves the
 * bridge (deleted, migrated away, or replugged under another number), so that nothing a
 * port's rules allowed outlives it or is inherited by the next interface to get the number.
 * Sent without waiting: an error comes back as a message that drain_vconn drops. */
static void
flush_zone(struct ovs_net *net, int zone)
{
    struct ofp_ct_match match;
    memset(&match, 0, sizeof(match));
    uint16_t zone_id = (uint16_t)zone;
    struct ofpbuf *msg = ofp_ct_match_encode(&match, &zone_id, vconn_get_version(net->vconn));
    int error = vconn_send(net->vconn, msg);
    if (error) {
        ofpbuf_delete(msg);
        na_log(NA_LOG_WARN, NULL, "conntrack flush not sent", "bridge=%s zone=%d error=\"%s\"",
               net->bridge, zone, ovs_strerror(error));
        return;
    }
    na_log(NA_LOG_INFO, NULL, "conntrack zone flushed", "bridge=%s zone=%d", net->bridge, zone);
}

static int
cmp_zone(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : x > y;
}

/* The bridge's record of the zones in use (external_ids:nodeagent-ct-zones, "5,7,9"): what
 * an agent that starts finds there and no port has any more was left by a port whose
 * interface went while no agent ran, and is flushed like any other gone port's zone. */
#define ZONES_KEY "nodeagent-ct-zones"

static char *
zones_text(const int *zones, size_t n)
{
    size_t size = 0;
    char *text = NULL;
    FILE *f = open_memstream(&text, &size);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%d", i ? "," : "", zones[i]);
    fclose(f);
    return text;
}

/* Once, when the agent's ports are known: the zones the bridge recorded join those the
 * thread knows, so that the first convergence flushes the ones no port has. */
static void
load_recorded_zones(struct ovs_net *net, const struct ovsrec_bridge *br)
{
    if (net->zones_loaded || !net->ports_known)
        return;
    net->zones_loaded = true;
    const char *text = smap_get(&br->external_ids, ZONES_KEY);
    for (const char *p = text; p && *p;) {
        char *end;
        long zone = strtol(p, &end, 10);
        if (end == p || zone <= 0 || zone > UINT16_MAX)
            break;
        net->zones = na_xrealloc(net->zones, (net->n_zones + 1) * sizeof(*net->zones));
        net->zones[net->n_zones++] = (int)zone;
        p = *end == ',' ? end + 1 : end;
    }
}

/* Keeps the bridge's record equal to the zones of the installed flows. */
static void
record_zones(struct ovs_net *net, const struct ovsrec_bridge *br)
{
    if (!net->zones_loaded)
        return;
    cleanup_free char *text = zones_text(net->zones, net->n_zones);
    const char *have = smap_get(&br->external_ids, ZONES_KEY);
    if (!have || strcmp(have, text) != 0)
        ovsrec_bridge_update_external_ids_setkey(br, ZONES_KEY, text);
}

/* After the flows went in: flushes the zones of the ports that no longer have flows. */
static void
flush_gone_zones(struct ovs_net *net, const struct ovs_bound_port *bound, size_t n)
{
    int *zones = na_xcalloc(n + 1, sizeof(*zones));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (bound[i].ofport > 0)
            zones[k++] = bound[i].ofport;
    qsort(zones, k, sizeof(*zones), cmp_zone);
    for (size_t i = 0; i < net->n_zones; i++)
        if (!k || !bsearch(&net->zones[i], zones, k, sizeof(*zones), cmp_zone))
            flush_zone(net, net->zones[i]);
    free(net->zones);
    net->zones = zones;
    net->n_zones = k;
    poll_immediate_wake(); /* the next pass records them in the bridge */
}

/* --- the thread ------------------------------------------------------------------------ */

/* A port's interface just seen on the bridge: the host's side of it gets no IPv6 (see
 * host_tap.c), before the port's flows go in. */
static void
quiet_host_side(struct ovs_net *net, const struct ovsrec_bridge *br, const struct ovs_net_port *p)
{
    const struct ovsrec_interface *iface = find_iface(br, p);
    struct na_error *err = NULL;
    if (iface && ovs_net_tap_ipv6_off(net->vswitchd_pidfile, iface->name, &err) < 0) {
        na_log(NA_LOG_ERROR, NULL, "host side of a tap keeps IPv6",
               "port=%s interface=%s error=\"%s\"", p->id, iface->name, err->msg);
        na_error_free(err);
    }
}

/* Notes the ports whose interface is on the bridge (with the time it was first seen), and
 * forgets the others.  A newly seen interface has its host side quieted. */
static void
note_seen(struct ovs_net *net, const struct ovsrec_bridge *br, const struct ovs_bound_port *bound,
          size_t n)
{
    struct port_seen *now = na_xcalloc(n + 1, sizeof(*now));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (bound[i].ofport <= 0)
            continue;
        struct port_seen *old = NULL;
        for (size_t j = 0; j < net->n_seen && !old; j++)
            if (net->seen[j].id && strcmp(net->seen[j].id, bound[i].port->id) == 0 &&
                net->seen[j].ofport == bound[i].ofport)
                old = &net->seen[j];
        if (old) {
            now[k++] = *old;
            old->id = NULL;
        } else {
            quiet_host_side(net, br, bound[i].port);
            now[k++] = (struct port_seen){na_xstrdup(bound[i].port->id), bound[i].ofport,
                                          na_mono_ns(), false};
        }
    }
    for (size_t j = 0; j < net->n_seen; j++)
        free(net->seen[j].id);
    free(net->seen);
    net->seen = now;
    net->n_seen = k;
}

/* After the flows went in: one line per port bound since the last time. */
static void
log_newly_bound(struct ovs_net *net)
{
    uint64_t now = na_mono_ns();
    for (size_t i = 0; i < net->n_seen; i++) {
        if (net->seen[i].bound)
            continue;
        net->seen[i].bound = true;
        na_log(NA_LOG_INFO, NULL, "port bound", "port=%s bridge=%s ofport=%d ms=%.3f",
               net->seen[i].id, net->bridge, net->seen[i].ofport,
               (double)(now - net->seen[i].seen_ns) / 1e6);
    }
}

static void
publish_bound(struct ovs_net *net, const struct ovs_bound_port *bound, size_t n, bool db_up,
              uint64_t gen)
{
    char **ids = na_xcalloc(n + 1, sizeof(*ids));
    size_t n_ids = 0;
    for (size_t i = 0; i < n; i++)
        if (bound[i].ofport > 0)
            ids[n_ids++] = na_xstrdup(bound[i].port->id);
    pthread_mutex_lock(&net->mu);
    for (size_t i = 0; i < net->n_bound; i++)
        free(net->bound[i]);
    free(net->bound);
    net->bound = ids;
    net->n_bound = n_ids;
    net->db_up = db_up;
    net->converged_gen = gen;
    pthread_cond_broadcast(&net->bound_changed);
    pthread_mutex_unlock(&net->mu);
}

static void
take_desired(struct ovs_net *net)
{
    pthread_mutex_lock(&net->mu);
    if (net->desired_gen != net->ports_gen) {
        port_set_clear(&net->ports);
        struct ovs_net_port *views = na_xcalloc(net->desired.n + 1, sizeof(*views));
        for (size_t i = 0; i < net->desired.n; i++)
            views[i] = net->desired.items[i].view;
        port_set_copy(&net->ports, views, net->desired.n);
        free(views);
        ovs_flows_sg_clear(&net->groups);
        ovs_flows_sg_copy(&net->groups, net->desired_groups.items, net->desired_groups.n);
        ovs_tunnels_clear(&net->tunnels);
        net->ports_known = net->ports_set;
        net->tunnels_known = net->peers_known;
        if (net->tunnels_known) {
            size_t n = 0;
            cleanup_free uint32_t *vnis = local_vnis(&net->ports, &n);
            ovs_tunnels_compute(&net->tunnel_cfg, vnis, n, net->peers, net->n_peers, &net->tunnels);
        }
        net->ports_gen = net->desired_gen;
    }
    pthread_mutex_unlock(&net->mu);
}

static void *
ovs_thread(void *arg)
{
    struct ovs_net *net = arg;
    struct ovsdb_idl_loop loop =
        OVSDB_IDL_LOOP_INITIALIZER(ovsdb_idl_create(net->ovsdb, &ovsrec_idl_class, true, true));
    bool was_up = false;
    while (!latch_is_set(&net->exit)) {
        latch_poll(&net->wake);
        struct ovsdb_idl_txn *txn = ovsdb_idl_loop_run(&loop);
        take_desired(net);
        bool db_up = ovsdb_idl_is_connected(loop.idl) && ovsdb_idl_has_ever_connected(loop.idl);
        if (db_up != was_up)
            na_log(db_up ? NA_LOG_INFO : NA_LOG_WARN, NULL,
                   db_up ? "OVS database connected" : "OVS database not connected", "ovsdb=\"%s\"",
                   net->ovsdb);
        was_up = db_up;
        const struct ovsrec_bridge *br = db_up ? find_bridge(loop.idl, net->bridge) : NULL;
        if (br && !net->tunnels_known) {
            size_t n = 0;
            cleanup_free uint32_t *vnis = local_vnis(&net->ports, &n);
            ovs_tunnels_clear(&net->tunnels);
            ovs_tunnels_from_bridge(&net->tunnel_cfg, br, vnis, n, &net->tunnels);
        }
        if (db_up && txn) {
            ensure_bridge(net, loop.idl, txn, br);
            if (br && net->tunnels_known)
                ovs_tunnels_ensure(&net->tunnel_cfg, txn, br, &net->tunnels);
            if (br)
                record_zones(net, br);
        }
        if (br)
            load_recorded_zones(net, br);

        connect_vconn(net);
        drain_vconn(net);
        /* Without the database, what is bound is unknown: leave the flows as they are. */
        if (br && net->vconn) {
            struct ovs_bound_port *bound = na_xcalloc(net->ports.n + 1, sizeof(*bound));
            for (size_t i = 0; i < net->ports.n; i++)
                bound[i] = (struct ovs_bound_port){&net->ports.items[i].view,
                                                   find_ofport(br, &net->ports.items[i].view)};
            struct ovs_bound_tunnel *tunnels = na_xcalloc(net->tunnels.n + 1, sizeof(*tunnels));
            for (size_t i = 0; i < net->tunnels.n; i++) {
                const struct ovs_tunnel *t = &net->tunnels.items[i];
                tunnels[i] = (struct ovs_bound_tunnel){
                    t->remote_ip, ovs_tunnels_ofport(&net->tunnel_cfg, br, t->remote_ip), t->vnis,
                    t->n_vnis};
            }
            note_seen(net, br, bound, net->ports.n);
            struct ovs_flows want = {0};
            ovs_flows_compute(bound, net->ports.n, tunnels, net->tunnels.n, &net->groups, &want);
            free(tunnels);
            struct ovs_meters meters = {0};
            ovs_meters_compute(bound, net->ports.n, &meters);
            if (install_meters(net, &meters) == 0 && install(net, &want) == 0) {
                remove_stale_meters(net, &meters);
                ovs_meters_clear(&net->meters);
                net->meters = meters;
                net->meters_known = true;
                log_newly_bound(net);
                flush_gone_zones(net, bound, net->ports.n);
                ovs_flows_clear(&net->installed);
                net->installed = want;
                net->installed_known = true;
                publish_bound(net, bound, net->ports.n, true, net->ports_gen);
            } else {
                ovs_meters_clear(&meters);
                ovs_flows_clear(&want);
            }
            free(bound);
        } else if (!db_up) {
            pthread_mutex_lock(&net->mu);
            net->db_up = false;
            pthread_mutex_unlock(&net->mu);
        }

        ovsdb_idl_loop_commit_and_wait(&loop);
        latch_wait(&net->wake);
        latch_wait(&net->exit);
        if (net->vconn) {
            vconn_run(net->vconn);
            vconn_run_wait(net->vconn);
            vconn_recv_wait(net->vconn);
        } else {
            poll_timer_wait_until(net->retry_at);
        }
        poll_block();
    }
    if (net->vconn)
        vconn_close(net->vconn);
    net->vconn = NULL;
    ovsdb_idl_loop_destroy(&loop);
    return NULL;
}

/* Open vSwitch catches SIGTERM, SIGINT, SIGHUP, SIGALRM and SIGSEGV the first time its poll
 * loop runs, and would then re-raise them itself; the agent's loop handles those signals.
 * Let the library install its handlers now, then put the agent's back. */
static void
keep_signal_handlers(void)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGALRM, SIGSEGV};
    struct sigaction saved[NA_ARRAY_SIZE(sigs)];
    for (size_t i = 0; i < NA_ARRAY_SIZE(sigs); i++)
        sigaction(sigs[i], NULL, &saved[i]);
    fatal_signal_init();
    for (size_t i = 0; i < NA_ARRAY_SIZE(sigs); i++)
        sigaction(sigs[i], &saved[i], NULL);
}

int
ovs_net_start(const struct ovs_net_config *cfg, struct ovs_net **out, struct na_error **err)
{
    if (strncmp(cfg->ovsdb, "unix:", 5) != 0)
        return na_error_quiet(err, NA_CODE_INVALID_ARGUMENT, EINVAL,
                              "[network] ovsdb: `%s` is not unix:PATH", cfg->ovsdb);
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, keep_signal_handlers);
    ovs_set_program_name("nodeagent", "nodeagent");
    vlog_set_levels(NULL, VLF_ANY_DESTINATION, VLL_WARN);

    struct ovs_net *net = na_xcalloc(1, sizeof(*net));
    net->ovsdb = na_xstrdup(cfg->ovsdb);
    net->bridge = na_xstrdup(cfg->bridge);
    net->datapath_type = na_xstrdup(cfg->datapath_type);
    net->tunnel_type = na_xstrdup(cfg->tunnel_type ? cfg->tunnel_type : "geneve");
    net->local_ip = cfg->local_ip && *cfg->local_ip ? na_xstrdup(cfg->local_ip) : NULL;
    net->tunnel_cfg = (struct ovs_tunnel_config){net->bridge, net->tunnel_type, net->local_ip};
    /* The bridge's management socket sits beside the database's (ovs_rundir). */
    const char *path = cfg->ovsdb + 5;
    const char *slash = strrchr(path, '/');
    net->openflow = na_xasprintf("unix:%.*s/%s.mgmt", slash ? (int)(slash - path) : 1,
                                 slash ? path : ".", cfg->bridge);
    net->vswitchd_pidfile =
        na_xasprintf("%.*s/ovs-vswitchd.pid", slash ? (int)(slash - path) : 1, slash ? path : ".");
    pthread_mutex_init(&net->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&net->bound_changed, &ca);
    pthread_condattr_destroy(&ca);
    latch_init(&net->wake);
    latch_init(&net->exit);
    net->desired_gen = 1; /* the empty set, not yet installed */
    net->thread = ovs_thread_create("ovs", ovs_thread, net);
    *out = net;
    return 0;
}

void
ovs_net_stop(struct ovs_net *net)
{
    if (!net)
        return;
    latch_set(&net->exit);
    xpthread_join(net->thread, NULL);
    latch_destroy(&net->wake);
    latch_destroy(&net->exit);
    port_set_clear(&net->desired);
    port_set_clear(&net->ports);
    ovs_flows_sg_clear(&net->desired_groups);
    ovs_flows_sg_clear(&net->groups);
    free(net->zones);
    peers_free(net->peers, net->n_peers);
    ovs_tunnels_clear(&net->tunnels);
    for (size_t i = 0; i < net->n_seen; i++)
        free(net->seen[i].id);
    free(net->seen);
    for (size_t i = 0; i < net->n_bound; i++)
        free(net->bound[i]);
    free(net->bound);
    ovs_flows_clear(&net->installed);
    ovs_meters_clear(&net->meters);
    pthread_mutex_destroy(&net->mu);
    pthread_cond_destroy(&net->bound_changed);
    free(net->ovsdb);
    free(net->bridge);
    free(net->datapath_type);
    free(net->tunnel_type);
    free(net->local_ip);
    free(net->openflow);
    free(net->vswitchd_pidfile);
    free(net);
}

void
ovs_net_set_ports(struct ovs_net *net, const struct ovs_net_port *ports, size_t n_ports)
{
    struct port_set s;
    port_set_copy(&s, ports, n_ports);
    pthread_mutex_lock(&net->mu);
    port_set_clear(&net->desired);
    net->desired = s;
    net->ports_set = true;
    net->desired_gen++;
    pthread_mutex_unlock(&net->mu);
    latch_set(&net->wake);
}

void
ovs_net_set_security_groups(struct ovs_net *net, const struct ovs_sg *groups, size_t n_groups)
{
    struct ovs_sg_set copy;
    ovs_flows_sg_copy(&copy, groups, n_groups);
    pthread_mutex_lock(&net->mu);
    ovs_flows_sg_clear(&net->desired_groups);
    net->desired_groups = copy;
    net->desired_gen++;
    pthread_mutex_unlock(&net->mu);
    latch_set(&net->wake);
}

void
ovs_net_set_peers(struct ovs_net *net, const struct ovs_net_peer *peers, size_t n_peers)
{
    struct ovs_net_peer *copy = na_xcalloc(n_peers + 1, sizeof(*copy));
    for (size_t i = 0; i < n_peers; i++) {
        uint32_t *vnis = na_xcalloc(peers[i].n_vnis + 1, sizeof(*vnis));
        if (peers[i].n_vnis)
            memcpy(vnis, peers[i].vnis, peers[i].n_vnis * sizeof(*vnis));
        copy[i] = (struct ovs_net_peer){na_xstrdup(peers[i].node_id), na_xstrdup(peers[i].endpoint),
                                        vnis, peers[i].n_vnis};
    }
    pthread_mutex_lock(&net->mu);
    peers_free(net->peers, net->n_peers);
    net->peers = copy;
    net->n_peers = n_peers;
    net->peers_known = true;
    net->desired_gen++;
    pthread_mutex_unlock(&net->mu);
    latch_set(&net->wake);
}

static bool
all_bound(const struct ovs_net *net, const char *const *ids, size_t n_ids, size_t *missing)
{
    for (size_t i = 0; i < n_ids; i++) {
        bool found = false;
        for (size_t j = 0; j < net->n_bound && !found; j++)
            found = strcmp(net->bound[j], ids[i]) == 0;
        if (!found) {
            *missing = i;
            return false;
        }
    }
    return true;
}

/* CLOCK_MONOTONIC (bound_changed's clock) timeout_ms from now. */
static struct timespec
deadline_after(unsigned timeout_ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += timeout_ms / 1000;
    t.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (t.tv_nsec >= 1000000000) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000;
    }
    return t;
}

int
ovs_net_wait_bound(struct ovs_net *net, const char *const *ids, size_t n_ids, unsigned timeout_ms,
                   struct na_error **err)
{
    struct timespec deadline = deadline_after(timeout_ms);
    size_t missing = 0;
    pthread_mutex_lock(&net->mu);
    int rc = 0;
    while (!all_bound(net, ids, n_ids, &missing) && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&net->bound_changed, &net->mu, &deadline);
    bool ok = all_bound(net, ids, n_ids, &missing);
    bool db_up = net->db_up, of_up = net->of_up;
    pthread_mutex_unlock(&net->mu);
    if (ok)
        return 0;
    return na_error_quiet(err, NA_CODE_NETWORK, ETIMEDOUT,
                          "port %s did not bind on bridge %s within %u ms (%s)", ids[missing],
                          net->bridge, timeout_ms,
                          !db_up   ? "the OVS database is not connected"
                          : !of_up ? "no OpenFlow connection to the bridge"
                                   : "no interface on the bridge has its iface-id and MAC");
}

int
ovs_net_wait_converged(struct ovs_net *net, unsigned timeout_ms)
{
    struct timespec deadline = deadline_after(timeout_ms);
    pthread_mutex_lock(&net->mu);
    uint64_t target = net->desired_gen;
    int rc = 0;
    while (net->converged_gen < target && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&net->bound_changed, &net->mu, &deadline);
    bool ok = net->converged_gen >= target;
    pthread_mutex_unlock(&net->mu);
    return ok ? 0 : -ETIMEDOUT;
}

bool
ovs_net_healthy(struct ovs_net *net, char *detail, size_t detail_size)
{
    pthread_mutex_lock(&net->mu);
    bool db_up = net->db_up, of_up = net->of_up;
    pthread_mutex_unlock(&net->mu);
    snprintf(detail, detail_size, "%s",
             !db_up   ? "OVS database not connected"
             : !of_up ? "no OpenFlow connection to the integration bridge"
                      : "ok");
    return db_up && of_up;
}
