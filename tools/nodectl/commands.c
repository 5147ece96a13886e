/* The subcommands: each strings together parsing results, building, bus or admin I/O and
 * printing, and returns its exit status (or a negative error). */
#include "tools/nodectl/nodectl.h"

#include "proto/proto_json.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>

#define DEFAULT_WAIT_S 300

static volatile sig_atomic_t interrupted;

static void
on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* SIGINT/SIGTERM end a wait cleanly (consumer closed) instead of killing the process. */
static void
catch_interrupts(void)
{
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int
nodectl_exit_code(const struct na_error *err)
{
    if (!err)
        return NODECTL_EXIT_BUS;
    switch (err->code) {
    case NA_CODE_INVALID_ARGUMENT:
        return NODECTL_EXIT_USAGE;
    case NA_CODE_TIMEOUT:
        return NODECTL_EXIT_TIMEOUT;
    default:
        return NODECTL_EXIT_BUS;
    }
}

static void
envelope_freep(Nodeagent__V1__Envelope **e)
{
    if (*e)
        nodeagent__v1__envelope__free_unpacked(*e, NULL);
}

static void
events_closep(struct nodectl_events **es)
{
    nodectl_events_close(*es);
}

static int
write_file(const char *path, const void *data, size_t size, struct na_error **err)
{
    cleanup_fclose FILE *f = fopen(path, "wb");
    if (!f)
        return na_error_set(err, NA_CODE_UNAVAILABLE, errno, "open `%s` for writing", path);
    if (fwrite(data, 1, size, f) != size || fflush(f) != 0)
        return na_error_set(err, NA_CODE_UNAVAILABLE, errno, "write `%s`", path);
    return 0;
}

/* The legacy HMAC header value for data; *signed_out false without --hmac-key-file. */
static int
sign_hmac(const struct nodectl_global *g, const uint8_t *data, size_t size, char hex[65],
          bool *signed_out, struct na_error **err)
{
    *signed_out = false;
    if (!g->hmac_key_file)
        return 0;
    cleanup_fclose FILE *f = fopen(g->hmac_key_file, "rb");
    if (!f)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, errno, "--hmac-key-file: open `%s`",
                            g->hmac_key_file);
    uint8_t key[4096];
    size_t n = fread(key, 1, sizeof(key), f);
    if (ferror(f) || !feof(f))
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                            "--hmac-key-file: `%s` is unreadable or larger than %zu bytes",
                            g->hmac_key_file, sizeof(key));
    na_hmac_sha256_hex(key, n, data, size, hex);
    *signed_out = true;
    return 0;
}

/* Whether ev is the agent's refusal, before authentication, of the very message we sent:
 * its request id is only what the message claimed, so anyone could have sent a message
 * with our id; the offset the producer got for ours is what makes it ours. */
static bool
is_our_refusal(const struct nodectl_args *a, const Nodeagent__V1__Event *ev, const char *request_id,
               const struct nodectl_delivery *sent)
{
    return ev->kind == NODEAGENT__V1__EVENT_KIND__EVENT_KIND_FAILED && !*ev->request_id &&
           strcmp(ev->unverified_request_id, request_id) == 0 &&
           ev->request_offset == sent->offset &&
           (!*ev->node_id || strcmp(ev->node_id, a->g.node) == 0);
}

/* Prints the request's events until its terminal one; returns the exit status. */
static int
wait_for_result(const struct nodectl_args *a, struct nodectl_events *es, const char *request_id,
                const struct nodectl_delivery *sent, uint32_t timeout_s, struct na_error **err)
{
    bool console = a->cmd->kind == AGENT_REQ_CONSOLE_LOG;
    /* With console-log the log itself is the output; events go to stderr in text mode. */
    FILE *ev_out = console && !a->g.json ? stderr : stdout;
    int64_t deadline = na_now_ms() + (int64_t)timeout_s * 1000;
    catch_interrupts();
    while (!interrupted) {
        int64_t left = deadline - na_now_ms();
        if (left <= 0)
            break;
        Nodeagent__V1__Event *ev = NULL;
        struct nodectl_delivery where;
        int rc = nodectl_events_next(es, left < 200 ? (int)left : 200, &ev, &where, err);
        if (rc < 0)
            return rc;
        if (rc == 0 || !ev)
            continue;
        if (is_our_refusal(a, ev, request_id, sent)) {
            nodectl_print_event(ev_out, a->g.json, ev, &where);
            cleanup_free char *text =
                ev->error ? nodectl_error_text(ev->error) : na_xstrdup("UNSPECIFIED: no error");
            fprintf(stderr,
                    "error: the agent refused the message at offset %" PRId64
                    " before authentication (its request id was not trusted): %s\n",
                    sent->offset, text);
            return NODECTL_EXIT_FAILED;
        }
        if (strcmp(ev->request_id, request_id) != 0)
            continue;
        nodectl_print_event(ev_out, a->g.json, ev, &where);
        if (ev->kind == NODEAGENT__V1__EVENT_KIND__EVENT_KIND_DONE) {
            if (console && !a->g.json && ev->console_log.len) {
                fwrite(ev->console_log.data, 1, ev->console_log.len, stdout);
                fflush(stdout);
            }
            return NODECTL_EXIT_OK;
        }
        if (ev->kind == NODEAGENT__V1__EVENT_KIND__EVENT_KIND_FAILED) {
            cleanup_free char *text =
                ev->error ? nodectl_error_text(ev->error) : na_xstrdup("UNSPECIFIED: no error");
            fprintf(stderr, "error %s\n", text);
            return NODECTL_EXIT_FAILED;
        }
    }
    return na_error_set(err, NA_CODE_TIMEOUT, 0, "%s waiting for the result of request %s",
                        interrupted ? "interrupted" : "timed out", request_id);
}

static void
print_sent(const struct nodectl_args *a, const char *request_id, const char *topic,
           const struct nodectl_delivery *d)
{
    if (a->g.json) {
        cleanup_json json_t *j =
            json_pack("{s:s, s:s, s:i, s:I}", "request_id", request_id, "topic", topic, "partition",
                      (int)d->partition, "offset", (json_int_t)d->offset);
        nodectl_print_json(stdout, j, false);
    } else {
        /* With console-log --wait the console text owns stdout. */
        FILE *out = a->cmd->kind == AGENT_REQ_CONSOLE_LOG && nodectl_arg_bool(a, NODECTL_F_WAIT)
                        ? stderr
                        : stdout;
        fprintf(out, "request_id=%s sent to %s (partition %d, offset %lld)\n", request_id, topic,
                (int)d->partition, (long long)d->offset);
        fflush(out);
    }
}

int
nodectl_cmd_request(const struct nodectl_args *a, struct na_error **err)
{
    __attribute__((cleanup(envelope_freep))) Nodeagent__V1__Envelope *env = NULL;
    uint32_t timeout_s = DEFAULT_WAIT_S;
    int rc = nodectl_build_envelope(a, &env, err);
    if (rc == 0)
        rc = nodectl_arg_u32(a, NODECTL_F_WAIT_TIMEOUT, &timeout_s, err);
    if (rc < 0)
        return rc;

    size_t size = nodeagent__v1__envelope__get_packed_size(env);
    cleanup_free uint8_t *buf = na_xmalloc(size);
    nodeagent__v1__envelope__pack(env, buf);

    /* The key is loaded before anything is written or sent, so a bad one costs nothing. */
    cleanup_pkey EVP_PKEY *cp_key = NULL;
    rc = nodectl_cp_key_load(&a->g, &cp_key, err);
    if (rc < 0)
        return rc;
    char signature[TRUST_SIGNATURE_HEX_LEN + 1];
    if (cp_key && (rc = trust_sign_hex(cp_key, TRUST_REQUEST, buf, size, signature, err)) < 0)
        return rc;

    const char *out_file = nodectl_arg_str(a, NODECTL_F_OUT);
    if (out_file) {
        cleanup_free char *sig_file = cp_key ? na_xasprintf("%s.sig", out_file) : NULL;
        rc = write_file(out_file, buf, size, err);
        if (rc == 0 && sig_file)
            rc = write_file(sig_file, signature, strlen(signature), err);
        if (rc < 0)
            return rc;
        if (a->g.json) {
            cleanup_json json_t *j = json_pack("{s:s, s:s, s:I}", "request_id", env->request_id,
                                               "file", out_file, "size", (json_int_t)size);
            if (sig_file)
                json_object_set_new(j, "signature_file", json_string(sig_file));
            nodectl_print_json(stdout, j, false);
        } else if (sig_file) {
            printf("request_id=%s written to %s (%zu bytes), signature to %s\n", env->request_id,
                   out_file, size, sig_file);
        } else {
            printf("request_id=%s written to %s (%zu bytes)\n", env->request_id, out_file, size);
        }
        return NODECTL_EXIT_OK;
    }

    if (!a->g.node || !*a->g.node)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                            "no target node: give --node ID or set NODECTL_NODE");
    char hmac[65];
    bool has_hmac = false;
    rc = sign_hmac(&a->g, buf, size, hmac, &has_hmac, err);
    if (rc < 0)
        return rc;
    struct nodectl_signatures sigs = {
        .hmac = has_hmac ? hmac : NULL,
        .signature = cp_key ? signature : NULL,
    };

    /* Reading starts before producing, at offsets fixed now, so a fast reply is not missed. */
    __attribute__((cleanup(events_closep))) struct nodectl_events *es = NULL;
    bool wait = nodectl_arg_bool(a, NODECTL_F_WAIT);
    if (wait) {
        cleanup_free char *events_topic = na_xasprintf("%s.events", a->g.prefix);
        rc = nodectl_events_open(&a->g, events_topic, false, &es, err);
        if (rc < 0)
            return rc;
    }

    cleanup_free char *topic = na_xasprintf("%s.node.%s", a->g.prefix, a->g.node);
    struct nodectl_delivery d = {0};
    rc = nodectl_bus_send(&a->g, topic, agent_request_key(env), buf, size, &sigs, &d, err);
    if (rc < 0)
        return rc;
    print_sent(a, env->request_id, topic, &d);
    if (!wait)
        return NODECTL_EXIT_OK;
    return wait_for_result(a, es, env->request_id, &d, timeout_s, err);
}

static bool
event_matches(const struct nodectl_args *a, const Nodeagent__V1__Event *ev)
{
    const char *rid = nodectl_arg_str(a, NODECTL_F_FILTER_REQUEST_ID);
    const char *inst = nodectl_arg_str(a, NODECTL_F_FILTER_INSTANCE);
    return (!rid || strcmp(ev->request_id, rid) == 0) &&
           (!inst || strcmp(ev->instance_uuid, inst) == 0);
}

int
nodectl_follow(const struct nodectl_args *a, const char *topic, const char *what,
               bool (*print)(const struct nodectl_args *a, const struct nodectl_message *m),
               struct na_error **err)
{
    uint32_t count = 0, timeout_s = 0;
    int rc = nodectl_arg_u32(a, NODECTL_F_COUNT, &count, err);
    if (rc == 0)
        rc = nodectl_arg_u32(a, NODECTL_F_EVENTS_TIMEOUT, &timeout_s, err);
    if (rc < 0)
        return rc;
    bool has_timeout = nodectl_arg_str(a, NODECTL_F_EVENTS_TIMEOUT) != NULL;

    __attribute__((cleanup(events_closep))) struct nodectl_events *es = NULL;
    rc = nodectl_events_open(&a->g, topic, nodectl_arg_bool(a, NODECTL_F_FROM_BEGINNING), &es, err);
    if (rc < 0)
        return rc;

    int64_t deadline = na_now_ms() + (int64_t)timeout_s * 1000;
    uint32_t seen = 0;
    bool to_end = nodectl_arg_bool(a, NODECTL_F_TO_END);
    catch_interrupts();
    while (!interrupted && (!count || seen < count) && !(to_end && nodectl_topic_at_end(es))) {
        int64_t left = has_timeout ? deadline - na_now_ms() : 200;
        if (left <= 0)
            break;
        struct nodectl_message m;
        if (nodectl_topic_next(es, left < 200 ? (int)left : 200, &m) && print(a, &m))
            seen++;
    }
    if (count && seen < count)
        return na_error_set(err, NA_CODE_TIMEOUT, 0, "%s after %u of %u %s",
                            interrupted                          ? "interrupted"
                            : to_end && nodectl_topic_at_end(es) ? "reached the end of the topic"
                                                                 : "timed out",
                            seen, count, what);
    return NODECTL_EXIT_OK;
}

static bool
print_event(const struct nodectl_args *a, const struct nodectl_message *m)
{
    Nodeagent__V1__Event *ev = nodeagent__v1__event__unpack(NULL, m->size, m->payload);
    if (!ev) {
        fprintf(stderr,
                "nodectl: warning: undecodable event at partition %d offset %" PRId64
                " (%zu bytes), skipped\n",
                (int)m->where.partition, m->where.offset, m->size);
        return false;
    }
    bool match = event_matches(a, ev);
    if (match)
        nodectl_print_event(stdout, a->g.json, ev, &m->where);
    nodeagent__v1__event__free_unpacked(ev, NULL);
    return match;
}

int
nodectl_cmd_events(const struct nodectl_args *a, struct na_error **err)
{
    cleanup_free char *topic = na_xasprintf("%s.events", a->g.prefix);
    return nodectl_follow(a, topic, "events", print_event, err);
}
