/* Peers: the other agents of the cloud, as their announcements tell.
 *
 * Every agent publishes a NodeAnnouncement on <prefix>.nodes (key = node id) every
 * [network] announce_interval seconds, and one with leaving = true when it stops cleanly.
 * Every agent reads the whole topic: a node joins the peer table with its first valid
 * announcement, and leaves it when it says it is leaving or has been silent for three of
 * its own intervals.  Announcements are untrusted input: one that does not decode, whose
 * key is not its node id, or whose fields are out of range is logged and ignored.
 *
 * Each announcement lists the node's networks (the VNIs of its instances' NICs), and a new
 * one goes out as soon as they change, so that every node knows which peers host which
 * networks.  The table is the tunnel layer's list of peers (their tunnel endpoints and
 * networks).  Main loop only.  The checks of one announcement are in announcement.h.
 */
#ifndef NODEAGENT_AGENT_PEERS_H
#define NODEAGENT_AGENT_PEERS_H

#include "common/common.h"
#include "nodeagent.pb-c.h"

#include <jansson.h>

struct agent;

/* How many of a peer's own intervals it may stay silent before it is dropped. */
#define AGENT_PEER_MISSED_INTERVALS 3

int agent_peers_open(struct agent *a, struct na_error **err);
/* Announces that this node is leaving (before the bus flushes), stops the timers. */
void agent_peers_close(struct agent *a);
/* The bus's on_announcement callback: believed only when signed by the node's certified
 * key (unless [bus] insecure_unsigned), newer than its last one, within the limits. */
struct agent_bus_msg;
void agent_peers_on_announcement(void *agent, const struct agent_bus_msg *msg);
size_t agent_peers_count(const struct agent *a);
/* Whether node_id is in the peer table now (announced, not left, not silent). */
bool agent_peers_is_live(const struct agent *a, const char *node_id);
/* The bus's on_nodes_caught_up callback: the table holds every node the topic knew of at
 * start; from now on it is handed to the tunnel layer (before, the tunnels stay as they
 * are in Open vSwitch, so that a restart of the agent does not cut them). */
void agent_peers_caught_up(void *agent);
/* Whether the table is complete (agent_peers_caught_up was called). */
bool agent_peers_settled(const struct agent *a);
/* The instance table changed: announce now if this node's networks did. */
void agent_peers_changed(struct agent *a);
/* Calls fn(ctx) after every change of the peer table (a peer joined, changed or left, or
 * the table became settled). */
void agent_peers_watch(struct agent *a, void (*fn)(void *ctx), void *ctx);
/* The bus came back: announce now. */
void agent_peers_bus_up(struct agent *a);

/* The peers as the tunnel layer wants them: *out (the caller frees the array) points into
 * the table, valid until the table next changes.  Main loop only. */
struct ovs_net_peer;
size_t agent_peers_for_tunnels(struct agent *a, struct ovs_net_peer **out);

/* GET /v1/peers: {"node_id","tunnel_endpoint","announce_interval_s","peers":[{"node_id",
 * "tunnel_endpoint","agent_version","interval_s","announced_ms","heard_s_ago","vnis"}]} */
json_t *agent_peers_view(struct agent *a);

#endif
