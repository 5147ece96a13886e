/* trust: Ed25519 keys, signatures and node certificates.  See trust.h. */
#include "proto/trust.h"
#include "nodeagent.pb-c.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_FILE_SIZE (64 * 1024)
#define SIGNATURE_SIZE 64

static const char *const contexts[] = {
    [TRUST_REQUEST] = "nodeagent.v1.request",
    [TRUST_PEER_MESSAGE] = "nodeagent.v1.peer",
    [TRUST_ANNOUNCEMENT] = "nodeagent.v1.announcement",
    [TRUST_NODE_CERTIFICATE] = "nodeagent.v1.node-certificate",
};

const char *
trust_purpose_context(enum trust_purpose purpose)
{
    return contexts[purpose];
}

/* The last OpenSSL error as text, for messages; the queue is cleared. */
static const char *
ssl_reason(char *buf, size_t size)
{
    unsigned long e = ERR_peek_last_error();
    if (!e)
        snprintf(buf, size, "no detail from OpenSSL");
    else
        ERR_error_string_n(e, buf, size);
    ERR_clear_error();
    return buf;
}

/* --- files ----------------------------------------------------------------------------- */

/* Reads a whole key or certificate file after checking who may read and change it. */
static int
read_checked(const char *path, const char *what, bool secret, uint8_t **out, size_t *size,
             mode_t *mode, struct na_error **err)
{
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, errno, "%s `%s`", what, path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, errno, "%s: stat `%s`", what, path);
    if (!S_ISREG(st.st_mode))
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0, "%s `%s` is not a regular file", what,
                            path);
    if (st.st_uid != 0 && st.st_uid != geteuid())
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                            "%s `%s` is owned by uid %u; it must belong to root", what, path,
                            (unsigned)st.st_uid);
    if (secret && (st.st_mode & 077))
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                            "%s `%s` has mode %04o: a private key must not be readable by its "
                            "group or others (chmod 600)",
                            what, path, (unsigned)(st.st_mode & 07777));
    if (st.st_mode & 022)
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                            "%s `%s` has mode %04o: it must not be writable by its group or "
                            "others",
                            what, path, (unsigned)(st.st_mode & 07777));
    if (st.st_size <= 0 || st.st_size > MAX_FILE_SIZE)
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0, "%s `%s` has %lld bytes (1..%d)", what,
                            path, (long long)st.st_size, MAX_FILE_SIZE);
    uint8_t *buf = na_xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            OPENSSL_cleanse(buf, got);
            free(buf);
            return na_error_set(err, NA_CODE_UNAUTHENTICATED, e, "%s: read `%s`", what, path);
        }
        got += (size_t)n;
    }
    buf[got] = '\0';
    *out = buf;
    *size = got;
    *mode = st.st_mode;
    return 0;
}

static int
parse_pem(const uint8_t *pem, size_t size, bool private_key, const char *what, const char *path,
          EVP_PKEY **out, struct na_error **err)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)size);
    if (!bio)
        abort();
    EVP_PKEY *key = private_key ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)
                                : PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    if (!key && !private_key) {
        /* A private key file also gives its public key. */
        ERR_clear_error();
        BIO_reset(bio);
        key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    }
    BIO_free(bio);
    char reason[256];
    if (!key)
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0, "%s `%s` is not a PEM %s key (%s)",
                            what, path, private_key ? "private" : "public",
                            ssl_reason(reason, sizeof(reason)));
    if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(key);
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0, "%s `%s` is not an Ed25519 key", what,
                            path);
    }
    *out = key;
    return 0;
}

static int
load_key(const char *path, const char *what, bool private_key, EVP_PKEY **out,
         struct na_error **err)
{
    uint8_t *pem = NULL;
    size_t size = 0;
    mode_t mode = 0;
    int ret = read_checked(path, what, private_key, &pem, &size, &mode, err);
    if (ret < 0)
        return ret;
    /* A private key given where a public one will do is still a secret. */
    if (!private_key && strstr((char *)pem, "PRIVATE KEY") && (mode & 077))
        ret = na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                           "%s `%s` holds a private key and has mode %04o: it must not be "
                           "readable by its group or others (chmod 600)",
                           what, path, (unsigned)(mode & 07777));
    if (ret == 0)
        ret = parse_pem(pem, size, private_key, what, path, out, err);
    OPENSSL_cleanse(pem, size);
    free(pem);
    return ret;
}

int
trust_key_load_private(const char *path, const char *what, EVP_PKEY **out, struct na_error **err)
{
    return load_key(path, what, true, out, err);
}

int
trust_key_load_public(const char *path, const char *what, EVP_PKEY **out, struct na_error **err)
{
    return load_key(path, what, false, out, err);
}

/* Writes the PEM that write() produces into a new file at path (mode, O_EXCL unless
 * replace), through a temporary name and a rename so that a reader never sees half. */
static int
write_pem(const char *path, mode_t mode, bool replace, EVP_PKEY *key, bool private_key,
          struct na_error **err)
{
    /* Secure heap for a private key, so that the buffer is cleansed when freed. */
    BIO *bio = BIO_new(private_key ? BIO_s_secmem() : BIO_s_mem());
    if (!bio)
        abort();
    int ok = private_key ? PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)
                         : PEM_write_bio_PUBKEY(bio, key);
    char reason[256];
    if (!ok) {
        BIO_free(bio);
        return na_error_set(err, NA_CODE_INTERNAL, 0, "encode a key for `%s` (%s)", path,
                            ssl_reason(reason, sizeof(reason)));
    }
    char *data = NULL;
    long size = BIO_get_mem_data(bio, &data);
    cleanup_free char *tmp = na_xasprintf("%s.tmp%ld", path, (long)getpid());
    int ret = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        ret = na_error_set(err, NA_CODE_INTERNAL, errno, "create `%s`", tmp);
    } else {
        if (fchmod(fd, mode) < 0 || write(fd, data, (size_t)size) != size || fsync(fd) < 0)
            ret = na_error_set(err, NA_CODE_INTERNAL, errno, "write `%s`", tmp);
        close(fd);
        if (ret == 0 && !replace && link(tmp, path) < 0)
            ret = na_error_set(err, NA_CODE_INTERNAL, errno, "create `%s`", path);
        else if (ret == 0 && replace && rename(tmp, path) < 0)
            ret = na_error_set(err, NA_CODE_INTERNAL, errno, "rename `%s` to `%s`", tmp, path);
        unlink(tmp);
    }
    BIO_free(bio);
    return ret;
}

char *
trust_public_path(const char *private_path)
{
    size_t len = strlen(private_path);
    if (len > 4 && strcmp(private_path + len - 4, ".key") == 0)
        return na_xasprintf("%.*s.pub", (int)(len - 4), private_path);
    return na_xasprintf("%s.pub", private_path);
}

int
trust_key_write_public(EVP_PKEY *key, const char *path, struct na_error **err)
{
    return write_pem(path, 0644, true, key, false, err);
}

int
trust_key_generate(const char *priv_path, const char *pub_path, EVP_PKEY **out,
                   struct na_error **err)
{
    cleanup_pkey EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    char reason[256];
    if (!key)
        return na_error_set(err, NA_CODE_INTERNAL, 0, "generate an Ed25519 key (%s)",
                            ssl_reason(reason, sizeof(reason)));
    int ret = write_pem(priv_path, 0600, false, key, true, err);
    if (ret < 0)
        return ret;
    /* Without its public half the new private key is useless, and left behind it would make
     * a retry fail (it is never replaced): it was created just above, so it is ours. */
    if (pub_path && (ret = trust_key_write_public(key, pub_path, err)) < 0) {
        unlink(priv_path);
        return ret;
    }
    if (out)
        *out = na_steal(&key);
    return 0;
}

int
trust_key_public_raw(EVP_PKEY *key, uint8_t out[TRUST_PUBLIC_KEY_SIZE], struct na_error **err)
{
    size_t size = TRUST_PUBLIC_KEY_SIZE;
    if (!EVP_PKEY_get_raw_public_key(key, out, &size) || size != TRUST_PUBLIC_KEY_SIZE) {
        ERR_clear_error();
        return na_error_set(err, NA_CODE_INTERNAL, 0, "the key has no raw Ed25519 public key");
    }
    return 0;
}

void
trust_key_fingerprint(const uint8_t pub[TRUST_PUBLIC_KEY_SIZE], char out[17])
{
    char hex[65];
    na_sha256_hex(pub, TRUST_PUBLIC_KEY_SIZE, hex);
    memcpy(out, hex, 16);
    out[16] = '\0';
}

/* --- signatures ------------------------------------------------------------------------ */

/* context, NUL, data: what a signature covers. */
static uint8_t *
signed_bytes(enum trust_purpose purpose, const uint8_t *data, size_t size, size_t *out_size)
{
    const char *ctx = contexts[purpose];
    size_t n = strlen(ctx) + 1;
    uint8_t *buf = na_xmalloc(n + size + 1);
    memcpy(buf, ctx, n);
    if (size)
        memcpy(buf + n, data, size);
    *out_size = n + size;
    return buf;
}

static int
sign_raw(EVP_PKEY *key, enum trust_purpose purpose, const uint8_t *data, size_t size,
         uint8_t sig[SIGNATURE_SIZE], struct na_error **err)
{
    size_t msg_size = 0;
    cleanup_free uint8_t *msg = signed_bytes(purpose, data, size, &msg_size);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t sig_size = SIGNATURE_SIZE;
    bool ok = md && EVP_DigestSignInit(md, NULL, NULL, NULL, key) == 1 &&
              EVP_DigestSign(md, sig, &sig_size, msg, msg_size) == 1 && sig_size == SIGNATURE_SIZE;
    EVP_MD_CTX_free(md);
    char reason[256];
    if (!ok)
        return na_error_set(err, NA_CODE_INTERNAL, 0, "sign with Ed25519 (%s)",
                            ssl_reason(reason, sizeof(reason)));
    return 0;
}

static bool
verify_raw(EVP_PKEY *key, enum trust_purpose purpose, const uint8_t *data, size_t size,
           const uint8_t sig[SIGNATURE_SIZE])
{
    size_t msg_size = 0;
    cleanup_free uint8_t *msg = signed_bytes(purpose, data, size, &msg_size);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestVerifyInit(md, NULL, NULL, NULL, key) == 1 &&
              EVP_DigestVerify(md, sig, SIGNATURE_SIZE, msg, msg_size) == 1;
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return ok;
}

int
trust_sign_hex(EVP_PKEY *key, enum trust_purpose purpose, const uint8_t *data, size_t size,
               char out[TRUST_SIGNATURE_HEX_LEN + 1], struct na_error **err)
{
    uint8_t sig[SIGNATURE_SIZE];
    int ret = sign_raw(key, purpose, data, size, sig, err);
    if (ret < 0)
        return ret;
    for (size_t i = 0; i < SIGNATURE_SIZE; i++)
        snprintf(out + 2 * i, 3, "%02x", sig[i]);
    return 0;
}

static int
hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* lowercase only: one spelling per signature */
}

bool
trust_verify_hex(EVP_PKEY *key, enum trust_purpose purpose, const uint8_t *data, size_t size,
                 const char *hex, size_t hex_len)
{
    if (!key || !hex || hex_len != TRUST_SIGNATURE_HEX_LEN)
        return false;
    uint8_t sig[SIGNATURE_SIZE];
    for (size_t i = 0; i < SIGNATURE_SIZE; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        sig[i] = (uint8_t)(hi << 4 | lo);
    }
    return verify_raw(key, purpose, data, size, sig);
}

/* --- node certificates ----------------------------------------------------------------- */

static bool
is_node_id(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 64 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == len;
}

static bool
is_ipv4(const char *s)
{
    struct in_addr a;
    return strlen(s) < 16 && inet_pton(AF_INET, s, &a) == 1;
}

/* The fields of a certificate as a receiver requires them. */
static int
cert_fields_check(const Nodeagent__V1__NodeCertificate *c, struct trust_node_cert *out,
                  struct na_error **err)
{
    if (!is_node_id(c->node_id))
        return na_error_field(err, "node_id",
                              "node_id: a node certificate needs a node id of 1..64 characters "
                              "of [A-Za-z0-9._-]");
    if (c->public_key.len != TRUST_PUBLIC_KEY_SIZE)
        return na_error_field(err, "public_key",
                              "public_key: %zu bytes; an Ed25519 public key has %d",
                              c->public_key.len, TRUST_PUBLIC_KEY_SIZE);
    if (c->n_tunnel_endpoints > TRUST_MAX_ENDPOINTS)
        return na_error_field(err, "tunnel_endpoints",
                              "tunnel_endpoints: %zu addresses; at most %d", c->n_tunnel_endpoints,
                              TRUST_MAX_ENDPOINTS);
    for (size_t i = 0; i < c->n_tunnel_endpoints; i++)
        if (!is_ipv4(c->tunnel_endpoints[i]))
            return na_error_field(err, "tunnel_endpoints",
                                  "tunnel_endpoints[%zu]: not a dotted IPv4 address", i);
    if (c->not_before_ms <= 0 || c->not_after_ms <= c->not_before_ms)
        return na_error_field(err, "not_after_ms",
                              "not_after_ms: the validity must be a non-empty span of unix "
                              "milliseconds after not_before_ms");
    memset(out, 0, sizeof(*out));
    snprintf(out->node_id, sizeof(out->node_id), "%s", c->node_id);
    memcpy(out->public_key, c->public_key.data, TRUST_PUBLIC_KEY_SIZE);
    for (size_t i = 0; i < c->n_tunnel_endpoints; i++)
        snprintf(out->endpoints[i], sizeof(out->endpoints[i]), "%s", c->tunnel_endpoints[i]);
    out->n_endpoints = c->n_tunnel_endpoints;
    out->not_before_ms = c->not_before_ms;
    out->not_after_ms = c->not_after_ms;
    return 0;
}

int
trust_cert_issue(EVP_PKEY *cp_key, const struct trust_node_cert *cert, uint8_t **out, size_t *size,
                 struct na_error **err)
{
    Nodeagent__V1__NodeCertificate c = NODEAGENT__V1__NODE_CERTIFICATE__INIT;
    char *endpoints[TRUST_MAX_ENDPOINTS];
    c.node_id = (char *)cert->node_id;
    c.public_key.data = (uint8_t *)cert->public_key;
    c.public_key.len = TRUST_PUBLIC_KEY_SIZE;
    for (size_t i = 0; i < cert->n_endpoints && i < TRUST_MAX_ENDPOINTS; i++)
        endpoints[i] = (char *)cert->endpoints[i];
    c.tunnel_endpoints = endpoints;
    c.n_tunnel_endpoints = cert->n_endpoints;
    c.not_before_ms = cert->not_before_ms;
    c.not_after_ms = cert->not_after_ms;
    struct trust_node_cert check;
    int ret = cert_fields_check(&c, &check, err);
    if (ret < 0)
        return ret;

    size_t inner_size = nodeagent__v1__node_certificate__get_packed_size(&c);
    cleanup_free uint8_t *inner = na_xmalloc(inner_size + 1);
    nodeagent__v1__node_certificate__pack(&c, inner);
    uint8_t sig[SIGNATURE_SIZE];
    ret = sign_raw(cp_key, TRUST_NODE_CERTIFICATE, inner, inner_size, sig, err);
    if (ret < 0)
        return ret;
    Nodeagent__V1__SignedNodeCertificate s = NODEAGENT__V1__SIGNED_NODE_CERTIFICATE__INIT;
    s.certificate.data = inner;
    s.certificate.len = inner_size;
    s.signature.data = sig;
    s.signature.len = SIGNATURE_SIZE;
    *size = nodeagent__v1__signed_node_certificate__get_packed_size(&s);
    *out = na_xmalloc(*size + 1);
    nodeagent__v1__signed_node_certificate__pack(&s, *out);
    return 0;
}

/* Decodes the outer and inner messages; *inner_out points into *signed_out. */
static int
cert_unpack(const uint8_t *data, size_t size, Nodeagent__V1__SignedNodeCertificate **signed_out,
            Nodeagent__V1__NodeCertificate **inner_out, struct na_error **err)
{
    if (!data || !size)
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0, "no node certificate");
    Nodeagent__V1__SignedNodeCertificate *s =
        nodeagent__v1__signed_node_certificate__unpack(NULL, size, data);
    if (!s)
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                            "the node certificate (%zu bytes) is not a SignedNodeCertificate",
                            size);
    Nodeagent__V1__NodeCertificate *c =
        nodeagent__v1__node_certificate__unpack(NULL, s->certificate.len, s->certificate.data);
    if (!c) {
        nodeagent__v1__signed_node_certificate__free_unpacked(s, NULL);
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                            "the node certificate's body is not a NodeCertificate");
    }
    *signed_out = s;
    *inner_out = c;
    return 0;
}

int
trust_cert_decode(const uint8_t *data, size_t size, struct trust_node_cert *out,
                  struct na_error **err)
{
    Nodeagent__V1__SignedNodeCertificate *s = NULL;
    Nodeagent__V1__NodeCertificate *c = NULL;
    int ret = cert_unpack(data, size, &s, &c, err);
    if (ret < 0)
        return ret;
    ret = cert_fields_check(c, out, err);
    nodeagent__v1__node_certificate__free_unpacked(c, NULL);
    nodeagent__v1__signed_node_certificate__free_unpacked(s, NULL);
    return ret;
}

int
trust_cert_check(EVP_PKEY *cp_pub, const uint8_t *data, size_t size, int64_t now_ms,
                 struct trust_node_cert *out, struct na_error **err)
{
    Nodeagent__V1__SignedNodeCertificate *s = NULL;
    Nodeagent__V1__NodeCertificate *c = NULL;
    int ret = cert_unpack(data, size, &s, &c, err);
    if (ret < 0)
        return ret;
    struct trust_node_cert cert;
    if (s->signature.len != SIGNATURE_SIZE ||
        !verify_raw(cp_pub, TRUST_NODE_CERTIFICATE, s->certificate.data, s->certificate.len,
                    s->signature.data)) {
        ret = na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                           "the node certificate is not signed by the control plane's key");
    } else if ((ret = cert_fields_check(c, &cert, err)) < 0) {
        ret = na_error_wrap(err, "node certificate");
        if (err && *err)
            (*err)->code = NA_CODE_UNAUTHENTICATED;
    } else if (now_ms > cert.not_after_ms) {
        ret = na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                           "the node certificate of `%s` expired %.0f s ago", cert.node_id,
                           (double)(now_ms - cert.not_after_ms) / 1000);
    } else if (now_ms < cert.not_before_ms - TRUST_MAX_FUTURE_MS) {
        ret = na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                           "the node certificate of `%s` is not valid for another %.0f s",
                           cert.node_id, (double)(cert.not_before_ms - now_ms) / 1000);
    } else {
        *out = cert;
    }
    nodeagent__v1__node_certificate__free_unpacked(c, NULL);
    nodeagent__v1__signed_node_certificate__free_unpacked(s, NULL);
    return ret;
}

bool
trust_cert_allows_endpoint(const struct trust_node_cert *cert, const char *endpoint)
{
    for (size_t i = 0; i < cert->n_endpoints; i++)
        if (strcmp(cert->endpoints[i], endpoint) == 0)
            return true;
    return false;
}

int
trust_cert_read_file(const char *path, const char *what, uint8_t **out, size_t *size,
                     struct na_error **err)
{
    mode_t mode;
    return read_checked(path, what, false, out, size, &mode, err);
}

int
trust_node_message_check(EVP_PKEY *cp_pub, enum trust_purpose purpose, const uint8_t *cert,
                         size_t cert_size, const char *sig_hex, size_t sig_len, const uint8_t *data,
                         size_t size, int64_t now_ms, struct trust_node_cert *out,
                         struct na_error **err)
{
    if (!sig_hex)
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0, "no %s header",
                            TRUST_SIGNATURE_HEADER);
    if (!cert)
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0, "no %s header",
                            TRUST_CERTIFICATE_HEADER);
    struct trust_node_cert c;
    int ret = trust_cert_check(cp_pub, cert, cert_size, now_ms, &c, err);
    if (ret < 0)
        return ret;
    cleanup_pkey EVP_PKEY *key =
        EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, c.public_key, TRUST_PUBLIC_KEY_SIZE);
    if (!key) {
        ERR_clear_error();
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                            "the node certificate of `%s` holds no usable public key", c.node_id);
    }
    if (!trust_verify_hex(key, purpose, data, size, sig_hex, sig_len))
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                            "the %s signature is not that of `%s`'s certified key",
                            TRUST_SIGNATURE_HEADER, c.node_id);
    *out = c;
    return 0;
}

/* --- hex ------------------------------------------------------------------------------- */

char *
trust_hex_encode(const uint8_t *data, size_t size)
{
    char *out = na_xmalloc(2 * size + 1);
    for (size_t i = 0; i < size; i++)
        snprintf(out + 2 * i, 3, "%02x", data[i]);
    out[2 * size] = '\0';
    return out;
}

bool
trust_hex_decode(const char *hex, size_t len, size_t max_size, uint8_t **out, size_t *size)
{
    if (!hex || len % 2 || len / 2 > max_size)
        return false;
    uint8_t *buf = na_xmalloc(len / 2 + 1);
    for (size_t i = 0; i < len / 2; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(buf);
            return false;
        }
        buf[i] = (uint8_t)(hi << 4 | lo);
    }
    *out = buf;
    *size = len / 2;
    return true;
}
