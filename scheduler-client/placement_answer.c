/* Reading Placement's answers: pure functions (placement-private.h). */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "scheduler-client/placement-private.h"

/* json_decrefp comes with jansson. */
#define cleanup_json __attribute__((cleanup(json_decrefp)))

static json_t *
load(const char *body, size_t size)
{
    return body && size ? json_loadb(body, size, 0, NULL) : NULL;
}

/* The first entry of a Placement error body's "errors" list, or NULL. */
static json_t *
first_error(json_t *j)
{
    return json_array_get(json_object_get(j, "errors"), 0);
}

const char *
placement_error_code(const char *body, size_t size, char *buf, size_t buf_size)
{
    buf[0] = '\0';
    cleanup_json json_t *j = load(body, size);
    const char *code = json_string_value(json_object_get(first_error(j), "code"));
    if (code)
        snprintf(buf, buf_size, "%s", code);
    return buf;
}

bool
placement_is_not_found(long status, const char *body, size_t size)
{
    if (status != 404)
        return false;
    cleanup_json json_t *j = load(body, size);
    return json_is_array(json_object_get(j, "errors"));
}

/* Copies s with each run of blanks and control characters made one space, at most max
 * characters, "..." when cut. */
static void
squeeze(char *dst, size_t size, const char *s, size_t max)
{
    size_t k = 0;
    bool space = false;
    size_t i = 0;
    for (; s[i] && k + 6 <= size && i < max; i++) { /* room for " x...\0" */
        unsigned char ch = (unsigned char)s[i];
        if (isspace(ch) || ch < 0x20 || ch == 0x7f) {
            space = k > 0;
            continue;
        }
        if (space)
            dst[k++] = ' ';
        space = false;
        dst[k++] = (char)ch;
    }
    if (s[i])
        memcpy(dst + k, "...", 3), k += 3;
    dst[k] = '\0';
}

void
placement_error_text(const char *body, size_t size, char *out, size_t out_size)
{
    cleanup_json json_t *j = load(body, size);
    json_t *e = first_error(j);
    const char *title = json_string_value(json_object_get(e, "title"));
    const char *detail = json_string_value(json_object_get(e, "detail"));
    const char *pcode = json_string_value(json_object_get(e, "code"));
    if (title || detail) {
        char t[128], d[800], c[80] = "";
        squeeze(t, sizeof(t), title ? title : "", 120);
        squeeze(d, sizeof(d), detail ? detail : "", 760);
        if (pcode)
            squeeze(c, sizeof(c), pcode, 64);
        snprintf(out, out_size, "%s%s%s%s%s%s", t, *t && *d ? ": " : "", d, pcode ? " (" : "", c,
                 pcode ? ")" : "");
    } else if (body && size > 0) {
        char b[160];
        squeeze(b, sizeof(b), body, 120);
        snprintf(out, out_size, "not a Placement error body: %s", b);
    } else {
        snprintf(out, out_size, "empty body");
    }
}

int
placement_answer_u64(const json_t *answer, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(answer, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -EINVAL;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* A resource amount of an allocation; 0 when absent or not a positive integer. */
static uint64_t
amount(json_t *resources, const char *rc)
{
    json_t *v = json_object_get(resources, rc);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

int
placement_parse_provider_allocations(const json_t *answer, struct sched_allocation **out, size_t *n,
                                     const char **why)
{
    *out = NULL;
    *n = 0;
    json_t *allocs = json_object_get(answer, "allocations");
    if (!json_is_object(allocs)) {
        *why = "without an \"allocations\" object";
        return -EINVAL;
    }
    struct sched_allocation *list = na_xcalloc(json_object_size(allocs) + 1, sizeof(*list));
    size_t count = 0;
    const char *consumer;
    json_t *v;
    json_object_foreach(allocs, consumer, v)
    {
        if (!na_uuid_is_valid(consumer))
            continue;
        json_t *resources = json_object_get(v, "resources");
        struct sched_allocation *a = &list[count++];
        snprintf(a->consumer_uuid, sizeof(a->consumer_uuid), "%s", consumer);
        a->vcpus = amount(resources, SCHED_RC_VCPU);
        a->memory_mb = amount(resources, SCHED_RC_MEMORY_MB);
        a->disk_gb = amount(resources, SCHED_RC_DISK_GB);
    }
    *out = list;
    *n = count;
    return 0;
}
