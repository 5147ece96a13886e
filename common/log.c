#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

/* The log fd is swapped atomically on reopen; a writer racing a reopen writes to either
 * the old or the new file, both valid until the old one is closed a moment later. */
static atomic_int log_fd = 2;
static atomic_int log_level = NA_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int
na_log_level_parse(const char *name, enum na_log_level *out)
{
    for (size_t i = 0; i < NA_ARRAY_SIZE(level_names); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum na_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

void
na_log_set_level(enum na_log_level level)
{
    atomic_store(&log_level, level);
}

int
na_log_open(const char *path, struct na_error **err)
{
    int fd = 2;
    if (path) {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0)
            return na_error_set(err, NA_CODE_INTERNAL, errno, "open log file `%s`", path);
    }
    int old = atomic_exchange(&log_fd, fd);
    if (old != 2 && old != fd)
        close(old);
    return 0;
}

const char *
na_log_quote(char *buf, size_t size, const char *s)
{
    size_t o = 0;
    if (size < 3) {
        if (size)
            buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p && o + 5 < size; p++) {
        if (*p == '"' || *p == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)*p;
        } else if (*p == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else if (*p < 0x20 || *p == 0x7f) {
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", *p);
        } else {
            buf[o++] = (char)*p;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

void
na_log(enum na_log_level level, const struct na_log_ctx *ctx, const char *msg,
       const char *extra_fmt, ...)
{
    if ((int)level < atomic_load(&log_level))
        return;

    char line[4096];
    size_t o = 0;
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    o += strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
    o += (size_t)snprintf(line + o, sizeof(line) - o, ".%03ldZ level=%s msg=", ts.tv_nsec / 1000000,
                          level_names[level]);

    char quoted[1024];
    o += (size_t)snprintf(line + o, sizeof(line) - o, "%s",
                          na_log_quote(quoted, sizeof(quoted), msg));
    if (ctx && ctx->request_id && *ctx->request_id && o < sizeof(line))
        o += (size_t)snprintf(line + o, sizeof(line) - o, " request_id=%s",
                              na_log_quote(quoted, sizeof(quoted), ctx->request_id));
    if (ctx && ctx->instance && *ctx->instance && o < sizeof(line))
        o += (size_t)snprintf(line + o, sizeof(line) - o, " instance=%s",
                              na_log_quote(quoted, sizeof(quoted), ctx->instance));
    if (extra_fmt && o + 1 < sizeof(line)) {
        line[o++] = ' ';
        va_list ap;
        va_start(ap, extra_fmt);
        o += (size_t)vsnprintf(line + o, sizeof(line) - o, extra_fmt, ap);
        va_end(ap);
    }
    if (o >= sizeof(line) - 1)
        o = sizeof(line) - 2;
    line[o++] = '\n';

    int fd = atomic_load(&log_fd);
    ssize_t n;
    do {
        n = write(fd, line, o);
    } while (n < 0 && errno == EINTR);
}
