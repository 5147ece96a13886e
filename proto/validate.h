/* validate: checks a decoded Envelope against the limits of the bus contract.
 *
 * protobuf-c checks wire syntax only: strings may be any bytes, enums may hold numbers the
 * agent does not know, repeated fields may be as long as the message allows.  Everything
 * the agent does with a request (file names, libvirt XML, OVS columns, log lines) relies on
 * the limits documented in proto/nodeagent.proto and docs/protocol.md, and this module is
 * where they are enforced, once, before a request is recorded or acted on.
 *
 * Input: an unpacked (or hand-built) Envelope; NULL string pointers read as "".
 * Output: 0, or a negative value with *err set to INVALID_ARGUMENT whose field is the path
 * of the first bad field ("create.spec.nics[0].mac", "create.spec.metadata[\"k\"]") and
 * whose message says what was wrong and what is allowed, echoing the bad value escaped and
 * cut short.  An Envelope whose body is an unknown request kind (a field number this agent
 * does not know, in the body range) gets UNIMPLEMENTED with field "body" instead.
 *
 * Pure function of its input; safe from any thread.
 */
#ifndef NODEAGENT_PROTO_VALIDATE_H
#define NODEAGENT_PROTO_VALIDATE_H

#include "common/common.h"
#include "nodeagent.pb-c.h"

int agent_validate_envelope(const Nodeagent__V1__Envelope *env, struct na_error **err);

/* An InstanceSpec from elsewhere than a request (a domain's metadata read back for
 * adoption): the same checks a create's spec gets, the fields named under name
 * ("spec.nics[0].mac"). */
int agent_validate_instance_spec(const Nodeagent__V1__InstanceSpec *spec, const char *name,
                                 struct na_error **err);

/* At most this many bytes of console in a console_log's DONE event: well under the
 * producer's message limit (librdkafka's message.max.bytes, 1000000 by default) and the
 * agent's own event limit (AGENT_EVENT_SIZE_MAX). */
#define AGENT_CONSOLE_TAIL_MAX (256 * 1024)

/* Security groups: groups per port, rules per group, member addresses per group (what
 * bounds the flows a group can make, docs/protocol.md "Security groups"). */
#define AGENT_MAX_PORT_GROUPS 16
#define AGENT_MAX_GROUP_RULES 256
#define AGENT_MAX_GROUP_MEMBERS 4096

/* At most this many networks in one node's announcement. */
#define AGENT_MAX_NODE_VNIS 4096

/* A NodeAnnouncement from another agent: node id, time, version, tunnel endpoint (empty,
 * or an IPv4 address), interval 1..3600 s, at most AGENT_MAX_NODE_VNIS VNIs of
 * 1..16777215.  INVALID_ARGUMENT naming the field. */
int agent_validate_announcement(const Nodeagent__V1__NodeAnnouncement *an, struct na_error **err);

/* Whether request_id is well formed, so that an event about a refused message may echo it
 * (every string an event carries must be valid UTF-8 and safe to log). */
bool agent_request_id_is_valid(const char *request_id);
bool agent_node_id_is_valid(const char *node_id);

#endif
