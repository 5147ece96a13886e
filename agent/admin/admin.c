/* The admin API: HTTP on a unix socket (and optionally TCP), served by libmicrohttpd.
 *
 * MHD runs without threads of its own: its epoll fd is polled by the libuv loop and
 * MHD_run() is called there, so the handlers read agent state directly, like every other
 * input of the loop.  Handlers are cheap reads; nothing here blocks.
 *
 *   GET /healthz                 200 or 503, {"healthy", "checks": [...]}
 *   GET /metrics                 Prometheus text
 *   GET /v1/status               node, version, uptime, health, queue depth
 *   GET /v1/instances            every instance the agent knows
 *   GET /v1/instances/<uuid>     one instance, 404 when unknown
 *   GET /v1/instances/<uuid>/snapshots  its snapshots as the store records them
 *   GET /v1/requests/<id>        one request's intent: phase, attempts, result
 *   GET /v1/images               cached base images: size, last use, the instances using them
 *   GET /v1/capacity             inventory, usage, free, traits, memory sharing, Placement state
 *   GET /v1/peers                the other nodes, as their announcements on the bus tell
 *
 * On the unix socket only (the operator's, never the TCP listener's):
 *   GET  /v1/orphans                what looks like this node's and the store does not record
 *                                   (orphans.h), and whether the agent holds
 *   POST /v1/orphans/<uuid>/purge   undefine an orphan's domain and remove its directory
 *                                   (202: queued in its lane; GET /v1/orphans shows the end)
 *   POST /v1/orphans/<uuid>/adopt   make an orphan's domain an instance of this node again
 *                                   (202: checked and queued in its lane; 409 with the
 *                                   reason when it cannot be adopted; GET /v1/orphans and
 *                                   /v1/instances/<uuid> show the end)
 *   POST /v1/orphans/release        every current orphan stops holding the agent
 *
 * The unix socket serves every route.  The optional TCP listener ([admin] listen) serves
 * /healthz and /metrics to anyone, and the rest only to a request with
 * "Authorization: Bearer <token>" of [admin] token_file (401 otherwise); without a token
 * file, only those two (403).  The routing is admin_route() (admin_route.c).
 */
#include "agent/admin/admin.h"
#include "agent/admin/admin-private.h"
#include "agent/observed/orphans.h"
#include "agent/ops/snapshots.h"
#include "agent/outputs/capacity.h"
#include "agent/bus/identity.h"
#include "agent/outputs/peers.h"
#include "agent/observed/guest_stats.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

struct admin_server {
    struct agent_admin *admin;
    struct MHD_Daemon *daemon;
    uv_poll_t poll;
    uv_timer_t timer;
    bool started;
    bool tcp; /* private routes need the bearer token here */
};

struct agent_admin {
    struct agent *agent;
    struct admin_server servers[2]; /* unix socket, optional TCP */
    size_t n_servers;
    char *socket_path;
    int pending_closes;
};

static enum MHD_Result
respond(struct MHD_Connection *c, unsigned status, const char *type, char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result
respond_json(struct MHD_Connection *c, unsigned status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    size_t len = strlen(text);
    char *with_nl = na_xmalloc(len + 2);
    memcpy(with_nl, text, len);
    with_nl[len] = '\n';
    with_nl[len + 1] = '\0';
    free(text);
    return respond(c, status, "application/json", with_nl);
}

static enum MHD_Result
respond_error(struct MHD_Connection *c, unsigned status, const char *msg)
{
    return respond_json(c, status, json_pack("{s:s}", "error", msg));
}

static json_t *
health_json(struct agent *a, bool *healthy)
{
    struct agent_check checks[AGENT_N_CHECKS];
    *healthy = agent_health(a, checks);
    json_t *list = json_array();
    for (size_t i = 0; i < AGENT_N_CHECKS; i++)
        json_array_append_new(list, json_pack("{s:s, s:b, s:s}", "name", checks[i].name, "ok",
                                              checks[i].ok, "detail", checks[i].detail));
    json_t *warnings = json_array();
    if (a->identity && a->identity->insecure)
        json_array_append_new(warnings, json_string("[bus] insecure_unsigned = true: requests and "
                                                    "announcements are not authenticated"));
    return json_pack("{s:b, s:o, s:b, s:o}", "healthy", *healthy, "checks", list,
                     "insecure_unsigned", a->identity && a->identity->insecure, "warnings",
                     warnings);
}

static enum MHD_Result
get_healthz(struct agent *a, struct MHD_Connection *c)
{
    bool healthy;
    json_t *body = health_json(a, &healthy);
    return respond_json(c, healthy ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, body);
}

static enum MHD_Result
get_metrics(struct agent *a, struct MHD_Connection *c)
{
    struct agent_gauges g;
    agent_gauges(a, &g);
    cleanup_free char *agent_text = agent_metrics_render(&a->metrics, &g);
    cleanup_free char *guests_text = agent_guest_stats_exposition(a);
    return respond(c, MHD_HTTP_OK, "text/plain; version=0.0.4",
                   na_xasprintf("%s%s", agent_text, guests_text));
}

static enum MHD_Result
get_status(struct agent *a, struct MHD_Connection *c)
{
    bool healthy;
    json_t *health = health_json(a, &healthy);
    struct agent_gauges g;
    agent_gauges(a, &g);
    size_t n_instances = a->instances.n;
    json_t *body =
        json_pack("{s:s, s:s, s:f, s:b, s:O, s:I, s:I, s:I, s:I, s:I}", "node_id", a->cfg->node_id,
                  "version", AGENT_VERSION, "uptime_s", g.uptime_s, "healthy", healthy, "checks",
                  json_object_get(health, "checks"), "instances", (json_int_t)n_instances,
                  "queue_depth", (json_int_t)g.queued, "running", (json_int_t)g.running, "outbox",
                  (json_int_t)g.outbox, "bus_lag", (json_int_t)g.bus_lag);
    json_decref(health);
    return respond_json(c, MHD_HTTP_OK, body);
}

/* The spec's NICs: what an operator checks after an adoption, and what tenants reach. */
static json_t *
nics_json(const Nodeagent__V1__InstanceSpec *spec)
{
    json_t *list = json_array();
    for (size_t i = 0; i < spec->n_nics; i++) {
        const Nodeagent__V1__Nic *n = spec->nics[i];
        json_t *ips = json_array();
        for (size_t k = 0; k < n->n_ips; k++)
            json_array_append_new(ips, json_string(n->ips[k]));
        json_array_append_new(list, json_pack("{s:s, s:s, s:i, s:s, s:o, s:s, s:s, s:i}", "port_id",
                                              n->port_id, "network_id", n->network_id, "vni",
                                              (int)n->vni, "mac", n->mac, "ips", ips, "gateway",
                                              n->gateway ? n->gateway : "", "gateway6",
                                              n->gateway6 ? n->gateway6 : "", "mtu", (int)n->mtu));
    }
    return list;
}

/* The instance, with its last per-guest figures ("stats") when it runs. */
static json_t *
instance_json(struct agent *a, const struct agent_instance *inst)
{
    const Nodeagent__V1__InstanceSpec *spec = inst->spec;
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:I, s:s, s:{s:i, s:i, s:i}, s:I, s:I}", "uuid",
                  inst->uuid, "name", spec->name, "tenant_id", spec->tenant_id, "desired_state",
                  agent_state_name(inst->desired), "state", agent_state_name(inst->observed),
                  "task", inst->task, "uid", (json_int_t)inst->uid, "image_sha256",
                  inst->image_sha256 ? inst->image_sha256 : "", "flavor", "vcpus",
                  (int)spec->flavor->vcpus, "memory_mib", (int)spec->flavor->memory_mib,
                  "root_disk_gib", (int)spec->flavor->root_disk_gib, "created_ms",
                  (json_int_t)inst->created_ms, "updated_ms", (json_int_t)inst->updated_ms);
    json_object_set_new(j, "nics", nics_json(spec));
    json_t *stats = agent_guest_stats_view(a, inst->uuid);
    if (stats)
        json_object_set_new(j, "stats", stats);
    return j;
}

static enum MHD_Result
get_instances(struct agent *a, struct MHD_Connection *c, const char *uuid)
{
    if (uuid) {
        const struct agent_instance *inst = agent_instances_find(&a->instances, uuid);
        if (!inst)
            return respond_error(c, MHD_HTTP_NOT_FOUND, "no such instance on this node");
        return respond_json(c, MHD_HTTP_OK, instance_json(a, inst));
    }
    json_t *list = json_array();
    for (size_t i = 0; i < a->instances.n; i++)
        json_array_append_new(list, instance_json(a, a->instances.items[i]));
    return respond_json(c, MHD_HTTP_OK, json_pack("{s:o}", "instances", list));
}

static enum MHD_Result
get_request(struct agent *a, struct MHD_Connection *c, const char *request_id)
{
    struct agent_intent *in = NULL;
    cleanup_error struct na_error *err = NULL;
    int ret = agent_store_intent_get(a->store, request_id, &in, &err);
    if (ret == -ENOENT)
        return respond_error(c, MHD_HTTP_NOT_FOUND, "no request with that request_id");
    if (ret < 0)
        return respond_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, err->msg);

    json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:I}", "request_id",
                             in->request_id, "kind", in->kind, "instance_uuid", in->instance_uuid,
                             "phase", agent_intent_phase_name(in->phase), "attempts", in->attempts,
                             "bus_offset", (json_int_t)in->bus_offset, "received_ms",
                             (json_int_t)in->received_ms, "updated_ms", (json_int_t)in->updated_ms);
    Nodeagent__V1__Event *ev =
        in->result_event.size
            ? nodeagent__v1__event__unpack(NULL, in->result_event.size, in->result_event.data)
            : NULL;
    if (ev) {
        json_object_set_new(body, "event_id", json_string(ev->event_id));
        if (ev->error) {
            json_object_set_new(body, "error_code",
                                json_string(na_code_name((enum na_code)ev->error->code)));
            json_object_set_new(body, "error_message", json_string(ev->error->message));
        }
        nodeagent__v1__event__free_unpacked(ev, NULL);
    }
    agent_intent_free(in);
    return respond_json(c, MHD_HTTP_OK, body);
}

/* A directory listing on the loop: the cache directory is small and local. */
static enum MHD_Result
get_images(struct agent *a, struct MHD_Connection *c)
{
    json_t *list = json_array();
    DIR *d = opendir(a->host.images_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        struct stat st;
        if (strlen(e->d_name) != 64 || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(st.st_mode))
            continue;
        json_t *users = json_array();
        for (size_t i = 0; i < a->instances.n; i++)
            if (a->instances.items[i]->image_sha256 &&
                strcmp(a->instances.items[i]->image_sha256, e->d_name) == 0)
                json_array_append_new(users, json_string(a->instances.items[i]->uuid));
        json_array_append_new(list,
                              json_pack("{s:s, s:I, s:I, s:o}", "sha256", e->d_name, "size",
                                        (json_int_t)st.st_size, "last_used_ms",
                                        (json_int_t)st.st_mtim.tv_sec * 1000, "users", users));
    }
    if (d)
        closedir(d);
    return respond_json(c, MHD_HTTP_OK, json_pack("{s:o}", "images", list));
}

/* A 401 with the challenge RFC 6750 asks for. */
static enum MHD_Result
respond_unauthorized(struct MHD_Connection *c, const char *msg)
{
    char *text = json_dumps(json_pack("{s:s}", "error", msg), JSON_COMPACT);
    char *body = na_xasprintf("%s\n", text);
    free(text);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"nodeagent\"");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_UNAUTHORIZED, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result
post_orphans_release(struct agent *a, struct MHD_Connection *c)
{
    cleanup_error struct na_error *err = NULL;
    int n = agent_orphans_release(a, &err);
    if (n < 0)
        return respond_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, err->msg);
    return respond_json(c, MHD_HTTP_OK, json_pack("{s:i}", "released", n));
}

/* uuid_purge: "<uuid>/purge", checked by the routing. */
static enum MHD_Result
post_orphan_purge(struct agent *a, struct MHD_Connection *c, const char *uuid_purge)
{
    char id[37];
    memcpy(id, uuid_purge, 36);
    id[36] = '\0';
    cleanup_error struct na_error *err = NULL;
    int ret = agent_orphans_purge(a, id, &err);
    if (ret == -ENOENT)
        return respond_error(c, MHD_HTTP_NOT_FOUND, err->msg);
    if (ret < 0)
        return respond_error(c, MHD_HTTP_CONFLICT, err->msg);
    return respond_json(c, MHD_HTTP_ACCEPTED,
                        json_pack("{s:s, s:s}", "uuid", id, "purge", "queued"));
}

/* uuid_adopt: "<uuid>/adopt", checked by the routing. */
static enum MHD_Result
post_orphan_adopt(struct agent *a, struct MHD_Connection *c, const char *uuid_adopt)
{
    char id[37];
    memcpy(id, uuid_adopt, 36);
    id[36] = '\0';
    cleanup_error struct na_error *err = NULL;
    int ret = agent_orphans_adopt(a, id, &err);
    if (ret == -ENOENT)
        return respond_error(c, MHD_HTTP_NOT_FOUND, err->msg);
    if (ret < 0)
        return respond_error(c, MHD_HTTP_CONFLICT, err->msg);
    return respond_json(c, MHD_HTTP_ACCEPTED,
                        json_pack("{s:s, s:s}", "uuid", id, "adopt", "queued"));
}

static enum MHD_Result
on_http(void *cls, struct MHD_Connection *c, const char *url, const char *method,
        const char *version, const char *upload_data, size_t *upload_data_size, void **req_cls)
{
    (void)version;
    (void)upload_data;
    (void)req_cls;
    struct admin_server *s = cls;
    struct agent *a = s->admin->agent;
    const struct admin_request_in in = {
        .method = method,
        .url = url,
        .upload_size = *upload_data_size,
        .tcp = s->tcp,
        .authorization =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
        .token = a->cfg->admin_token,
        .token_size = a->cfg->admin_token_size,
    };
    struct admin_route route;
    admin_route(&in, &route);

    switch (route.resource) {
    case ADMIN_NONE:
        if (route.www_authenticate)
            return respond_unauthorized(c, route.error);
        return respond_error(c, route.status, route.error);
    case ADMIN_HEALTHZ:
        return get_healthz(a, c);
    case ADMIN_METRICS:
        return get_metrics(a, c);
    case ADMIN_STATUS:
        return get_status(a, c);
    case ADMIN_IMAGES:
        return get_images(a, c);
    case ADMIN_CAPACITY:
        if (!a->capacity)
            break;
        return respond_json(c, MHD_HTTP_OK, agent_capacity_view(a));
    case ADMIN_PEERS:
        return respond_json(c, MHD_HTTP_OK, agent_peers_view(a));
    case ADMIN_INSTANCES:
        return get_instances(a, c, NULL);
    case ADMIN_INSTANCE:
        return get_instances(a, c, route.arg);
    case ADMIN_INSTANCE_SNAPSHOTS: {
        json_t *view = agent_snapshots_view(a, route.arg);
        return view ? respond_json(c, MHD_HTTP_OK, view)
                    : respond_error(c, MHD_HTTP_NOT_FOUND, "no such instance on this node");
    }
    case ADMIN_REQUEST:
        return get_request(a, c, route.arg);
    case ADMIN_ORPHANS:
        return respond_json(c, MHD_HTTP_OK, agent_orphans_view(a));
    case ADMIN_ORPHANS_RELEASE:
        return post_orphans_release(a, c);
    case ADMIN_ORPHAN_PURGE:
        return post_orphan_purge(a, c, route.arg);
    case ADMIN_ORPHAN_ADOPT:
        return post_orphan_adopt(a, c, route.arg);
    }
    return respond_error(c, MHD_HTTP_NOT_FOUND, "no such resource");
}

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char text[512], quoted[1024];
    vsnprintf(text, sizeof(text), fmt, ap);
    text[strcspn(text, "\n")] = '\0';
    na_log(NA_LOG_WARN, NULL, "admin http", "detail=%s",
           na_log_quote(quoted, sizeof(quoted), text));
}

static void server_run(struct admin_server *s);

static void
on_server_timer(uv_timer_t *t)
{
    server_run(t->data);
}

static void
on_server_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    server_run(p->data);
}

/* Lets MHD do what is ready, then arms the timer for its next deadline. */
static void
server_run(struct admin_server *s)
{
    MHD_run(s->daemon);
    MHD_UNSIGNED_LONG_LONG timeout = 0;
    if (MHD_get_timeout(s->daemon, &timeout) == MHD_YES)
        uv_timer_start(&s->timer, on_server_timer, timeout, 0);
    else
        uv_timer_stop(&s->timer);
}

static int
server_start(struct agent_admin *admin, int listen_fd, const struct sockaddr *addr,
             const char *what, struct na_error **err)
{
    struct admin_server *s = &admin->servers[admin->n_servers];
    s->admin = admin;
    s->tcp = addr != NULL;
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (addr && addr->sa_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->daemon = listen_fd >= 0
                    ? MHD_start_daemon(flags, 0, NULL, NULL, on_http, s, MHD_OPTION_EXTERNAL_LOGGER,
                                       mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, listen_fd,
                                       MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                                       MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_END)
                    : MHD_start_daemon(flags, 0, NULL, NULL, on_http, s, MHD_OPTION_EXTERNAL_LOGGER,
                                       mhd_log, NULL, MHD_OPTION_SOCK_ADDR, addr,
                                       MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                                       MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_END);
    if (!s->daemon) {
        if (listen_fd >= 0)
            close(listen_fd);
        return na_error_set(err, NA_CODE_INTERNAL, 0, "start admin server on %s", what);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    uv_poll_init(admin->agent->loop, &s->poll, info->epoll_fd);
    s->poll.data = s;
    uv_poll_start(&s->poll, UV_READABLE, on_server_poll);
    uv_timer_init(admin->agent->loop, &s->timer);
    s->timer.data = s;
    s->started = true;
    admin->n_servers++;
    na_log(NA_LOG_INFO, NULL, "admin API listening", "address=%s serves=%s", what,
           !s->tcp                          ? "all"
           : admin->agent->cfg->admin_token ? "healthz,metrics,all-with-bearer-token"
                                            : "healthz,metrics");
    return 0;
}

/* A unix socket at path; refuses to steal it from a live agent. */
static int
unix_listen(const char *path, struct na_error **err)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sun.sun_path))
        return na_error_set(err, NA_CODE_INTERNAL, ENAMETOOLONG, "admin socket `%s`", path);
    strcpy(sun.sun_path, path);

    cleanup_free char *dir = na_xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            return na_error_set(err, NA_CODE_INTERNAL, errno, "create directory `%s`", dir);
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return na_error_set(err, NA_CODE_INTERNAL, errno, "admin socket");
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            close(fd);
            return na_error_set(err, NA_CODE_INTERNAL, EEXIST,
                                "admin socket path `%s` exists and is not a socket", path);
        }
        if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
            close(fd);
            return na_error_set(err, NA_CODE_INTERNAL, EADDRINUSE, "another agent answers on `%s`",
                                path);
        }
        close(fd);
        unlink(path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return na_error_set(err, NA_CODE_INTERNAL, errno, "admin socket");
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || chmod(path, 0660) < 0 ||
        listen(fd, 64) < 0) {
        int e = errno;
        close(fd);
        return na_error_set(err, NA_CODE_INTERNAL, e, "listen on admin socket `%s`", path);
    }
    return fd;
}

int
agent_admin_open(struct agent *a, struct agent_admin **out, struct na_error **err)
{
    struct agent_admin *admin = na_xcalloc(1, sizeof(*admin));
    admin->agent = a;
    int ret = unix_listen(a->cfg->admin_socket, err);
    if (ret >= 0) {
        admin->socket_path = na_xstrdup(a->cfg->admin_socket);
        ret = server_start(admin, ret, NULL, a->cfg->admin_socket, err);
    }
    if (ret >= 0 && a->cfg->admin_listen) {
        cleanup_free char *host = na_xstrdup(a->cfg->admin_listen);
        char *colon = strrchr(host, ':');
        *colon = '\0';
        char *h = host;
        if (h[0] == '[' && colon[-1] == ']') {
            h++;
            colon[-1] = '\0';
        }
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
        struct addrinfo *ai = NULL;
        int gai = getaddrinfo(h, colon + 1, &hints, &ai);
        if (gai != 0) {
            ret = na_error_set(err, NA_CODE_INTERNAL, 0, "[admin] listen `%s`: %s",
                               a->cfg->admin_listen, gai_strerror(gai));
        } else {
            ret = server_start(admin, -1, ai->ai_addr, a->cfg->admin_listen, err);
            freeaddrinfo(ai);
        }
    }
    if (ret < 0) {
        agent_admin_close(admin);
        return ret;
    }
    *out = admin;
    return 0;
}

static void
on_closed(uv_handle_t *h)
{
    struct admin_server *s = h->data;
    struct agent_admin *admin = s->admin;
    if (--admin->pending_closes == 0)
        free(admin);
}

void
agent_admin_close(struct agent_admin *admin)
{
    if (!admin)
        return;
    for (size_t i = 0; i < admin->n_servers; i++) {
        struct admin_server *s = &admin->servers[i];
        if (!s->started)
            continue;
        MHD_stop_daemon(s->daemon);
        admin->pending_closes += 2;
        uv_close((uv_handle_t *)&s->poll, on_closed);
        uv_close((uv_handle_t *)&s->timer, on_closed);
    }
    if (admin->socket_path) {
        unlink(admin->socket_path);
        free(admin->socket_path);
    }
    if (admin->pending_closes == 0)
        free(admin);
}
