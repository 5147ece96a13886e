#include "common/common.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

void *
na_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        abort();
    return p;
}

void *
na_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        abort();
    return p;
}

void *
na_xrealloc(void *p, size_t size)
{
    p = realloc(p, size ? size : 1);
    if (!p)
        abort();
    return p;
}

char *
na_xstrdup(const char *s)
{
    char *p = strdup(s ? s : "");
    if (!p)
        abort();
    return p;
}

char *
na_xstrndup(const char *s, size_t len)
{
    char *p = strndup(s, len);
    if (!p)
        abort();
    return p;
}

char *
na_xvasprintf(const char *fmt, va_list ap)
{
    char *p = NULL;
    if (vasprintf(&p, fmt, ap) < 0)
        abort();
    return p;
}

char *
na_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = na_xvasprintf(fmt, ap);
    va_end(ap);
    return p;
}

bool
na_uuid_is_valid(const char *s)
{
    if (!s || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return true;
}

void
na_uuid_generate(char out[37])
{
    uint8_t b[16];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
        if (n < 0 && errno != EINTR)
            abort();
        if (n > 0)
            got += (size_t)n;
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

int64_t
na_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t
na_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

size_t
na_u32_sort_unique(uint32_t *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_u32);
    size_t u = 1;
    for (size_t i = 1; i < n; i++)
        if (v[i] != v[u - 1])
            v[u++] = v[i];
    return u;
}

/* The request this thread works on, for the lines failpoints write (see common.h). */
static _Thread_local const struct na_log_ctx *failpoint_ctx;

void
na_failpoint_ctx_set(const struct na_log_ctx *ctx)
{
    failpoint_ctx = ctx;
}

/* An action "kill@REQUEST_ID" is for that request only; a bare one for every request. */
static bool
for_this_request(const char *action, const char *end)
{
    const char *at = memchr(action, '@', (size_t)(end - action));
    if (!at)
        return true;
    const char *want = at + 1;
    size_t want_len = (size_t)(end - want);
    const char *rid = failpoint_ctx ? failpoint_ctx->request_id : NULL;
    return rid && strlen(rid) == want_len && strncmp(rid, want, want_len) == 0;
}

/* The action NODEAGENT_FAILPOINTS gives failpoint name for this thread's request, if any.
 * With trace, an item "trace" logs that the failpoint was passed. */
static bool
failpoint_action(const char *name, bool trace, const char **action, size_t *action_len)
{
    const char *spec = getenv("NODEAGENT_FAILPOINTS");
    if (!spec || !*spec)
        return false;
    size_t name_len = strlen(name);
    bool found = false;
    for (const char *p = spec; *p;) {
        const char *end = strchr(p, ',');
        size_t item_len = end ? (size_t)(end - p) : strlen(p);
        if (trace && item_len == 5 && strncmp(p, "trace", 5) == 0)
            na_log(NA_LOG_INFO, failpoint_ctx, "failpoint passed", "failpoint=%s", name);
        if (!found && item_len > name_len && strncmp(p, name, name_len) == 0 &&
            p[name_len] == '=' && for_this_request(p + name_len + 1, p + item_len)) {
            *action = p + name_len + 1;
            *action_len = strcspn(*action, "@,");
            found = true;
        }
        p += item_len;
        if (*p == ',')
            p++;
    }
    return found;
}

bool
na_failpoint(const char *name)
{
    const char *action;
    size_t action_len;
    if (!failpoint_action(name, true, &action, &action_len))
        return false;
    na_log(NA_LOG_WARN, failpoint_ctx, "failpoint hit", "failpoint=%s action=%.*s", name,
           (int)action_len, action);
    if (action_len == 4 && strncmp(action, "kill", 4) == 0)
        raise(SIGKILL);
    if (action_len == 4 && strncmp(action, "exit", 4) == 0)
        _exit(3);
    return action_len == 4 && strncmp(action, "fail", 4) == 0;
}

bool
na_failpoint_parks(const char *name)
{
    const char *action;
    size_t action_len;
    return failpoint_action(name, false, &action, &action_len) && action_len == 4 &&
           strncmp(action, "park", 4) == 0;
}
