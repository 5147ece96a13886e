/* Peers: announcing this node and keeping the table of the others.  See peers.h. */
#include "agent/outputs/peers.h"
#include "agent/core/agent.h"
#include "agent/outputs/announcement.h"
#include "agent/bus/identity.h"
#include "proto/validate.h"
#include "proto/trust.h"
#include "net/ovs/ovs.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define EXPIRY_CHECK_MS 1000
/* At most this many refused announcements are logged in a window (every one is counted). */
#define REFUSAL_LOG_MAX 100
#define REFUSAL_LOG_WINDOW_MS 10000
/* Bus deliveries of announcements carry this id; outbox ids are positive. */
#define ANNOUNCE_DELIVERY_ID (-1)

struct peer {
    char node_id[65];
    char tunnel_endpoint[16];
    char agent_version[65];
    uint32_t interval_s;
    int64_t announced_ms; /* its time_ms */
    uint64_t heard_ms;    /* loop time of its last announcement */
    uint32_t *vnis;       /* its networks, as it announced them */
    size_t n_vnis;
};

struct agent_peers {
    struct agent *a;
    char *topic;
    struct peer *items;
    size_t n, cap;
    uv_timer_t announce_timer;
    uv_timer_t expiry_timer;
    bool missed;    /* an announcement was due while the bus was down */
    int refs;       /* timers still closing */
    uint32_t *vnis; /* this node's networks, as last announced */
    size_t n_vnis;
    bool settled; /* the nodes topic has been read to its end once */
    /* Refusals logged in the current window (a flood is counted in full, logged in part). */
    uint64_t log_window_ms; /* loop time the window began */
    unsigned logged, unlogged;
    void (*on_change)(void *ctx); /* the peer table changed (agent_peers_watch) */
    void *on_change_ctx;
};

static void
peers_changed_notify(struct agent_peers *p)
{
    if (p->on_change)
        p->on_change(p->on_change_ctx);
}

void
agent_peers_watch(struct agent *a, void (*fn)(void *ctx), void *ctx)
{
    a->peers->on_change = fn;
    a->peers->on_change_ctx = ctx;
}

static struct peer *
peer_find(struct agent_peers *p, const char *node_id)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->items[i].node_id, node_id) == 0)
            return &p->items[i];
    return NULL;
}

static void
peer_remove(struct agent_peers *p, struct peer *peer)
{
    free(peer->vnis);
    *peer = p->items[--p->n];
}

static int
cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

/* The networks of this node's instances, ascending, without duplicates. */
static uint32_t *
local_vnis(const struct agent *a, size_t *n)
{
    size_t cap = 0;
    for (size_t i = 0; i < a->instances.n; i++)
        cap += a->instances.items[i]->spec->n_nics;
    uint32_t *v = na_xcalloc(cap + 1, sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; i < a->instances.n; i++) {
        const Nodeagent__V1__InstanceSpec *spec = a->instances.items[i]->spec;
        for (size_t j = 0; j < spec->n_nics; j++)
            v[k++] = spec->nics[j]->vni;
    }
    *n = na_u32_sort_unique(v, k);
    return v;
}

static void
announce(struct agent_peers *p, bool leaving)
{
    struct agent *a = p->a;
    struct agent_bus_stats st = {0};
    if (a->bus)
        agent_bus_get_stats(a->bus, &st);
    if (!st.up && !leaving) {
        p->missed = true;
        return;
    }
    Nodeagent__V1__NodeAnnouncement an = NODEAGENT__V1__NODE_ANNOUNCEMENT__INIT;
    an.node_id = a->cfg->node_id;
    an.time_ms = na_now_ms();
    an.agent_version = AGENT_VERSION;
    an.tunnel_endpoint = a->cfg->tunnel_endpoint ? a->cfg->tunnel_endpoint : "";
    an.interval_s = a->cfg->announce_interval_s;
    an.leaving = leaving;
    free(p->vnis);
    p->vnis = local_vnis(a, &p->n_vnis);
    an.vnis = p->vnis;
    an.n_vnis = leaving ? 0 : NA_MIN(p->n_vnis, (size_t)AGENT_MAX_NODE_VNIS);
    size_t size = nodeagent__v1__node_announcement__get_packed_size(&an);
    cleanup_free uint8_t *buf = na_xmalloc(size ? size : 1);
    nodeagent__v1__node_announcement__pack(&an, buf);
    cleanup_error struct na_error *err = NULL;
    struct agent_bus_headers headers = {0};
    char sig[TRUST_SIGNATURE_HEX_LEN + 1];
    const struct agent_identity *id = a->identity;
    if (!id->insecure) {
        if (trust_sign_hex(id->node_key, TRUST_ANNOUNCEMENT, buf, size, sig, &err) < 0) {
            na_log(NA_LOG_ERROR, NULL, "node announcement not signed", "error=\"%s\"", err->msg);
            return;
        }
        headers = (struct agent_bus_headers){.signature = sig,
                                             .signature_len = TRUST_SIGNATURE_HEX_LEN,
                                             .certificate = id->cert_hex,
                                             .certificate_len = strlen(id->cert_hex)};
    }
    if (agent_bus_produce(a->bus, p->topic, a->cfg->node_id, buf, size, &headers,
                          ANNOUNCE_DELIVERY_ID, &err) < 0) {
        p->missed = true;
        na_log(NA_LOG_WARN, NULL, "node announcement not sent", "error=\"%s\"",
               err ? err->msg : "local queue full");
        return;
    }
    p->missed = false;
}

static void
on_announce_timer(uv_timer_t *t)
{
    announce(t->data, false);
}

static void refusal_log_roll(struct agent_peers *p);

static void
on_expiry_timer(uv_timer_t *t)
{
    struct agent_peers *p = t->data;
    refusal_log_roll(p);
    uint64_t now = uv_now(p->a->loop);
    for (size_t i = 0; i < p->n;) {
        struct peer *peer = &p->items[i];
        uint64_t limit = (uint64_t)peer->interval_s * 1000 * AGENT_PEER_MISSED_INTERVALS;
        if (now - peer->heard_ms <= limit) {
            i++;
            continue;
        }
        na_log(NA_LOG_WARN, NULL, "peer lost: no announcement in time", "peer=%s silent_s=%.1f",
               peer->node_id, (double)(now - peer->heard_ms) / 1000);
        peer_remove(p, peer);
        peers_changed_notify(p);
    }
}

/* Whether the table may take an's news; the refusal's reason otherwise. */
static int
admissible(struct agent_peers *p, const Nodeagent__V1__NodeAnnouncement *an,
           const struct peer *peer, struct na_error **err)
{
    int64_t now = na_now_ms();
    if (an->time_ms > now + TRUST_MAX_FUTURE_MS) {
        na_error_set(err, NA_CODE_UNAUTHENTICATED, 0, "its time_ms is %.1f s in the future",
                     (double)(an->time_ms - now) / 1000);
        return AGENT_ANNOUNCE_REFUSED_STALE;
    }
    /* A node's last announcement stays on the (compacted) topic after it is gone: one too
     * old to be alive, read at start (or replayed), makes no peer.  Once a peer, a node
     * stays one as long as its announcements keep arriving (heard_ms, this node's monotonic
     * clock), whatever its own clock says. */
    int64_t age_ms = now - an->time_ms;
    if (!peer && !an->leaving &&
        age_ms > (int64_t)an->interval_s * 1000 * AGENT_PEER_MISSED_INTERVALS) {
        na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                     "it is %.1f s old, more than %d of its intervals: not a live node",
                     (double)age_ms / 1000, AGENT_PEER_MISSED_INTERVALS);
        return AGENT_ANNOUNCE_REFUSED_STALE;
    }
    if (peer && an->time_ms <= peer->announced_ms) {
        na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                     "its time_ms %" PRId64 " is not after that of the node's last announcement "
                     "(%" PRId64 "): a replay or out of order",
                     an->time_ms, peer->announced_ms);
        return AGENT_ANNOUNCE_REFUSED_REPLAYED;
    }
    if (an->n_vnis > p->a->cfg->max_peer_vnis) {
        na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                     "it lists %zu networks; [peers] max_vnis is %u", an->n_vnis,
                     p->a->cfg->max_peer_vnis);
        return AGENT_ANNOUNCE_REFUSED_LIMIT;
    }
    if (!peer && !an->leaving && p->n >= p->a->cfg->max_peers) {
        na_error_set(err, NA_CODE_NO_CAPACITY, 0, "the peer table is full ([peers] max_peers = %u)",
                     p->a->cfg->max_peers);
        return AGENT_ANNOUNCE_REFUSED_LIMIT;
    }
    return -1;
}

/* Takes an admissible announcement into the table; whether what the tunnels depend on
 * changed. */
static bool
take(struct agent_peers *p, const Nodeagent__V1__NodeAnnouncement *an, struct peer *peer)
{
    if (an->leaving) {
        if (peer) {
            na_log(NA_LOG_INFO, NULL, "peer left", "peer=%s", an->node_id);
            peer_remove(p, peer);
            return true;
        }
        return false;
    }
    bool changed = !peer || strcmp(peer->tunnel_endpoint, an->tunnel_endpoint) != 0;
    if (!peer) {
        if (p->n == p->cap) {
            p->cap = p->cap ? p->cap * 2 : 8;
            p->items = na_xrealloc(p->items, p->cap * sizeof(*p->items));
        }
        peer = &p->items[p->n++];
        memset(peer, 0, sizeof(*peer));
        snprintf(peer->node_id, sizeof(peer->node_id), "%s", an->node_id);
        na_log(NA_LOG_INFO, NULL, "peer joined", "peer=%s tunnel_endpoint=%s version=%s",
               an->node_id, *an->tunnel_endpoint ? an->tunnel_endpoint : "-", an->agent_version);
    } else if (strcmp(peer->tunnel_endpoint, an->tunnel_endpoint) != 0) {
        na_log(NA_LOG_INFO, NULL, "peer moved its tunnel endpoint", "peer=%s from=%s to=%s",
               an->node_id, *peer->tunnel_endpoint ? peer->tunnel_endpoint : "-",
               *an->tunnel_endpoint ? an->tunnel_endpoint : "-");
    }
    snprintf(peer->tunnel_endpoint, sizeof(peer->tunnel_endpoint), "%s", an->tunnel_endpoint);
    snprintf(peer->agent_version, sizeof(peer->agent_version), "%s", an->agent_version);
    peer->interval_s = an->interval_s;
    peer->announced_ms = an->time_ms;
    if (peer->n_vnis != an->n_vnis ||
        (an->n_vnis && memcmp(peer->vnis, an->vnis, an->n_vnis * sizeof(*an->vnis)) != 0)) {
        free(peer->vnis);
        peer->vnis = na_xcalloc(an->n_vnis + 1, sizeof(*peer->vnis));
        if (an->n_vnis)
            memcpy(peer->vnis, an->vnis, an->n_vnis * sizeof(*an->vnis));
        peer->n_vnis = an->n_vnis;
        qsort(peer->vnis, peer->n_vnis, sizeof(*peer->vnis), cmp_u32);
        changed = true;
    }
    peer->heard_ms = uv_now(p->a->loop);
    return changed;
}

/* Starts a new log window once the current one is over, saying how many refusals it did
 * not log. */
static void
refusal_log_roll(struct agent_peers *p)
{
    uint64_t now = uv_now(p->a->loop);
    if (now - p->log_window_ms < REFUSAL_LOG_WINDOW_MS)
        return;
    if (p->unlogged)
        na_log(NA_LOG_WARN, NULL, "node announcements refused without a log line",
               "count=%u window_s=%d", p->unlogged, REFUSAL_LOG_WINDOW_MS / 1000);
    p->log_window_ms = now;
    p->logged = p->unlogged = 0;
}

/* Whether a refusal may be logged now: REFUSAL_LOG_MAX a window. */
static bool
refusal_log_allowed(struct agent_peers *p)
{
    refusal_log_roll(p);
    if (p->logged < REFUSAL_LOG_MAX) {
        p->logged++;
        return true;
    }
    p->unlogged++;
    return false;
}

static void
refuse(struct agent *a, enum agent_announce_refusal why, const struct agent_bus_msg *msg,
       const char *node_id, const struct na_error *err)
{
    a->metrics.announcements_refused[why]++;
    if (!refusal_log_allowed(a->peers))
        return;
    char quoted[1024];
    na_log(NA_LOG_WARN, NULL, "node announcement refused",
           "reason=%s node_id=%s offset=%lld error=%s", agent_announce_refusal_name(why),
           node_id && agent_node_id_is_valid(node_id) ? node_id : "-", (long long)msg->offset,
           na_log_quote(quoted, sizeof(quoted), err->msg));
}

/* Checks an announcement from the top: signature and certificate, then the message.
 * Returns -1 when it may be believed, else the refusal's reason with *err saying why; *out
 * is the decoded announcement whenever it decoded (the caller frees it). */
static int
authenticate(struct agent *a, const struct agent_bus_msg *msg,
             Nodeagent__V1__NodeAnnouncement **out, struct na_error **err)
{
    const struct agent_identity *id = a->identity;
    struct trust_node_cert cert;
    if (!id->insecure &&
        agent_identity_check_node_message(id, TRUST_ANNOUNCEMENT, msg, &cert, err) < 0)
        return AGENT_ANNOUNCE_REFUSED_UNAUTHENTICATED;
    *out = nodeagent__v1__node_announcement__unpack(NULL, msg->size, msg->payload);
    if (!*out) {
        na_error_set(err, NA_CODE_MALFORMED, 0, "%zu bytes that are not a NodeAnnouncement",
                     msg->size);
        return AGENT_ANNOUNCE_REFUSED_MALFORMED;
    }
    if (agent_announcement_check(*out, msg->key, msg->key_len, err) < 0)
        return AGENT_ANNOUNCE_REFUSED_MALFORMED;
    return id->insecure ? -1 : agent_announcement_matches_cert(*out, &cert, err);
}

void
agent_peers_on_announcement(void *agent, const struct agent_bus_msg *msg)
{
    struct agent *a = agent;
    struct agent_peers *p = a->peers;
    if (!p)
        return;
    Nodeagent__V1__NodeAnnouncement *an = NULL;
    cleanup_error struct na_error *err = NULL;
    int why = authenticate(a, msg, &an, &err);
    if (why >= 0) {
        refuse(a, (enum agent_announce_refusal)why, msg, an ? an->node_id : NULL, err);
    } else if (strcmp(an->node_id, a->cfg->node_id) != 0) {
        struct peer *peer = peer_find(p, an->node_id);
        why = admissible(p, an, peer, &err);
        /* Reading the topic's history at start, old announcements are expected. */
        bool history = why == AGENT_ANNOUNCE_REFUSED_STALE && !p->settled;
        if (why >= 0 && !history)
            refuse(a, (enum agent_announce_refusal)why, msg, an->node_id, err);
        else if (why < 0 && take(p, an, peer))
            peers_changed_notify(a->peers);
    }
    if (an)
        nodeagent__v1__node_announcement__free_unpacked(an, NULL);
}

void
agent_peers_caught_up(void *agent)
{
    struct agent *a = agent;
    if (!a->peers || a->peers->settled)
        return;
    a->peers->settled = true;
    na_log(NA_LOG_INFO, NULL, "peers known: the nodes topic has been read to its end", "peers=%zu",
           a->peers->n);
    peers_changed_notify(a->peers);
}

bool
agent_peers_settled(const struct agent *a)
{
    return a->peers && a->peers->settled;
}

void
agent_peers_changed(struct agent *a)
{
    struct agent_peers *p = a->peers;
    if (!p)
        return;
    size_t n = 0;
    cleanup_free uint32_t *now = local_vnis(a, &n);
    if (n != p->n_vnis || (n && memcmp(now, p->vnis, n * sizeof(*now)) != 0))
        announce(p, false);
}

void
agent_peers_bus_up(struct agent *a)
{
    if (a->peers && a->peers->missed)
        announce(a->peers, false);
}

int
agent_peers_open(struct agent *a, struct na_error **err)
{
    (void)err;
    struct agent_peers *p = na_xcalloc(1, sizeof(*p));
    p->a = a;
    p->topic = agent_topic_nodes(a->cfg);
    uv_timer_init(a->loop, &p->announce_timer);
    p->announce_timer.data = p;
    uv_timer_init(a->loop, &p->expiry_timer);
    p->expiry_timer.data = p;
    uint64_t every = (uint64_t)a->cfg->announce_interval_s * 1000;
    uv_timer_start(&p->announce_timer, on_announce_timer, 0, every);
    uv_timer_start(&p->expiry_timer, on_expiry_timer, EXPIRY_CHECK_MS, EXPIRY_CHECK_MS);
    a->peers = p;
    return 0;
}

static void
on_timer_closed(uv_handle_t *h)
{
    struct agent_peers *p = h->data;
    if (--p->refs > 0)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->items[i].vnis);
    free(p->items);
    free(p->vnis);
    free(p->topic);
    free(p);
}

void
agent_peers_close(struct agent *a)
{
    struct agent_peers *p = a->peers;
    if (!p)
        return;
    if (a->bus)
        announce(p, true);
    a->peers = NULL;
    p->refs = 2;
    uv_close((uv_handle_t *)&p->announce_timer, on_timer_closed);
    uv_close((uv_handle_t *)&p->expiry_timer, on_timer_closed);
}

size_t
agent_peers_for_tunnels(struct agent *a, struct ovs_net_peer **out)
{
    struct agent_peers *p = a->peers;
    size_t n = p ? p->n : 0;
    *out = na_xcalloc(n + 1, sizeof(**out));
    for (size_t i = 0; i < n; i++)
        (*out)[i] = (struct ovs_net_peer){p->items[i].node_id, p->items[i].tunnel_endpoint,
                                          p->items[i].vnis, p->items[i].n_vnis};
    return n;
}

json_t *
agent_peers_view(struct agent *a)
{
    struct agent_peers *p = a->peers;
    json_t *list = json_array();
    uint64_t now = a->loop ? uv_now(a->loop) : 0;
    for (size_t i = 0; p && i < p->n; i++) {
        const struct peer *peer = &p->items[i];
        json_t *vnis = json_array();
        for (size_t k = 0; k < peer->n_vnis; k++)
            json_array_append_new(vnis, json_integer(peer->vnis[k]));
        json_array_append_new(
            list, json_pack("{s:s, s:s, s:s, s:i, s:I, s:f, s:o}", "node_id", peer->node_id,
                            "tunnel_endpoint", peer->tunnel_endpoint, "agent_version",
                            peer->agent_version, "interval_s", (int)peer->interval_s,
                            "announced_ms", (json_int_t)peer->announced_ms, "heard_s_ago",
                            (double)(now - peer->heard_ms) / 1000.0, "vnis", vnis));
    }
    const char *endpoint = a->cfg->tunnel_endpoint ? a->cfg->tunnel_endpoint : "";
    return json_pack("{s:s, s:s, s:i, s:o}", "node_id", a->cfg->node_id, "tunnel_endpoint",
                     endpoint, "announce_interval_s", (int)a->cfg->announce_interval_s, "peers",
                     list);
}

size_t
agent_peers_count(const struct agent *a)
{
    return a->peers ? a->peers->n : 0;
}

bool
agent_peers_is_live(const struct agent *a, const char *node_id)
{
    return a->peers && peer_find(a->peers, node_id) != NULL;
}
