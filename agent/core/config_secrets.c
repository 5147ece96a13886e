/* The secrets a configuration names, read when it is loaded: [bus] hmac_key_file (the
 * legacy shared key) and [admin] token_file (the bearer token of the admin API on TCP). */
#include "agent/core/config-private.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
config_read_key_file(struct agent_config *cfg, struct na_error **err)
{
    cleanup_close int fd = open(cfg->hmac_key_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return na_error_set(err, NA_CODE_INTERNAL, errno, "%s: [bus] hmac_key_file `%s`", cfg->path,
                            cfg->hmac_key_file);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return na_error_set(err, NA_CODE_INTERNAL, errno, "stat `%s`", cfg->hmac_key_file);
    if (st.st_size < 16 || st.st_size > 4096)
        return na_error_set(err, NA_CODE_INTERNAL, 0,
                            "%s: [bus] hmac_key_file `%s`: the key must be 16 to 4096 bytes, "
                            "it has %lld",
                            cfg->path, cfg->hmac_key_file, (long long)st.st_size);
    cfg->hmac_key = na_xmalloc((size_t)st.st_size);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, cfg->hmac_key + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return na_error_set(err, NA_CODE_INTERNAL, n < 0 ? errno : EIO, "read `%s`",
                                cfg->hmac_key_file);
        got += (size_t)n;
    }
    cfg->hmac_key_size = got;
    return 0;
}

/* Characters of an RFC 6750 bearer token (token68). */
#define TOKEN_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/="
#define MIN_TOKEN_LEN 16
#define MAX_TOKEN_LEN 4096

/* [admin] token_file: like the trust files (proto/trust.c), a regular file of root's that
 * neither its group nor others may read or write; its one line is the bearer token. */
int
config_read_admin_token(struct agent_config *cfg, struct na_error **err)
{
    const char *path = cfg->admin_token_file;
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return na_error_set(err, NA_CODE_INTERNAL, errno, "%s: [admin] token_file `%s`", cfg->path,
                            path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return na_error_set(err, NA_CODE_INTERNAL, errno, "stat `%s`", path);
    if (!S_ISREG(st.st_mode))
        return na_error_set(err, NA_CODE_INTERNAL, 0,
                            "%s: [admin] token_file `%s` is not a regular file", cfg->path, path);
    if (st.st_uid != 0 && st.st_uid != geteuid())
        return na_error_set(err, NA_CODE_INTERNAL, 0,
                            "%s: [admin] token_file `%s` is owned by uid %u; it must belong to "
                            "root",
                            cfg->path, path, (unsigned)st.st_uid);
    if (st.st_mode & 077)
        return na_error_set(err, NA_CODE_INTERNAL, 0,
                            "%s: [admin] token_file `%s` has mode %04o: a secret must not be "
                            "readable or writable by its group or others (chmod 600)",
                            cfg->path, path, (unsigned)(st.st_mode & 07777));
    if (st.st_size <= 0 || st.st_size > MAX_TOKEN_LEN + 1)
        return na_error_set(err, NA_CODE_INTERNAL, 0,
                            "%s: [admin] token_file `%s` has %lld bytes; the token has %d to %d "
                            "characters",
                            cfg->path, path, (long long)st.st_size, MIN_TOKEN_LEN, MAX_TOKEN_LEN);
    char buf[MAX_TOKEN_LEN + 2];
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return na_error_set(err, NA_CODE_INTERNAL, n < 0 ? errno : EIO, "read `%s`", path);
        got += (size_t)n;
    }
    if (got && buf[got - 1] == '\n')
        got--;
    buf[got] = '\0';
    int ret = 0;
    if (got < MIN_TOKEN_LEN || got > MAX_TOKEN_LEN || strspn(buf, TOKEN_CHARS) < got)
        ret = na_error_set(err, NA_CODE_INTERNAL, 0,
                           "%s: [admin] token_file `%s`: the token must be one line of %d to %d "
                           "characters of [A-Za-z0-9-._~+/=]",
                           cfg->path, path, MIN_TOKEN_LEN, MAX_TOKEN_LEN);
    else {
        cfg->admin_token = na_xmalloc(got);
        memcpy(cfg->admin_token, buf, got);
        cfg->admin_token_size = got;
    }
    memset(buf, 0, sizeof(buf));
    return ret;
}
