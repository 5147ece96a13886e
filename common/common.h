/* common: the conventions every nodeagent module shares.
 *
 * Errors: a function that can fail takes `struct na_error **err` last and returns a
 * negative value (usually -errno) after filling it with na_error_set().  Callers add
 * context with na_error_wrap() as the error travels up.  The error carries an errno-like
 * status, the bus error code (enum na_code, the same numbers as nodeagent.v1.ErrorCode),
 * the offending field for INVALID_ARGUMENT, and a message made where the failure happened.
 *
 * Cleanup: cleanup_free and friends release a variable when it leaves scope; hand
 * ownership on with `*out = p; p = NULL;` (or na_steal()).
 *
 * Logging: logfmt lines on stderr (or a file), one write(2) each, safe from any thread.
 * Every line carries ts, level and msg; pass request_id and instance uuid through
 * na_log_ctx so that each line about a request can be found with grep.
 */
#ifndef NODEAGENT_COMMON_H
#define NODEAGENT_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NA_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define NA_MAX(a, b) ((a) > (b) ? (a) : (b))
#define NA_MIN(a, b) ((a) < (b) ? (a) : (b))
#define NA_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Same values as nodeagent.v1.ErrorCode; agent/ checks the equality at compile time. */
enum na_code {
    NA_CODE_UNSPECIFIED = 0,
    NA_CODE_INVALID_ARGUMENT = 1,
    NA_CODE_MALFORMED = 2,
    NA_CODE_UNAUTHENTICATED = 3,
    NA_CODE_UNIMPLEMENTED = 4,
    NA_CODE_NOT_FOUND = 5,
    NA_CODE_ALREADY_EXISTS = 6,
    NA_CODE_CONFLICT = 7,
    NA_CODE_NO_CAPACITY = 8,
    NA_CODE_IMAGE = 9,
    NA_CODE_HYPERVISOR = 10,
    NA_CODE_NETWORK = 11,
    NA_CODE_STORAGE = 12,
    NA_CODE_TIMEOUT = 13,
    NA_CODE_CANCELLED = 14,
    NA_CODE_INTERNAL = 15,
    NA_CODE_UNAVAILABLE = 16,
    NA_CODE_UNSUPPORTED = 17,
    NA_CODE_SNAPSHOT_LIMIT = 18,
    NA_CODE_HAS_SNAPSHOTS = 19,
};

const char *na_code_name(enum na_code code);

struct na_error {
    int status;        /* errno value, 0 when none applies */
    enum na_code code; /* what the bus is told */
    char *field;       /* offending field path, or NULL */
    char *msg;
};

/* Fills *err (when err is not NULL and *err is NULL) and returns -status, or -1 when
 * status is 0.  The message is printf-formatted; with status != 0 ": strerror" follows. */
int na_error_set(struct na_error **err, enum na_code code, int status, const char *fmt, ...)
    NA_PRINTF(4, 5);
/* Like na_error_set, but the message is taken as complete: no strerror is appended.  For
 * failures whose message already says why, yet whose status callers test (-EINVAL...). */
int na_error_quiet(struct na_error **err, enum na_code code, int status, const char *fmt, ...)
    NA_PRINTF(4, 5);
/* Like na_error_set for INVALID_ARGUMENT, recording the field path. */
int na_error_field(struct na_error **err, const char *field, const char *fmt, ...) NA_PRINTF(3, 4);
/* Prefixes context to an existing error's message: "context: old message". */
int na_error_wrap(struct na_error **err, const char *fmt, ...) NA_PRINTF(2, 3);
void na_error_free(struct na_error *err);
/* Frees *err and sets it to NULL. */
void na_error_clear(struct na_error **err);

/* --- cleanup --------------------------------------------------------------------------- */

static inline void
na_freep(void *p)
{
    free(*(void **)p);
}
static inline void
na_closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}
static inline void
na_fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}
static inline void
na_errorp(struct na_error **e)
{
    na_error_free(*e);
}

#define cleanup_free __attribute__((cleanup(na_freep)))
#define cleanup_close __attribute__((cleanup(na_closep)))
#define cleanup_fclose __attribute__((cleanup(na_fclosep)))
#define cleanup_error __attribute__((cleanup(na_errorp)))

/* Returns *pp and sets it to NULL: the caller now owns it. */
#define na_steal(pp)                                                                               \
    ({                                                                                             \
        __typeof__(*(pp)) _na_tmp = *(pp);                                                         \
        *(pp) = NULL;                                                                              \
        _na_tmp;                                                                                   \
    })

/* --- memory and strings ---------------------------------------------------------------- */

/* Allocation failures abort: an agent without memory cannot report anything useful. */
void *na_xmalloc(size_t size);
void *na_xcalloc(size_t n, size_t size);
void *na_xrealloc(void *p, size_t size);
char *na_xstrdup(const char *s);
char *na_xstrndup(const char *s, size_t len);
char *na_xasprintf(const char *fmt, ...) NA_PRINTF(1, 2);
char *na_xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Decodes one code point of s at *i (strict UTF-8: no overlong forms, no surrogates, at
 * most U+10FFFF) and advances *i past it; false when the bytes there are not UTF-8. */
bool na_utf8_next(const unsigned char *s, size_t size, size_t *i, uint32_t *cp);

/* Parses "xx:xx:xx:xx:xx:xx" (either case); false when s is not exactly that. */
bool na_mac_parse(const char *s, uint8_t mac[6]);
/* The address of "a.b.c.d" or "a.b.c.d/len" in network order (the prefix length is not
 * looked at); false when s does not start with an IPv4 address. */
bool na_ipv4_addr_parse(const char *s, uint32_t *addr);
/* The address of an IPv6 "x:y::z" or "x:y::z/len" (the prefix length is not looked at);
 * false when s does not start with an IPv6 address. */
bool na_ipv6_addr_parse(const char *s, uint8_t addr[16]);
/* Whether a and b (IPv4 or IPv6, prefix lengths ignored) are one address. */
bool na_ip_same_addr(const char *a, const char *b);
/* The link-local address a host derives from its MAC (fe80::/64 with the modified EUI-64
 * interface id, RFC 4291), as Linux does by default. */
void na_ipv6_link_local(const uint8_t mac[6], uint8_t addr[16]);

/* Base64 (RFC 4648, padded) of data; the caller frees the string. */
char *na_base64_encode(const uint8_t *data, size_t size);
/* Decodes text strictly (the standard alphabet, padded, no whitespace) into *out (the
 * caller frees it; *out_size may be 0); -EINVAL, with nothing to free, for anything else or
 * for more than max_size bytes. */
int na_base64_decode(const char *text, size_t max_size, uint8_t **out, size_t *out_size);

/* fsync()s the directory holding path, so that a rename into it is durable. */
int na_fsync_dir_of(const char *path, struct na_error **err);

/* Removes dir and everything below it, never following links or crossing mounts; best
 * effort: what cannot be removed is logged and the rest still goes. */
int na_remove_tree(const char *dir);

/* --- identifiers and time -------------------------------------------------------------- */

/* Canonical lowercase 8-4-4-4-12 hex. */
bool na_uuid_is_valid(const char *s);
/* A random version-4 uuid, lowercase; out must hold 37 bytes. */
void na_uuid_generate(char out[37]);
int64_t na_now_ms(void);
/* Monotonic clock in nanoseconds. */
uint64_t na_mono_ns(void);

/* Sorts v ascending and drops repeats; returns how many are left. */
size_t na_u32_sort_unique(uint32_t *v, size_t n);

/* --- digests and signing
 * -------------------------------------------------------------------------- */

/* Lowercase hex SHA-256 of data; out holds 65 bytes. */
void na_sha256_hex(const uint8_t *data, size_t size, char out[65]);
/* Kafka header carrying the envelope signature when bus.hmac_key_file is set. */
#define NA_HMAC_HEADER "nodeagent-hmac"
/* Lowercase hex HMAC-SHA256 of data; out holds 65 bytes. */
void na_hmac_sha256_hex(const uint8_t *key, size_t key_size, const uint8_t *data, size_t size,
                        char out[65]);
/* Constant-time check of a hex signature (not NUL-terminated, hex_len chars). */
bool na_hmac_sha256_verify(const uint8_t *key, size_t key_size, const uint8_t *data, size_t size,
                           const char *hex, size_t hex_len);

/* --- logging --------------------------------------------------------------------------- */

enum na_log_level { NA_LOG_DEBUG, NA_LOG_INFO, NA_LOG_WARN, NA_LOG_ERROR };

/* Context attached to a log line; any member may be NULL. */
struct na_log_ctx {
    const char *request_id;
    const char *instance;
};

int na_log_level_parse(const char *name, enum na_log_level *out);
void na_log_set_level(enum na_log_level level);
/* Log to a file instead of stderr; NULL returns to stderr.  Safe to call again to reopen
 * after rotation (SIGHUP). */
int na_log_open(const char *path, struct na_error **err);
/* Writes one logfmt line: ts=… level=… msg="…" [request_id=…] [instance=…] extra.
 * extra is printf-formatted logfmt pairs ("key=val key2=\"x y\""), or NULL. */
void na_log(enum na_log_level level, const struct na_log_ctx *ctx, const char *msg,
            const char *extra_fmt, ...) NA_PRINTF(4, 5);
/* Appends a logfmt-quoted copy of s to buf (for building extra pairs safely). */
const char *na_log_quote(char *buf, size_t size, const char *s);

#define NA_LOG_DEBUG(ctx, msg, ...) na_log(NA_LOG_DEBUG, ctx, msg, __VA_ARGS__)
#define NA_LOG_INFO(ctx, msg, ...) na_log(NA_LOG_INFO, ctx, msg, __VA_ARGS__)
#define NA_LOG_WARN(ctx, msg, ...) na_log(NA_LOG_WARN, ctx, msg, __VA_ARGS__)
#define NA_LOG_ERROR(ctx, msg, ...) na_log(NA_LOG_ERROR, ctx, msg, __VA_ARGS__)

/* --- fault injection for tests --------------------------------------------------------- */

/* NODEAGENT_FAILPOINTS="name=action[,name=action]" with action "kill" (SIGKILL self),
 * "exit" (_exit(3)), "fail" (returns true: the caller fails the step as if it had failed) or
 * "park" (at a job's phase boundary: the job waits there for good, agent/ops/jobs.h);
 * "action@REQUEST_ID" acts only for that request (its thread's na_failpoint_ctx_set).
 * The item "trace" (alone or among others) logs `msg="failpoint passed" failpoint=NAME` at
 * every failpoint a request passes, with its request id: a test learns from one run where
 * each operation can be crashed.  Unset in production; system tests use it to crash, fail or
 * hold at exact steps.  Names are `<operation>.<step>`, the step just taken. */
bool na_failpoint(const char *name);
/* Whether failpoint name's action is "park" (asked after na_failpoint(name) logged it). */
bool na_failpoint_parks(const char *name);
/* The request the calling thread works on from now (NULL: none), named in the lines
 * failpoints write.  Thread-local; *ctx must live until the thread sets another. */
void na_failpoint_ctx_set(const struct na_log_ctx *ctx);

#endif
