/* Keys and node certificates: `nodectl keygen`, `nodectl node-cert issue|show`, and the
 * control plane's key that signs requests.  The cryptography and the certificate's rules
 * are proto/trust's; this file turns flags into a struct trust_node_cert and prints. */
#include "tools/nodectl/nodectl.h"

#include "proto/proto_json.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_CERT_DAYS 365
#define MS_PER_DAY (24LL * 3600 * 1000)

/* A file named on the command line that cannot be used is a usage error (exit 2), whatever
 * the code proto/trust gave it. */
static int
as_usage_error(int rc, struct na_error **err)
{
    if (rc < 0 && err && *err)
        (*err)->code = NA_CODE_INVALID_ARGUMENT;
    return rc;
}

int
nodectl_cp_key_load(const struct nodectl_global *g, EVP_PKEY **out, struct na_error **err)
{
    *out = NULL;
    if (!g->key_file || !*g->key_file)
        return 0;
    return as_usage_error(trust_key_load_private(g->key_file, "--key", out, err), err);
}

int
nodectl_write_atomic(const char *path, const void *data, size_t size, mode_t mode,
                     struct na_error **err)
{
    cleanup_free char *tmp = na_xasprintf("%s.tmp%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, errno, "create `%s`", tmp);
    int rc = 0;
    const uint8_t *p = data;
    size_t done = 0;
    /* fchmod: the umask must not decide who may read a certificate. */
    if (fchmod(fd, mode) < 0)
        rc = na_error_set(err, NA_CODE_INVALID_ARGUMENT, errno, "chmod `%s`", tmp);
    while (rc == 0 && done < size) {
        ssize_t n = write(fd, p + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = na_error_set(err, NA_CODE_INVALID_ARGUMENT, errno, "write `%s`", tmp);
        else
            done += (size_t)n;
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = na_error_set(err, NA_CODE_INVALID_ARGUMENT, errno, "fsync `%s`", tmp);
    close(fd);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = na_error_set(err, NA_CODE_INVALID_ARGUMENT, errno, "rename `%s` to `%s`", tmp, path);
    if (rc < 0) {
        unlink(tmp);
        return rc;
    }
    return as_usage_error(na_fsync_dir_of(path, err), err);
}

static void
fingerprint_of(EVP_PKEY *key, char fp[17])
{
    uint8_t raw[TRUST_PUBLIC_KEY_SIZE];
    if (trust_key_public_raw(key, raw, NULL) < 0)
        snprintf(fp, 17, "?");
    else
        trust_key_fingerprint(raw, fp);
}

/* --- keygen ---------------------------------------------------------------------------- */

int
nodectl_cmd_keygen(const struct nodectl_args *a, struct na_error **err)
{
    const char *priv = a->positional;
    const char *pub_flag = nodectl_arg_str(a, NODECTL_F_PUBLIC_OUT);
    cleanup_free char *pub_default = pub_flag ? NULL : trust_public_path(priv);
    const char *pub = pub_flag ? pub_flag : pub_default;
    if (strcmp(pub, priv) == 0)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                            "--public-out names the private key file `%s`", priv);

    cleanup_pkey EVP_PKEY *key = NULL;
    int rc = trust_key_generate(priv, pub, &key, err);
    if (rc < 0 && (*err)->status == EEXIST)
        rc = na_error_wrap(err, "keygen never replaces a file");
    if (rc < 0)
        return as_usage_error(rc, err);
    char fp[17];
    fingerprint_of(key, fp);
    if (a->g.json) {
        cleanup_json json_t *j =
            json_pack("{s:s, s:s, s:s}", "private_key", priv, "public_key", pub, "fingerprint", fp);
        nodectl_print_json(stdout, j, false);
    } else {
        printf("private key %s (mode 0600)\npublic key  %s\nfingerprint %s\n", priv, pub, fp);
    }
    return NODECTL_EXIT_OK;
}

/* --- node certificates ----------------------------------------------------------------- */

static json_t *
cert_json(const struct trust_node_cert *c)
{
    char fp[17], nb[40], na[40];
    trust_key_fingerprint(c->public_key, fp);
    nodectl_format_time(c->not_before_ms, nb, sizeof(nb));
    nodectl_format_time(c->not_after_ms, na, sizeof(na));
    json_t *eps = json_array();
    for (size_t i = 0; i < c->n_endpoints; i++)
        json_array_append_new(eps, json_string(c->endpoints[i]));
    char pub_hex[2 * TRUST_PUBLIC_KEY_SIZE + 1];
    for (size_t i = 0; i < TRUST_PUBLIC_KEY_SIZE; i++)
        snprintf(pub_hex + 2 * i, 3, "%02x", c->public_key[i]);
    json_t *j = json_pack("{s:s, s:s, s:s, s:o, s:s, s:I, s:s, s:I}", "node_id", c->node_id,
                          "public_key", pub_hex, "public_key_fingerprint", fp, "tunnel_endpoints",
                          eps, "not_before", nb, "not_before_ms", (json_int_t)c->not_before_ms,
                          "not_after", na, "not_after_ms", (json_int_t)c->not_after_ms);
    if (!j)
        abort();
    return j;
}

static void
print_cert_text(const struct trust_node_cert *c)
{
    char fp[17], nb[40], na[40];
    trust_key_fingerprint(c->public_key, fp);
    nodectl_format_time(c->not_before_ms, nb, sizeof(nb));
    nodectl_format_time(c->not_after_ms, na, sizeof(na));
    printf("node_id     %s\npublic key  ", c->node_id);
    for (size_t i = 0; i < TRUST_PUBLIC_KEY_SIZE; i++)
        printf("%02x", c->public_key[i]);
    printf("\nfingerprint %s\nendpoints  ", fp);
    for (size_t i = 0; i < c->n_endpoints; i++)
        printf(" %s", c->endpoints[i]);
    printf("%s\nnot_before  %s (%lld)\nnot_after   %s (%lld)\n", c->n_endpoints ? "" : " -", nb,
           (long long)c->not_before_ms, na, (long long)c->not_after_ms);
}

static int
required(const struct nodectl_args *a, enum nodectl_flag f, const char *name, const char **out,
         struct na_error **err)
{
    *out = nodectl_arg_str(a, f);
    if (!*out || !**out)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                            "%s needs --%s (see nodectl %s --help)", a->cmd->name, name,
                            a->cmd->name);
    return 0;
}

/* The certificate the flags describe (its rules are checked by trust_cert_issue). */
static int
cert_from_flags(const struct nodectl_args *a, struct trust_node_cert *c, struct na_error **err)
{
    const char *node_id = NULL, *pub_file = NULL;
    int rc = required(a, NODECTL_F_NODE_ID, "node-id", &node_id, err);
    if (rc == 0)
        rc = required(a, NODECTL_F_PUBLIC_KEY, "public-key", &pub_file, err);
    if (rc < 0)
        return rc;
    *c = (struct trust_node_cert){0};
    /* Checked before copying: a truncated value could still look valid. */
    if (strlen(node_id) >= sizeof(c->node_id))
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                            "--node-id: `%s` is longer than %zu characters", node_id,
                            sizeof(c->node_id) - 1);
    snprintf(c->node_id, sizeof(c->node_id), "%s", node_id);

    cleanup_pkey EVP_PKEY *node_key = NULL;
    rc = as_usage_error(trust_key_load_public(pub_file, "--public-key", &node_key, err), err);
    if (rc == 0)
        rc = trust_key_public_raw(node_key, c->public_key, err);
    if (rc < 0)
        return rc;

    const struct nodectl_values *eps = &a->flags[NODECTL_F_ENDPOINT];
    if (eps->n > TRUST_MAX_ENDPOINTS)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                            "--endpoint given %zu times; a certificate holds at most %d", eps->n,
                            TRUST_MAX_ENDPOINTS);
    for (size_t i = 0; i < eps->n; i++) {
        if (strlen(eps->v[i]) >= sizeof(c->endpoints[i]))
            return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                                "--endpoint: `%s` is not a dotted IPv4 address", eps->v[i]);
        snprintf(c->endpoints[i], sizeof(c->endpoints[i]), "%s", eps->v[i]);
    }
    c->n_endpoints = eps->n;

    uint32_t days = DEFAULT_CERT_DAYS;
    c->not_before_ms = na_now_ms();
    c->not_after_ms = 0;
    rc = nodectl_arg_u32(a, NODECTL_F_DAYS, &days, err);
    if (rc == 0)
        rc = nodectl_arg_i64(a, NODECTL_F_NOT_BEFORE_MS, &c->not_before_ms, err);
    if (rc == 0)
        rc = nodectl_arg_i64(a, NODECTL_F_NOT_AFTER_MS, &c->not_after_ms, err);
    if (rc < 0)
        return rc;
    if (nodectl_arg_str(a, NODECTL_F_DAYS) && nodectl_arg_str(a, NODECTL_F_NOT_AFTER_MS))
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                            "give --days or --not-after-ms, not both");
    if (!nodectl_arg_str(a, NODECTL_F_NOT_AFTER_MS) &&
        __builtin_add_overflow(c->not_before_ms, (int64_t)days * MS_PER_DAY, &c->not_after_ms))
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                            "--not-before-ms plus --days is past the end of time");
    return 0;
}

int
nodectl_cmd_node_cert_issue(const struct nodectl_args *a, struct na_error **err)
{
    cleanup_pkey EVP_PKEY *cp_key = NULL;
    int rc = nodectl_cp_key_load(&a->g, &cp_key, err);
    if (rc < 0)
        return rc;
    if (!cp_key)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                            "%s signs with the control plane's private key: give --key FILE or "
                            "set NODEAGENT_CP_KEY",
                            a->cmd->name);
    const char *out_file = NULL;
    rc = required(a, NODECTL_F_CERT_OUT, "cert-out", &out_file, err);
    struct trust_node_cert c;
    if (rc == 0)
        rc = cert_from_flags(a, &c, err);
    if (rc < 0)
        return rc;

    cleanup_free uint8_t *data = NULL;
    size_t size = 0;
    rc = trust_cert_issue(cp_key, &c, &data, &size, err);
    if (rc < 0)
        return na_error_wrap(err, "%s", a->cmd->name);
    rc = nodectl_write_atomic(out_file, data, size, 0644, err);
    if (rc < 0)
        return rc;

    char issuer[17];
    fingerprint_of(cp_key, issuer);
    if (a->g.json) {
        cleanup_json json_t *j = cert_json(&c);
        json_object_set_new(j, "file", json_string(out_file));
        json_object_set_new(j, "size", json_integer((json_int_t)size));
        json_object_set_new(j, "control_plane_key_fingerprint", json_string(issuer));
        nodectl_print_json(stdout, j, false);
    } else {
        printf("node certificate written to %s (%zu bytes), signed by control plane key %s\n",
               out_file, size, issuer);
        print_cert_text(&c);
    }
    return NODECTL_EXIT_OK;
}

int
nodectl_cmd_node_cert_show(const struct nodectl_args *a, struct na_error **err)
{
    const char *path = a->positional;
    cleanup_free uint8_t *data = NULL;
    size_t size = 0;
    int rc = trust_cert_read_file(path, "node certificate", &data, &size, err);
    if (rc < 0)
        return as_usage_error(rc, err);
    struct trust_node_cert c;
    cleanup_error struct na_error *bad = NULL;
    if (trust_cert_decode(data, size, &c, &bad) < 0) {
        fprintf(stderr, "nodectl: `%s`: %s\n", path, bad->msg);
        return NODECTL_EXIT_FAILED;
    }

    const char *cp_file = nodectl_arg_str(a, NODECTL_F_CONTROL_PLANE_KEY);
    cleanup_pkey EVP_PKEY *cp_pub = NULL;
    char cp_fp[17] = "";
    bool checked = false;
    if (cp_file) {
        rc = trust_key_load_public(cp_file, "--control-plane-key", &cp_pub, err);
        if (rc < 0)
            return as_usage_error(rc, err);
        fingerprint_of(cp_pub, cp_fp);
        struct trust_node_cert ok;
        checked = trust_cert_check(cp_pub, data, size, na_now_ms(), &ok, &bad) == 0;
    }

    if (a->g.json) {
        cleanup_json json_t *j = cert_json(&c);
        json_object_set_new(j, "file", json_string(path));
        if (cp_file) {
            json_t *check = json_pack("{s:s, s:b}", "control_plane_key_fingerprint", cp_fp, "valid",
                                      (int)checked);
            if (!checked)
                json_object_set_new(check, "reason", json_string(bad->msg));
            json_object_set_new(j, "check", check);
        }
        nodectl_print_json(stdout, j, false);
    } else {
        print_cert_text(&c);
        if (checked)
            printf("check       ok: signed by control plane key %s, valid now\n", cp_fp);
        else if (cp_file)
            printf("check       FAILED against control plane key %s: %s\n", cp_fp, bad->msg);
    }
    if (cp_file && !checked) {
        fprintf(stderr, "nodectl: `%s` is refused: %s\n", path, bad->msg);
        return NODECTL_EXIT_FAILED;
    }
    return NODECTL_EXIT_OK;
}
