#include "common/common.h"

#include <errno.h>
#include <string.h>

static const char *const code_names[] = {
    [NA_CODE_UNSPECIFIED] = "UNSPECIFIED",
    [NA_CODE_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
    [NA_CODE_MALFORMED] = "MALFORMED",
    [NA_CODE_UNAUTHENTICATED] = "UNAUTHENTICATED",
    [NA_CODE_UNIMPLEMENTED] = "UNIMPLEMENTED",
    [NA_CODE_NOT_FOUND] = "NOT_FOUND",
    [NA_CODE_ALREADY_EXISTS] = "ALREADY_EXISTS",
    [NA_CODE_CONFLICT] = "CONFLICT",
    [NA_CODE_NO_CAPACITY] = "NO_CAPACITY",
    [NA_CODE_IMAGE] = "IMAGE",
    [NA_CODE_HYPERVISOR] = "HYPERVISOR",
    [NA_CODE_NETWORK] = "NETWORK",
    [NA_CODE_STORAGE] = "STORAGE",
    [NA_CODE_TIMEOUT] = "TIMEOUT",
    [NA_CODE_CANCELLED] = "CANCELLED",
    [NA_CODE_INTERNAL] = "INTERNAL",
    [NA_CODE_UNAVAILABLE] = "UNAVAILABLE",
    [NA_CODE_UNSUPPORTED] = "UNSUPPORTED",
    [NA_CODE_SNAPSHOT_LIMIT] = "SNAPSHOT_LIMIT",
    [NA_CODE_HAS_SNAPSHOTS] = "HAS_SNAPSHOTS",
};

const char *
na_code_name(enum na_code code)
{
    if ((unsigned)code < NA_ARRAY_SIZE(code_names) && code_names[code])
        return code_names[code];
    return "UNKNOWN";
}

/* With with_strerror, a non-zero status appends ": strerror(status)" to the message. */
static int __attribute__((format(printf, 6, 0)))
error_vset(struct na_error **err, enum na_code code, int status, bool with_strerror,
           const char *field, const char *fmt, va_list ap)
{
    int ret = status ? -abs(status) : -1;
    if (!err || *err)
        return ret;

    char *text = na_xvasprintf(fmt, ap);
    struct na_error *e = na_xcalloc(1, sizeof(*e));
    e->status = abs(status);
    e->code = code;
    e->field = field ? na_xstrdup(field) : NULL;
    if (status && with_strerror) {
        e->msg = na_xasprintf("%s: %s", text, strerror(abs(status)));
        free(text);
    } else {
        e->msg = text;
    }
    *err = e;
    return ret;
}

int
na_error_set(struct na_error **err, enum na_code code, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int ret = error_vset(err, code, status, true, NULL, fmt, ap);
    va_end(ap);
    return ret;
}

int
na_error_quiet(struct na_error **err, enum na_code code, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int ret = error_vset(err, code, status, false, NULL, fmt, ap);
    va_end(ap);
    return ret;
}

int
na_error_field(struct na_error **err, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int ret = error_vset(err, NA_CODE_INVALID_ARGUMENT, EINVAL, false, field, fmt, ap);
    va_end(ap);
    return ret;
}

int
na_error_wrap(struct na_error **err, const char *fmt, ...)
{
    if (!err || !*err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    char *ctx = na_xvasprintf(fmt, ap);
    va_end(ap);
    char *msg = na_xasprintf("%s: %s", ctx, (*err)->msg);
    free(ctx);
    free((*err)->msg);
    (*err)->msg = msg;
    return (*err)->status ? -(*err)->status : -1;
}

void
na_error_free(struct na_error *err)
{
    if (!err)
        return;
    free(err->field);
    free(err->msg);
    free(err);
}

void
na_error_clear(struct na_error **err)
{
    na_error_free(*err);
    *err = NULL;
}
