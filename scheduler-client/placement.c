/* scheduler-client: a blocking Placement REST client (libcurl, jansson).
 *
 * Each public call owns one curl handle for its few requests (the connection is reused
 * between them) and frees it before returning, so calls share nothing.  Every write first
 * reads what Placement holds and skips the write when it already matches: the agent may
 * call these on every heartbeat without bumping generations. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "scheduler-client/placement-private.h"
#include "scheduler-client/scheduler.h"

#define DEFAULT_TIMEOUT_MS 10000
/* Placement's answers are small; anything bigger is not Placement. */
#define MAX_BODY_SIZE (1 << 20)
#define CONCURRENT_UPDATE "placement.concurrent_update"
#define DUPLICATE_NAME "placement.duplicate_name"

/* json_decrefp comes with jansson. */
#define cleanup_json __attribute__((cleanup(json_decrefp)))

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct http {
    const struct sched_placement_config *cfg;
    CURL *curl;
    struct curl_slist *headers;
    char *base; /* endpoint without a trailing slash */
};

/* One answer.  body is NUL-terminated; json is set for a 2xx answer with a JSON body. */
struct resp {
    long status;
    char *body;
    size_t size;
    bool too_big;
    json_t *json;
    char errbuf[CURL_ERROR_SIZE];
};

static void
resp_clear(struct resp *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static void
http_close(struct http *h)
{
    if (h->curl)
        curl_easy_cleanup(h->curl);
    curl_slist_free_all(h->headers);
    free(h->base);
}
#define cleanup_http __attribute__((cleanup(http_close)))

static int
http_open(struct http *h, const struct sched_placement_config *cfg, struct na_error **err)
{
    memset(h, 0, sizeof(*h));
    if (!cfg->endpoint ||
        (strncmp(cfg->endpoint, "http://", 7) != 0 && strncmp(cfg->endpoint, "https://", 8) != 0))
        return na_error_field(err, "endpoint", "Placement endpoint %s is not an http(s) URL",
                              cfg->endpoint ? cfg->endpoint : "(none)");
    if (cfg->token && strpbrk(cfg->token, "\r\n"))
        return na_error_field(err, "token", "the Placement token holds a line break");
    pthread_once(&curl_once, curl_init_once);
    h->cfg = cfg;
    size_t len = strlen(cfg->endpoint);
    while (len > 0 && cfg->endpoint[len - 1] == '/')
        len--;
    h->base = na_xstrndup(cfg->endpoint, len);
    h->curl = curl_easy_init();
    if (!h->curl)
        return na_error_set(err, NA_CODE_INTERNAL, ENOMEM, "curl_easy_init");
    h->headers = curl_slist_append(
        h->headers, "OpenStack-API-Version: placement " SCHED_PLACEMENT_MICROVERSION);
    h->headers = curl_slist_append(h->headers, "Accept: application/json");
    h->headers = curl_slist_append(h->headers, "Content-Type: application/json");
    if (cfg->token) {
        cleanup_free char *t = na_xasprintf("X-Auth-Token: %s", cfg->token);
        h->headers = curl_slist_append(h->headers, t);
    }
    return 0;
}

static size_t
on_data(char *data, size_t size, size_t nmemb, void *arg)
{
    struct resp *r = arg;
    size_t n = size * nmemb;
    if (r->size + n > MAX_BODY_SIZE) {
        r->too_big = true;
        return 0;
    }
    r->body = na_xrealloc(r->body, r->size + n + 1);
    memcpy(r->body + r->size, data, n);
    r->size += n;
    r->body[r->size] = '\0';
    return n;
}

/* Sends one request; < 0 only when no HTTP answer came (UNAVAILABLE) or a 2xx answer is
 * not JSON.  Callers judge the status. */
static int
http_do(struct http *h, const char *method, const char *path, json_t *body, struct resp *r,
        struct na_error **err)
{
    resp_clear(r);
    cleanup_free char *url = na_xasprintf("%s%s", h->base, path);
    cleanup_free char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    unsigned timeout = h->cfg->timeout_ms ? h->cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
    CURL *c = h->curl;

    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* worker threads: no SIGALRM */
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h->headers);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "nodeagent-scheduler-client");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        if (payload) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
        }
    }

    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_WRITE_ERROR && r->too_big)
        return na_error_set(err, NA_CODE_UNAVAILABLE, 0,
                            "%s %s: the answer is larger than %d bytes, not Placement's", method,
                            path, MAX_BODY_SIZE);
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return na_error_set(err, NA_CODE_UNAVAILABLE, ETIMEDOUT,
                            "%s %s: Placement at %s did not answer within %u ms", method, path,
                            h->base, timeout);
    if (rc != CURLE_OK)
        return na_error_set(err, NA_CODE_UNAVAILABLE, 0, "%s %s: Placement at %s: %s", method, path,
                            h->base, r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->status >= 200 && r->status < 300 && r->size > 0) {
        json_error_t jerr;
        r->json = json_loadb(r->body, r->size, 0, &jerr);
        if (!r->json)
            return na_error_set(err, NA_CODE_UNAVAILABLE, 0,
                                "%s %s: HTTP %ld with a body that is not JSON (%s at byte %d)",
                                method, path, r->status, jerr.text, jerr.position);
    }
    return 0;
}

static const char *
error_code(const struct resp *r, char *buf, size_t size)
{
    return placement_error_code(r->body, r->size, buf, size);
}

static bool
placement_not_found(const struct resp *r)
{
    return placement_is_not_found(r->status, r->body, r->size);
}

/* The error of a non-2xx answer: status, path, and what Placement said. */
static int
http_fail(struct na_error **err, enum na_code code, const char *method, const char *path,
          const struct resp *r, const char *what)
{
    if (code == NA_CODE_UNSPECIFIED)
        code = r->status >= 500 || r->status < 200 ? NA_CODE_UNAVAILABLE : NA_CODE_INTERNAL;
    char said[1024];
    placement_error_text(r->body, r->size, said, sizeof(said));
    return na_error_set(err, code, 0, "%s%s%s %s: HTTP %ld: %s", what ? what : "", what ? ": " : "",
                        method, path, r->status, said);
}

static int
check_uuid(const char *field, const char *uuid, struct na_error **err)
{
    if (!uuid || !na_uuid_is_valid(uuid))
        return na_error_field(err, field, "%s is not a lowercase uuid", uuid ? uuid : "(null)");
    return 0;
}

/* A 2xx JSON answer's integer member. */
static int
json_u64(const struct resp *r, const char *method, const char *path, const char *key, uint64_t *out,
         struct na_error **err)
{
    if (placement_answer_u64(r->json, key, out) < 0)
        return na_error_set(err, NA_CODE_UNAVAILABLE, 0,
                            "%s %s: HTTP %ld without an integer \"%s\" in its answer", method, path,
                            r->status, key);
    return 0;
}

/* --- resource provider ----------------------------------------------------------------- */

int
sched_placement_ensure_provider(const struct sched_placement_config *p, const char *rp_uuid,
                                const char *name, uint64_t *generation, struct na_error **err)
{
    int r;
    if ((r = check_uuid("rp_uuid", rp_uuid, err)) < 0)
        return r;
    if (!name || !*name || strlen(name) > 200)
        return na_error_field(err, "name", "a provider name has 1 to 200 characters");
    cleanup_http struct http h;
    if ((r = http_open(&h, p, err)) < 0)
        return r;
    cleanup_free char *path = na_xasprintf("/resource_providers/%s", rp_uuid);
    struct resp res = {0};
    char code[64];
    uint64_t gen = 0;

    for (int attempt = 1;; attempt++) {
        if (attempt > SCHED_PLACEMENT_MAX_TRIES) {
            r = http_fail(err, NA_CODE_CONFLICT, "PUT", path, &res, "still conflicting");
            goto out;
        }
        if ((r = http_do(&h, "GET", path, NULL, &res, err)) < 0)
            goto out;
        if (res.status == 200) {
            const char *have = json_string_value(json_object_get(res.json, "name"));
            if ((r = json_u64(&res, "GET", path, "generation", &gen, err)) < 0)
                goto out;
            if (have && strcmp(have, name) == 0)
                break;
            /* Ours, under another name: the config says what it is called. */
            cleanup_json json_t *body = json_pack("{ss}", "name", name);
            if ((r = http_do(&h, "PUT", path, body, &res, err)) < 0)
                goto out;
            if (res.status == 200) {
                r = json_u64(&res, "PUT", path, "generation", &gen, err);
                goto out;
            }
            if (res.status == 409 && strcmp(error_code(&res, code, sizeof(code)), DUPLICATE_NAME))
                continue; /* someone else changed it in between */
            r = http_fail(err, res.status == 409 ? NA_CODE_CONFLICT : NA_CODE_UNSPECIFIED, "PUT",
                          path, &res,
                          res.status == 409 ? "renaming the provider: the name is taken" : NULL);
            goto out;
        }
        if (!placement_not_found(&res)) {
            r = http_fail(err, NA_CODE_UNSPECIFIED, "GET", path, &res, NULL);
            goto out;
        }
        cleanup_json json_t *body = json_pack("{ssss}", "uuid", rp_uuid, "name", name);
        if ((r = http_do(&h, "POST", "/resource_providers", body, &res, err)) < 0)
            goto out;
        if (res.status == 200 || res.status == 201) {
            r = json_u64(&res, "POST", "/resource_providers", "generation", &gen, err);
            goto out;
        }
        if (res.status != 409) {
            r = http_fail(err, NA_CODE_UNSPECIFIED, "POST", "/resource_providers", &res, NULL);
            goto out;
        }
        /* Either our uuid appeared meanwhile (look again) or another provider holds the
         * name: tell which. */
        struct resp again = {0};
        r = http_do(&h, "GET", path, NULL, &again, err);
        bool absent = placement_not_found(&again);
        resp_clear(&again);
        if (r < 0)
            goto out;
        if (!absent)
            continue; /* there now, or an answer the next turn will report */
        r = http_fail(err, NA_CODE_CONFLICT, "POST", "/resource_providers", &res,
                      "another resource provider holds this name");
        goto out;
    }
    r = 0;
out:
    if (r == 0 && generation)
        *generation = gen;
    resp_clear(&res);
    return r < 0 ? r : 0;
}

/* GET path (a provider sub-resource) → its JSON and resource_provider_generation. */
static int
get_with_generation(struct http *h, const char *path, struct resp *res, uint64_t *gen,
                    struct na_error **err)
{
    int r;
    if ((r = http_do(h, "GET", path, NULL, res, err)) < 0)
        return r;
    if (placement_not_found(res))
        return http_fail(err, NA_CODE_NOT_FOUND, "GET", path, res,
                         "the resource provider does not exist");
    if (res->status != 200)
        return http_fail(err, NA_CODE_UNSPECIFIED, "GET", path, res, NULL);
    return json_u64(res, "GET", path, "resource_provider_generation", gen, err);
}

/* PUT path with desired (plus the generation) until it is in place.  same() says whether a
 * fresh GET answer already holds it. */
static int
put_with_generation(struct http *h, const char *path, json_t *desired,
                    bool (*same)(json_t *have, json_t *want), struct na_error **err)
{
    struct resp res = {0};
    char code[64];
    int r;
    for (int attempt = 1;; attempt++) {
        uint64_t gen;
        if ((r = get_with_generation(h, path, &res, &gen, err)) < 0)
            break;
        if (same(res.json, desired)) {
            r = 0;
            break;
        }
        if (attempt > SCHED_PLACEMENT_MAX_TRIES) {
            r = na_error_set(err, NA_CODE_CONFLICT, 0,
                             "PUT %s: the resource provider kept changing: %d generation "
                             "conflicts in a row",
                             path, SCHED_PLACEMENT_MAX_TRIES);
            break;
        }
        json_object_set_new(desired, "resource_provider_generation", json_integer((json_int_t)gen));
        if ((r = http_do(h, "PUT", path, desired, &res, err)) < 0)
            break;
        if (res.status == 200) {
            r = 0;
            break;
        }
        if (res.status == 409 && !strcmp(error_code(&res, code, sizeof(code)), CONCURRENT_UPDATE)) {
            NA_LOG_INFO(NULL, "placement generation conflict, retrying",
                        "path=%s generation=%" PRIu64 " attempt=%d", path, gen, attempt);
            continue;
        }
        /* Another 409 (an inventory in use by allocations) will not go away by retrying. */
        r = http_fail(err, res.status == 409 ? NA_CODE_CONFLICT : NA_CODE_UNSPECIFIED, "PUT", path,
                      &res, NULL);
        break;
    }
    resp_clear(&res);
    return r;
}

/* --- inventories ----------------------------------------------------------------------- */

static bool
json_equal_u64(json_t *o, const char *key, json_t *want)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) &&
           json_integer_value(v) == json_integer_value(json_object_get(want, key));
}

static bool
same_inventories(json_t *have, json_t *want)
{
    json_t *h = json_object_get(have, "inventories");
    json_t *w = json_object_get(want, "inventories");
    if (json_object_size(h) != json_object_size(w))
        return false;
    const char *rc;
    json_t *wi;
    json_object_foreach(w, rc, wi)
    {
        json_t *hi = json_object_get(h, rc);
        if (!hi)
            return false;
        static const char *const keys[] = {"total", "reserved", "min_unit", "max_unit",
                                           "step_size"};
        for (size_t i = 0; i < NA_ARRAY_SIZE(keys); i++)
            if (!json_equal_u64(hi, keys[i], wi))
                return false;
        /* Placement stores the ratio as a 32-bit float. */
        double a = json_number_value(json_object_get(hi, "allocation_ratio"));
        double b = json_number_value(json_object_get(wi, "allocation_ratio"));
        if (fabs(a - b) > 1e-6 * fmax(1.0, fabs(b)))
            return false;
    }
    return true;
}

int
sched_placement_set_inventories(const struct sched_placement_config *p, const char *rp_uuid,
                                const struct sched_inventory *inv, struct na_error **err)
{
    int r;
    if ((r = check_uuid("rp_uuid", rp_uuid, err)) < 0)
        return r;
    cleanup_http struct http h;
    if ((r = http_open(&h, p, err)) < 0)
        return r;
    cleanup_json json_t *desired = json_object();
    json_t *invs = json_object();
    json_object_set_new(desired, "inventories", invs);
    for (size_t i = 0; i < inv->n_resources; i++) {
        const struct sched_resource *res = &inv->resources[i];
        json_object_set_new(
            invs, res->resource_class,
            json_pack("{sIsIsIsIsIsf}", "total", (json_int_t)res->total, "reserved",
                      (json_int_t)res->reserved, "min_unit", (json_int_t)res->min_unit, "max_unit",
                      (json_int_t)res->max_unit, "step_size", (json_int_t)res->step_size,
                      "allocation_ratio", res->allocation_ratio));
    }
    cleanup_free char *path = na_xasprintf("/resource_providers/%s/inventories", rp_uuid);
    return put_with_generation(&h, path, desired, same_inventories, err);
}

/* --- traits ---------------------------------------------------------------------------- */

static bool
same_traits(json_t *have, json_t *want)
{
    json_t *h = json_object_get(have, "traits");
    json_t *w = json_object_get(want, "traits");
    if (json_array_size(h) != json_array_size(w))
        return false;
    size_t i;
    json_t *t;
    json_array_foreach(w, i, t)
    {
        bool found = false;
        size_t j;
        json_t *u;
        json_array_foreach(h, j, u) found = found || json_equal(t, u);
        if (!found)
            return false;
    }
    return true;
}

static bool
trait_name_is_valid(const char *t)
{
    if (!t || !*t || strlen(t) > 255)
        return false;
    for (const char *c = t; *c; c++)
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_'))
            return false;
    return true;
}

int
sched_placement_set_traits(const struct sched_placement_config *p, const char *rp_uuid,
                           const char *const *traits, size_t n, struct na_error **err)
{
    int r;
    if ((r = check_uuid("rp_uuid", rp_uuid, err)) < 0)
        return r;
    cleanup_json json_t *desired = json_object();
    json_t *list = json_array();
    json_object_set_new(desired, "traits", list);
    for (size_t i = 0; i < n; i++) {
        if (!trait_name_is_valid(traits[i])) {
            char f[32];
            snprintf(f, sizeof(f), "traits[%zu]", i);
            return na_error_field(err, f, "%.64s is not a trait name",
                                  traits[i] ? traits[i] : "(null)");
        }
        bool dup = false;
        for (size_t j = 0; j < i; j++)
            dup = dup || strcmp(traits[i], traits[j]) == 0;
        if (!dup)
            json_array_append_new(list, json_string(traits[i]));
    }
    cleanup_http struct http h;
    if ((r = http_open(&h, p, err)) < 0)
        return r;
    struct resp res = {0};
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t)
    {
        const char *name = json_string_value(t);
        if (strncmp(name, "CUSTOM_", 7) != 0)
            continue;
        cleanup_free char *tpath = na_xasprintf("/traits/%s", name);
        if ((r = http_do(&h, "PUT", tpath, NULL, &res, err)) < 0)
            break;
        if (res.status != 201 && res.status != 204) {
            r = http_fail(err, NA_CODE_UNSPECIFIED, "PUT", tpath, &res, NULL);
            break;
        }
    }
    resp_clear(&res);
    if (r < 0)
        return r;
    cleanup_free char *path = na_xasprintf("/resource_providers/%s/traits", rp_uuid);
    return put_with_generation(&h, path, desired, same_traits, err);
}

/* --- allocations ----------------------------------------------------------------------- */

/* A consumer's allocations are shared: during a migration one consumer holds a part on
 * the source's provider and one on the destination's, and a control plane may hold parts
 * on providers no agent knows.  So the agent only ever writes its own provider's part:
 * it reads the consumer (GET /allocations/{consumer}), changes that part, and writes the
 * whole back guarded by the consumer generation it read, retrying a conflict. */

/* GET /allocations/{consumer}: 200 with an "allocations" object (empty for a consumer
 * Placement does not know). */
static int
consumer_get(struct http *h, const char *path, struct resp *res, struct na_error **err)
{
    int r = http_do(h, "GET", path, NULL, res, err);
    if (r == 0 && res->status != 200)
        r = http_fail(err, NA_CODE_UNSPECIFIED, "GET", path, res, NULL);
    if (r == 0 && !json_is_object(json_object_get(res->json, "allocations")))
        r = na_error_set(err, NA_CODE_UNAVAILABLE, 0,
                         "GET %s: HTTP 200 without an \"allocations\" object", path);
    return r;
}

/* The PUT body that makes the consumer's allocations those of have (a GET answer) with
 * rp_uuid's part set to resources, or removed when resources is NULL.  A consumer that
 * holds allocations keeps its project, user and type; a new one gets the given ones. */
static json_t *
consumer_body(json_t *have, const char *rp_uuid, json_t *resources, const char *project_id,
              const char *user_id)
{
    json_t *allocations = json_object();
    const char *rp;
    json_t *part;
    json_object_foreach(json_object_get(have, "allocations"), rp, part)
    {
        if (strcmp(rp, rp_uuid) != 0)
            json_object_set_new(
                allocations, rp,
                json_pack("{s:O}", "resources", json_object_get(part, "resources")));
    }
    if (resources)
        json_object_set_new(allocations, rp_uuid, json_pack("{s:O}", "resources", resources));

    json_t *gen = json_object_get(have, "consumer_generation");
    const char *have_project = json_string_value(json_object_get(have, "project_id"));
    const char *have_user = json_string_value(json_object_get(have, "user_id"));
    const char *have_type = json_string_value(json_object_get(have, "consumer_type"));
    bool known = json_is_integer(gen) && have_project && have_user;
    /* Placement names consumer types in capitals; anything else ("unknown", for a consumer
     * written before types existed) cannot be sent back. */
    bool type_ok = have_type && *have_type &&
                   strspn(have_type, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == strlen(have_type);
    /* A new consumer has no generation: Placement wants null. */
    return json_pack("{s:o, s:O, s:s, s:s, s:s}", "allocations", allocations, "consumer_generation",
                     known ? gen : json_null(), "project_id", known ? have_project : project_id,
                     "user_id", known ? have_user : user_id, "consumer_type",
                     known && type_ok ? have_type : "INSTANCE");
}

/* Writes body to path (a consumer), guarded by its generation: 0 when written,
 * -EAGAIN on a generation conflict worth retrying. */
static int
consumer_put(struct http *h, const char *path, json_t *body, int attempt, struct resp *res,
             struct na_error **err)
{
    char code[64];
    int r = http_do(h, "PUT", path, body, res, err);
    if (r < 0)
        return r;
    if (res->status == 204 || res->status == 200)
        return 0;
    if (res->status == 409 && !strcmp(error_code(res, code, sizeof(code)), CONCURRENT_UPDATE)) {
        NA_LOG_INFO(NULL, "placement consumer generation conflict, retrying", "path=%s attempt=%d",
                    path, attempt);
        return -EAGAIN;
    }
    return http_fail(err, res->status == 409 ? NA_CODE_NO_CAPACITY : NA_CODE_UNSPECIFIED, "PUT",
                     path, res, NULL);
}

static int
too_many_conflicts(struct na_error **err, const char *path)
{
    return na_error_set(err, NA_CODE_CONFLICT, 0,
                        "PUT %s: the consumer kept changing: %d generation conflicts in a row",
                        path, SCHED_PLACEMENT_MAX_TRIES);
}

int
sched_placement_put_allocation(const struct sched_placement_config *p, const char *consumer_uuid,
                               const char *rp_uuid, const char *project_id, const char *user_id,
                               uint64_t vcpus, uint64_t memory_mb, uint64_t disk_gb,
                               struct na_error **err)
{
    int r;
    if ((r = check_uuid("consumer_uuid", consumer_uuid, err)) < 0 ||
        (r = check_uuid("rp_uuid", rp_uuid, err)) < 0)
        return r;
    if (!project_id || !*project_id || strlen(project_id) > 255)
        return na_error_field(err, "project_id", "a project id has 1 to 255 characters");
    if (!user_id || !*user_id || strlen(user_id) > 255)
        return na_error_field(err, "user_id", "a user id has 1 to 255 characters");
    if (vcpus == 0 && memory_mb == 0 && disk_gb == 0)
        return na_error_field(err, "resources",
                              "an allocation of nothing: delete the allocation instead");
    cleanup_http struct http h;
    if ((r = http_open(&h, p, err)) < 0)
        return r;

    cleanup_json json_t *resources = json_object();
    if (vcpus)
        json_object_set_new(resources, SCHED_RC_VCPU, json_integer((json_int_t)vcpus));
    if (memory_mb)
        json_object_set_new(resources, SCHED_RC_MEMORY_MB, json_integer((json_int_t)memory_mb));
    if (disk_gb)
        json_object_set_new(resources, SCHED_RC_DISK_GB, json_integer((json_int_t)disk_gb));
    cleanup_free char *path = na_xasprintf("/allocations/%s", consumer_uuid);
    struct resp res = {0};
    for (int attempt = 1;; attempt++) {
        if ((r = consumer_get(&h, path, &res, err)) < 0)
            break;
        json_t *have = json_object_get(res.json, "allocations");
        if (json_equal(json_object_get(json_object_get(have, rp_uuid), "resources"), resources))
            break; /* this provider's part is already right */
        if (attempt > SCHED_PLACEMENT_MAX_TRIES) {
            r = too_many_conflicts(err, path);
            break;
        }
        cleanup_json json_t *body =
            consumer_body(res.json, rp_uuid, resources, project_id, user_id);
        if ((r = consumer_put(&h, path, body, attempt, &res, err)) != -EAGAIN)
            break;
    }
    resp_clear(&res);
    return r;
}

int
sched_placement_remove_allocation(const struct sched_placement_config *p, const char *consumer_uuid,
                                  const char *rp_uuid, struct na_error **err)
{
    int r;
    if ((r = check_uuid("consumer_uuid", consumer_uuid, err)) < 0 ||
        (r = check_uuid("rp_uuid", rp_uuid, err)) < 0)
        return r;
    cleanup_http struct http h;
    if ((r = http_open(&h, p, err)) < 0)
        return r;
    cleanup_free char *path = na_xasprintf("/allocations/%s", consumer_uuid);
    struct resp res = {0};
    for (int attempt = 1;; attempt++) {
        if ((r = consumer_get(&h, path, &res, err)) < 0)
            break;
        if (!json_object_get(json_object_get(res.json, "allocations"), rp_uuid))
            break; /* nothing of this provider's: done */
        if (attempt > SCHED_PLACEMENT_MAX_TRIES) {
            r = too_many_conflicts(err, path);
            break;
        }
        /* With this provider's the only part, the allocations become empty: Placement then
         * deletes them and the consumer, as DELETE would, but only if the generation still
         * matches (a DELETE would also remove a part written since the GET). */
        cleanup_json json_t *body = consumer_body(res.json, rp_uuid, NULL, NULL, NULL);
        if ((r = consumer_put(&h, path, body, attempt, &res, err)) != -EAGAIN)
            break;
    }
    resp_clear(&res);
    return r;
}

int
sched_placement_provider_allocations(const struct sched_placement_config *p, const char *rp_uuid,
                                     struct sched_allocation **out, size_t *n,
                                     struct na_error **err)
{
    int r;
    *out = NULL;
    *n = 0;
    if ((r = check_uuid("rp_uuid", rp_uuid, err)) < 0)
        return r;
    cleanup_http struct http h;
    if ((r = http_open(&h, p, err)) < 0)
        return r;
    cleanup_free char *path = na_xasprintf("/resource_providers/%s/allocations", rp_uuid);
    struct resp res = {0};
    if ((r = http_do(&h, "GET", path, NULL, &res, err)) < 0)
        goto out;
    if (placement_not_found(&res)) {
        r = http_fail(err, NA_CODE_NOT_FOUND, "GET", path, &res,
                      "the resource provider does not exist");
        goto out;
    }
    if (res.status != 200) {
        r = http_fail(err, NA_CODE_UNSPECIFIED, "GET", path, &res, NULL);
        goto out;
    }
    const char *why = NULL;
    if (placement_parse_provider_allocations(res.json, out, n, &why) < 0)
        r = na_error_set(err, NA_CODE_UNAVAILABLE, 0, "GET %s: HTTP 200 %s", path, why);
out:
    resp_clear(&res);
    return r;
}
