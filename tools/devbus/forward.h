/* devbus forward: a plain TCP relay from a fixed loopback port to one mock broker.
 *
 * librdkafka 2.0.2's mock cluster listens on ports of its own choosing; the relay lets
 * clients bootstrap at a port chosen by the caller.  Bytes are copied unchanged in both
 * directions; the broker's metadata then sends clients to the real broker ports, which is
 * fine on loopback.  Runs entirely on the given libuv loop: one write in flight per
 * direction (reading pauses until it completes), and when either side closes or fails both
 * sides are closed.
 */
#ifndef NODEAGENT_DEVBUS_FORWARD_H
#define NODEAGENT_DEVBUS_FORWARD_H

#include "common/common.h"

#include <uv.h>

struct devbus_forward;

/* Listens on 127.0.0.1:listen_port and relays every connection to target ("host:port",
 * numeric IPv4 or a name that resolves to one). */
int devbus_forward_start(uv_loop_t *loop, int listen_port, const char *target,
                         struct devbus_forward **out, struct na_error **err);
/* Closes the listener and every open relay; the handles finish closing on the loop's next
 * run.  Accepts NULL. */
void devbus_forward_stop(struct devbus_forward *fwd);

#endif
