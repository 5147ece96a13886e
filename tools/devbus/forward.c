#include "tools/devbus/forward.h"

#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>

#define RELAY_BUF_SIZE (64 * 1024)

struct relay;

/* One direction of a relay: bytes read from `from` are written to `to`. */
struct relay_half {
    uv_tcp_t *from;
    uv_tcp_t *to;
    uv_write_t req;
    char buf[RELAY_BUF_SIZE];
};

struct relay {
    struct devbus_forward *fwd;
    struct relay *prev, *next;
    uv_tcp_t client;
    uv_tcp_t upstream;
    uv_connect_t connect;
    struct relay_half c2u, u2c;
    int n_open; /* handles not yet closed */
    bool closing;
};

struct devbus_forward {
    uv_tcp_t listener;
    struct sockaddr_storage target;
    struct relay *relays; /* doubly linked, head */
    size_t n_relays;
    bool listener_open;
    bool stopping;
};

static void
forward_maybe_free(struct devbus_forward *fwd)
{
    if (fwd->stopping && !fwd->listener_open && fwd->n_relays == 0)
        free(fwd);
}

static void
relay_handle_closed(uv_handle_t *h)
{
    struct relay *r = h->data;
    if (--r->n_open > 0)
        return;
    struct devbus_forward *fwd = r->fwd;
    if (r->prev)
        r->prev->next = r->next;
    else
        fwd->relays = r->next;
    if (r->next)
        r->next->prev = r->prev;
    fwd->n_relays--;
    free(r);
    forward_maybe_free(fwd);
}

static void
relay_close(struct relay *r)
{
    if (r->closing)
        return;
    r->closing = true;
    uv_close((uv_handle_t *)&r->client, relay_handle_closed);
    uv_close((uv_handle_t *)&r->upstream, relay_handle_closed);
}

static struct relay_half *
half_of(struct relay *r, uv_stream_t *from)
{
    return from == (uv_stream_t *)&r->client ? &r->c2u : &r->u2c;
}

static void
relay_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct relay_half *half = half_of(h->data, (uv_stream_t *)h);
    *buf = uv_buf_init(half->buf, sizeof(half->buf));
}

static void relay_read(uv_stream_t *from, ssize_t nread, const uv_buf_t *buf);

static void
relay_written(uv_write_t *req, int status)
{
    struct relay *r = req->data;
    if (r->closing)
        return;
    struct relay_half *half = req == &r->c2u.req ? &r->c2u : &r->u2c;
    if (status < 0) {
        NA_LOG_DEBUG(NULL, "relay write failed", "error=\"%s\"", uv_strerror(status));
        relay_close(r);
        return;
    }
    int rc = uv_read_start((uv_stream_t *)half->from, relay_alloc, relay_read);
    if (rc < 0)
        relay_close(r);
}

/* One write in flight per direction: reading pauses until the peer took the bytes, so a
 * slow side slows the other instead of growing a queue. */
static void
relay_read(uv_stream_t *from, ssize_t nread, const uv_buf_t *buf)
{
    struct relay *r = from->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            NA_LOG_DEBUG(NULL, "relay read failed", "error=\"%s\"", uv_strerror((int)nread));
        relay_close(r);
        return;
    }
    struct relay_half *half = half_of(r, from);
    uv_read_stop(from);
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)nread);
    half->req.data = r;
    if (uv_write(&half->req, (uv_stream_t *)half->to, &out, 1, relay_written) < 0)
        relay_close(r);
}

static void
relay_connected(uv_connect_t *req, int status)
{
    struct relay *r = req->data;
    if (r->closing)
        return;
    if (status < 0) {
        NA_LOG_WARN(NULL, "relay cannot reach broker", "error=\"%s\"", uv_strerror(status));
        relay_close(r);
        return;
    }
    if (uv_read_start((uv_stream_t *)&r->client, relay_alloc, relay_read) < 0 ||
        uv_read_start((uv_stream_t *)&r->upstream, relay_alloc, relay_read) < 0)
        relay_close(r);
}

static void
forward_accept(uv_stream_t *server, int status)
{
    struct devbus_forward *fwd = server->data;
    if (status < 0 || fwd->stopping) {
        NA_LOG_WARN(NULL, "relay accept failed", "error=\"%s\"", uv_strerror(status));
        return;
    }
    uv_loop_t *loop = server->loop;
    struct relay *r = na_xcalloc(1, sizeof(*r));
    r->fwd = fwd;
    r->next = fwd->relays;
    if (fwd->relays)
        fwd->relays->prev = r;
    fwd->relays = r;
    fwd->n_relays++;

    uv_tcp_init(loop, &r->client);
    uv_tcp_init(loop, &r->upstream);
    r->n_open = 2;
    r->client.data = r->upstream.data = r->connect.data = r;
    r->c2u.from = r->u2c.to = &r->client;
    r->c2u.to = r->u2c.from = &r->upstream;

    if (uv_accept(server, (uv_stream_t *)&r->client) < 0) {
        relay_close(r);
        return;
    }
    uv_tcp_nodelay(&r->client, 1);
    uv_tcp_nodelay(&r->upstream, 1);
    int rc =
        uv_tcp_connect(&r->connect, &r->upstream, (struct sockaddr *)&fwd->target, relay_connected);
    if (rc < 0) {
        NA_LOG_WARN(NULL, "relay cannot reach broker", "error=\"%s\"", uv_strerror(rc));
        relay_close(r);
    }
}

static int
resolve_target(const char *target, struct sockaddr_storage *out, struct na_error **err)
{
    const char *colon = strrchr(target, ':');
    if (!colon || colon == target || !colon[1])
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                            "broker address `%s` is not host:port", target);
    cleanup_free char *host = na_xstrndup(target, (size_t)(colon - target));
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0)
        return na_error_set(err, NA_CODE_UNAVAILABLE, 0, "resolve broker address `%s`: %s", target,
                            gai_strerror(rc));
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

int
devbus_forward_start(uv_loop_t *loop, int listen_port, const char *target,
                     struct devbus_forward **out, struct na_error **err)
{
    struct devbus_forward *fwd = na_xcalloc(1, sizeof(*fwd));
    int rc = resolve_target(target, &fwd->target, err);
    if (rc < 0) {
        free(fwd);
        return rc;
    }

    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", listen_port, &addr);
    uv_tcp_init(loop, &fwd->listener);
    fwd->listener.data = fwd;
    fwd->listener_open = true;
    rc = uv_tcp_bind(&fwd->listener, (struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&fwd->listener, 128, forward_accept);
    if (rc < 0) {
        na_error_set(err, NA_CODE_UNAVAILABLE, -rc, "listen on 127.0.0.1:%d", listen_port);
        devbus_forward_stop(fwd);
        return rc;
    }
    *out = fwd;
    return 0;
}

static void
listener_closed(uv_handle_t *h)
{
    struct devbus_forward *fwd = h->data;
    fwd->listener_open = false;
    forward_maybe_free(fwd);
}

void
devbus_forward_stop(struct devbus_forward *fwd)
{
    if (!fwd || fwd->stopping)
        return;
    fwd->stopping = true;
    for (struct relay *r = fwd->relays; r; r = r->next)
        relay_close(r);
    uv_close((uv_handle_t *)&fwd->listener, listener_closed);
}
