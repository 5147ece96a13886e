/* proto/trust: key files and who may own and read them, signatures with a context per
 * purpose, node certificates, node-signed messages, and agreement with another Ed25519
 * implementation (Python's cryptography, run as /usr/bin/python3) and with a fixed vector.
 * Key files live in one temporary directory made for the group; a file owned by another
 * user needs root (chown), as the unit tests are run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "proto/trust.h"

#define OTHER_UID ((uid_t)65534)
#define NOW_MS 1700000000000LL
#define DAY_MS (24LL * 3600 * 1000)

static struct {
    char root[64];
    EVP_PKEY *cp;    /* the control plane */
    EVP_PKEY *node;  /* a node, certified by cp */
    EVP_PKEY *other; /* neither */
    int n;           /* for unique file names */
} g;

/* --- helpers --------------------------------------------------------------------------- */

static char *
path_in_root(const char *name)
{
    return na_xasprintf("%s/%d-%s", g.root, g.n++, name);
}

static EVP_PKEY *
new_key(const char *name, char **priv_out, char **pub_out)
{
    cleanup_free char *priv = path_in_root(name);
    cleanup_free char *pub = na_xasprintf("%s.pub", priv);
    struct na_error *err = NULL;
    EVP_PKEY *key = NULL;
    if (trust_key_generate(priv, pub, &key, &err) < 0)
        fail_msg("trust_key_generate: %s", err->msg);
    if (priv_out)
        *priv_out = na_steal(&priv);
    if (pub_out)
        *pub_out = na_steal(&pub);
    return key;
}

static void
copy_file(const char *from, const char *to, mode_t mode)
{
    char buf[4096];
    cleanup_close int in = open(from, O_RDONLY | O_CLOEXEC);
    assert_true(in >= 0);
    ssize_t n = read(in, buf, sizeof(buf));
    assert_true(n > 0);
    cleanup_close int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    assert_true(out >= 0);
    assert_int_equal(fchmod(out, mode), 0);
    assert_int_equal(write(out, buf, (size_t)n), n);
}

static struct trust_node_cert
node_cert(EVP_PKEY *key)
{
    struct trust_node_cert c = {0};
    snprintf(c.node_id, sizeof(c.node_id), "node-1.example_a");
    assert_int_equal(trust_key_public_raw(key, c.public_key, NULL), 0);
    snprintf(c.endpoints[0], sizeof(c.endpoints[0]), "192.0.2.10");
    snprintf(c.endpoints[1], sizeof(c.endpoints[1]), "198.51.100.7");
    c.n_endpoints = 2;
    c.not_before_ms = NOW_MS - DAY_MS;
    c.not_after_ms = NOW_MS + DAY_MS;
    return c;
}

static uint8_t *
issue(EVP_PKEY *signer, const struct trust_node_cert *c, size_t *size)
{
    uint8_t *data = NULL;
    struct na_error *err = NULL;
    if (trust_cert_issue(signer, c, &data, size, &err) < 0)
        fail_msg("trust_cert_issue: %s", err->msg);
    return data;
}

/* Asserts that rc is a failure whose error has code and says want. */
static void
assert_refused(int rc, struct na_error **err, enum na_code code, const char *want)
{
    assert_true(rc < 0);
    assert_non_null(*err);
    if ((*err)->code != code || !strstr((*err)->msg, want))
        fail_msg("got %s `%s`, want %s with `%s`", na_code_name((*err)->code), (*err)->msg,
                 na_code_name(code), want);
    na_error_clear(err);
}

static int
group_setup(void **state)
{
    (void)state;
    strcpy(g.root, "/tmp/nodeagent-test-trust-XXXXXX");
    assert_non_null(mkdtemp(g.root));
    g.cp = new_key("cp.key", NULL, NULL);
    g.node = new_key("node.key", NULL, NULL);
    g.other = new_key("other.key", NULL, NULL);
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(g.cp);
    EVP_PKEY_free(g.node);
    EVP_PKEY_free(g.other);
    na_remove_tree(g.root);
    return 0;
}

/* --- keys ------------------------------------------------------------------------------ */

static void
test_key_generate_and_reload(void **state)
{
    (void)state;
    cleanup_free char *priv = NULL, *pub = NULL;
    cleanup_pkey EVP_PKEY *key = new_key("k.key", &priv, &pub);
    struct stat st;
    assert_int_equal(stat(priv, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(stat(pub, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);

    struct na_error *err = NULL;
    cleanup_pkey EVP_PKEY *priv_loaded = NULL, *pub_loaded = NULL, *pub_from_priv = NULL;
    assert_int_equal(trust_key_load_private(priv, "test", &priv_loaded, &err), 0);
    assert_int_equal(trust_key_load_public(pub, "test", &pub_loaded, &err), 0);
    assert_int_equal(trust_key_load_public(priv, "test", &pub_from_priv, &err), 0);
    uint8_t a[TRUST_PUBLIC_KEY_SIZE], b[TRUST_PUBLIC_KEY_SIZE], c[TRUST_PUBLIC_KEY_SIZE];
    uint8_t d[TRUST_PUBLIC_KEY_SIZE];
    assert_int_equal(trust_key_public_raw(key, a, &err), 0);
    assert_int_equal(trust_key_public_raw(priv_loaded, b, &err), 0);
    assert_int_equal(trust_key_public_raw(pub_loaded, c, &err), 0);
    assert_int_equal(trust_key_public_raw(pub_from_priv, d, &err), 0);
    assert_memory_equal(a, b, sizeof(a));
    assert_memory_equal(a, c, sizeof(a));
    assert_memory_equal(a, d, sizeof(a));

    /* The reloaded private key signs what the public key file verifies. */
    char sig[TRUST_SIGNATURE_HEX_LEN + 1];
    assert_int_equal(trust_sign_hex(priv_loaded, TRUST_REQUEST, (const uint8_t *)"x", 1, sig, &err),
                     0);
    assert_true(
        trust_verify_hex(pub_loaded, TRUST_REQUEST, (const uint8_t *)"x", 1, sig, strlen(sig)));

    /* A public key file is no private key: refused for its mode first, and with a private
     * key's mode for what it holds. */
    cleanup_pkey EVP_PKEY *none = NULL;
    assert_refused(trust_key_load_private(pub, "[bus] node_key", &none, &err), &err,
                   NA_CODE_UNAUTHENTICATED, "has mode 0644");
    cleanup_free char *pub600 = path_in_root("pub-0600.key");
    copy_file(pub, pub600, 0600);
    assert_refused(trust_key_load_private(pub600, "[bus] node_key", &none, &err), &err,
                   NA_CODE_UNAUTHENTICATED, "is not a PEM private key");
    assert_null(none);

    char fp[17];
    trust_key_fingerprint(a, fp);
    assert_int_equal(strlen(fp), 16);
    assert_int_equal(strspn(fp, "0123456789abcdef"), 16);
}

static void
test_key_generate_never_replaces(void **state)
{
    (void)state;
    cleanup_free char *priv = NULL, *pub = NULL;
    cleanup_pkey EVP_PKEY *key = new_key("keep.key", &priv, &pub);
    struct na_error *err = NULL;
    EVP_PKEY *again = NULL;
    int rc = trust_key_generate(priv, NULL, &again, &err);
    assert_int_equal(rc, -EEXIST);
    assert_null(again);
    na_error_clear(&err);
    /* The first key is still the one in the file. */
    cleanup_pkey EVP_PKEY *loaded = NULL;
    assert_int_equal(trust_key_load_private(priv, "test", &loaded, &err), 0);
    assert_int_equal(EVP_PKEY_eq(key, loaded), 1);
}

static void
test_key_generate_without_public_half_leaves_nothing(void **state)
{
    (void)state;
    cleanup_free char *priv = path_in_root("lonely.key");
    cleanup_free char *pub = na_xasprintf("%s/no-such-dir/lonely.pub", g.root);
    struct na_error *err = NULL;
    EVP_PKEY *key = NULL;
    assert_true(trust_key_generate(priv, pub, &key, &err) < 0);
    na_error_clear(&err);
    assert_null(key);
    assert_int_equal(access(priv, F_OK), -1);
    assert_int_equal(errno, ENOENT);
}

static void
test_private_key_readable_by_others_refused(void **state)
{
    (void)state;
    cleanup_free char *priv = NULL;
    cleanup_pkey EVP_PKEY *key = new_key("loose.key", &priv, NULL);
    cleanup_free char *loose = path_in_root("loose-0644.key");
    copy_file(priv, loose, 0644);
    struct na_error *err = NULL;
    cleanup_pkey EVP_PKEY *out = NULL;
    assert_refused(trust_key_load_private(loose, "[bus] node_key", &out, &err), &err,
                   NA_CODE_UNAUTHENTICATED, "has mode 0644");
    /* Still a secret when it is given where a public key would do. */
    assert_refused(trust_key_load_public(loose, "--public-key", &out, &err), &err,
                   NA_CODE_UNAUTHENTICATED, "holds a private key and has mode 0644");
    cleanup_free char *group = path_in_root("loose-0640.key");
    copy_file(priv, group, 0640);
    assert_refused(trust_key_load_private(group, "test", &out, &err), &err, NA_CODE_UNAUTHENTICATED,
                   "has mode 0640");
    /* Others may not write a public key either. */
    cleanup_free char *pub = path_in_root("writable.pub");
    assert_int_equal(trust_key_write_public(key, pub, &err), 0);
    assert_int_equal(chmod(pub, 0666), 0);
    assert_refused(trust_key_load_public(pub, "test", &out, &err), &err, NA_CODE_UNAUTHENTICATED,
                   "must not be writable");
    assert_null(out);
}

static void
test_key_owned_by_another_user_refused(void **state)
{
    (void)state;
    assert_int_equal(geteuid(), 0); /* chown needs root; the unit tests run as root */
    cleanup_free char *priv = NULL, *pub = NULL;
    cleanup_pkey EVP_PKEY *key = new_key("foreign.key", &priv, &pub);
    assert_int_equal(chown(priv, OTHER_UID, OTHER_UID), 0);
    assert_int_equal(chown(pub, OTHER_UID, OTHER_UID), 0);
    struct na_error *err = NULL;
    cleanup_pkey EVP_PKEY *out = NULL;
    assert_refused(trust_key_load_private(priv, "test", &out, &err), &err, NA_CODE_UNAUTHENTICATED,
                   "owned by uid 65534");
    assert_refused(trust_key_load_public(pub, "test", &out, &err), &err, NA_CODE_UNAUTHENTICATED,
                   "owned by uid 65534");
    uint8_t *data = NULL;
    size_t size = 0;
    assert_refused(trust_cert_read_file(pub, "[bus] node_cert", &data, &size, &err), &err,
                   NA_CODE_UNAUTHENTICATED, "owned by uid 65534");
    assert_null(data);
}

static void
test_key_file_not_regular_or_missing_refused(void **state)
{
    (void)state;
    struct na_error *err = NULL;
    cleanup_pkey EVP_PKEY *out = NULL;
    assert_refused(trust_key_load_public(g.root, "test", &out, &err), &err, NA_CODE_UNAUTHENTICATED,
                   "is not a regular file");
    cleanup_free char *missing = path_in_root("missing.key");
    assert_refused(trust_key_load_private(missing, "test", &out, &err), &err,
                   NA_CODE_UNAUTHENTICATED, "No such file");
    /* A symlink is not followed (O_NOFOLLOW). */
    cleanup_free char *priv = NULL;
    cleanup_pkey EVP_PKEY *key = new_key("target.key", &priv, NULL);
    cleanup_free char *link = path_in_root("link.key");
    assert_int_equal(symlink(priv, link), 0);
    assert_true(trust_key_load_private(link, "test", &out, &err) < 0);
    na_error_clear(&err);
    assert_null(out);
}

/* --- signatures ------------------------------------------------------------------------ */

static const uint8_t msg[] = "an envelope's bytes\0with a NUL inside";

static void
test_sign_verify_round_trip(void **state)
{
    (void)state;
    char sig[TRUST_SIGNATURE_HEX_LEN + 1];
    struct na_error *err = NULL;
    assert_int_equal(trust_sign_hex(g.cp, TRUST_REQUEST, msg, sizeof(msg), sig, &err), 0);
    assert_int_equal(strlen(sig), TRUST_SIGNATURE_HEX_LEN);
    assert_int_equal(strspn(sig, "0123456789abcdef"), TRUST_SIGNATURE_HEX_LEN);
    assert_true(trust_verify_hex(g.cp, TRUST_REQUEST, msg, sizeof(msg), sig, strlen(sig)));
    /* Ed25519 is deterministic. */
    char again[TRUST_SIGNATURE_HEX_LEN + 1];
    assert_int_equal(trust_sign_hex(g.cp, TRUST_REQUEST, msg, sizeof(msg), again, &err), 0);
    assert_string_equal(sig, again);
    /* Any other byte, or one byte fewer, does not verify. */
    uint8_t changed[sizeof(msg)];
    memcpy(changed, msg, sizeof(msg));
    changed[20] ^= 1;
    assert_false(trust_verify_hex(g.cp, TRUST_REQUEST, changed, sizeof(changed), sig, strlen(sig)));
    assert_false(trust_verify_hex(g.cp, TRUST_REQUEST, msg, sizeof(msg) - 1, sig, strlen(sig)));
    /* Empty data can be signed too. */
    assert_int_equal(trust_sign_hex(g.cp, TRUST_REQUEST, NULL, 0, sig, &err), 0);
    assert_true(trust_verify_hex(g.cp, TRUST_REQUEST, NULL, 0, sig, strlen(sig)));
}

static void
test_signature_for_one_purpose_fails_for_another(void **state)
{
    (void)state;
    static const enum trust_purpose purposes[] = {TRUST_REQUEST, TRUST_PEER_MESSAGE,
                                                  TRUST_ANNOUNCEMENT, TRUST_NODE_CERTIFICATE};
    struct na_error *err = NULL;
    for (size_t i = 0; i < NA_ARRAY_SIZE(purposes); i++) {
        char sig[TRUST_SIGNATURE_HEX_LEN + 1];
        assert_int_equal(trust_sign_hex(g.node, purposes[i], msg, sizeof(msg), sig, &err), 0);
        for (size_t j = 0; j < NA_ARRAY_SIZE(purposes); j++)
            assert_int_equal(
                trust_verify_hex(g.node, purposes[j], msg, sizeof(msg), sig, strlen(sig)), i == j);
    }
    assert_string_equal(trust_purpose_context(TRUST_REQUEST), "nodeagent.v1.request");
    assert_string_equal(trust_purpose_context(TRUST_PEER_MESSAGE), "nodeagent.v1.peer");
    assert_string_equal(trust_purpose_context(TRUST_ANNOUNCEMENT), "nodeagent.v1.announcement");
    assert_string_equal(trust_purpose_context(TRUST_NODE_CERTIFICATE),
                        "nodeagent.v1.node-certificate");
}

static void
test_signature_by_another_key_fails(void **state)
{
    (void)state;
    char sig[TRUST_SIGNATURE_HEX_LEN + 1];
    struct na_error *err = NULL;
    assert_int_equal(trust_sign_hex(g.other, TRUST_REQUEST, msg, sizeof(msg), sig, &err), 0);
    assert_false(trust_verify_hex(g.cp, TRUST_REQUEST, msg, sizeof(msg), sig, strlen(sig)));
    assert_true(trust_verify_hex(g.other, TRUST_REQUEST, msg, sizeof(msg), sig, strlen(sig)));
    assert_false(trust_verify_hex(NULL, TRUST_REQUEST, msg, sizeof(msg), sig, strlen(sig)));
}

static void
test_verify_refuses_bad_hex(void **state)
{
    (void)state;
    char sig[TRUST_SIGNATURE_HEX_LEN + 2];
    struct na_error *err = NULL;
    assert_int_equal(trust_sign_hex(g.cp, TRUST_REQUEST, msg, sizeof(msg), sig, &err), 0);
    assert_true(trust_verify_hex(g.cp, TRUST_REQUEST, msg, sizeof(msg), sig, 128));

    /* Uppercase is the same signature spelled differently: refused (one spelling). */
    char upper[TRUST_SIGNATURE_HEX_LEN + 1];
    for (size_t i = 0; i <= TRUST_SIGNATURE_HEX_LEN; i++)
        upper[i] = (sig[i] >= 'a' && sig[i] <= 'f') ? (char)(sig[i] - 32) : sig[i];
    assert_string_not_equal(upper, sig);
    assert_false(trust_verify_hex(g.cp, TRUST_REQUEST, msg, sizeof(msg), upper, 128));
    /* One uppercase digit is enough. */
    char one[TRUST_SIGNATURE_HEX_LEN + 1];
    memcpy(one, sig, sizeof(one));
    size_t letter = strcspn(one, "abcdef");
    assert_true(letter < TRUST_SIGNATURE_HEX_LEN);
    one[letter] = (char)(one[letter] - 32);
    assert_false(trust_verify_hex(g.cp, TRUST_REQUEST, msg, sizeof(msg), one, 128));

    /* Not hex at all. */
    static const char bad_chars[] = {'g', 'x', ' ', '\0', '-', 'G', '\n'};
    for (size_t i = 0; i < sizeof(bad_chars); i++) {
        memcpy(one, sig, sizeof(one));
        one[77] = bad_chars[i];
        assert_false(trust_verify_hex(g.cp, TRUST_REQUEST, msg, sizeof(msg), one, 128));
    }
    /* Wrong lengths: a prefix, one digit more, a trailing newline, nothing. */
    assert_false(trust_verify_hex(g.cp, TRUST_REQUEST, msg, sizeof(msg), sig, 127));
    assert_false(trust_verify_hex(g.cp, TRUST_REQUEST, msg, sizeof(msg), sig, 126));
    strcat(sig, "0");
    assert_false(trust_verify_hex(g.cp, TRUST_REQUEST, msg, sizeof(msg), sig, 129));
    sig[128] = '\n';
    assert_false(trust_verify_hex(g.cp, TRUST_REQUEST, msg, sizeof(msg), sig, 129));
    assert_false(trust_verify_hex(g.cp, TRUST_REQUEST, msg, sizeof(msg), sig, 0));
    assert_false(trust_verify_hex(g.cp, TRUST_REQUEST, msg, sizeof(msg), NULL, 128));
    /* 64 bytes of zeros is well-formed hex but no signature. */
    char zeros[TRUST_SIGNATURE_HEX_LEN + 1];
    memset(zeros, '0', TRUST_SIGNATURE_HEX_LEN);
    zeros[TRUST_SIGNATURE_HEX_LEN] = '\0';
    assert_false(trust_verify_hex(g.cp, TRUST_REQUEST, msg, sizeof(msg), zeros, 128));
}

/* Pins what is signed (context, NUL, bytes) with a key from a fixed seed: the expected
 * signature was made with Python's cryptography, and Ed25519 signatures are deterministic. */
static void
test_fixed_seed_vector(void **state)
{
    (void)state;
    uint8_t seed[32];
    for (size_t i = 0; i < sizeof(seed); i++)
        seed[i] = (uint8_t)i;
    cleanup_pkey EVP_PKEY *key =
        EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof(seed));
    assert_non_null(key);
    uint8_t pub[TRUST_PUBLIC_KEY_SIZE];
    assert_int_equal(trust_key_public_raw(key, pub, NULL), 0);
    char fp[17];
    trust_key_fingerprint(pub, fp);
    assert_string_equal(fp, "56475aa75463474c");
    char sig[TRUST_SIGNATURE_HEX_LEN + 1];
    assert_int_equal(trust_sign_hex(key, TRUST_REQUEST, (const uint8_t *)"hello bus", 9, sig, NULL),
                     0);
    assert_string_equal(sig, "88c6d6d925fd6a6ec4a0d0c4b142fd9d0581ad6c5eebbc98e3f17bbaf61fa846"
                             "c40818ff7b1a6aaf4225cff724cf03c93edf8226b8550b4891f9f9a3562b7105");
}

/* Python signs with a key file trust_key_generate wrote and verifies our signature: the
 * file format and the signed bytes agree with another implementation. */
static const char python_script[] =
    "import sys\n"
    "from cryptography.hazmat.primitives.serialization import load_pem_private_key\n"
    "key = load_pem_private_key(open(sys.argv[1], 'rb').read(), password=None)\n"
    "data = bytes.fromhex(sys.argv[2])\n"
    "key.public_key().verify(bytes.fromhex(sys.argv[3]), b'nodeagent.v1.request\\0' + data)\n"
    "sys.stdout.write(key.sign(b'nodeagent.v1.request\\0' + data).hex())\n";

static void
test_python_cryptography_interop(void **state)
{
    (void)state;
    assert_int_equal(access("/usr/bin/python3", X_OK), 0); /* deploy/deps.sh installs it */
    cleanup_free char *priv = NULL, *pub = NULL;
    cleanup_pkey EVP_PKEY *key = new_key("py.key", &priv, &pub);
    static const uint8_t data[] = {0x0a, 0x03, 'r', '-', '1', 0x00, 0xff, 0x80, 0x22, 0x05};
    char data_hex[2 * sizeof(data) + 1];
    for (size_t i = 0; i < sizeof(data); i++)
        snprintf(data_hex + 2 * i, 3, "%02x", data[i]);
    char ours[TRUST_SIGNATURE_HEX_LEN + 1];
    assert_int_equal(trust_sign_hex(key, TRUST_REQUEST, data, sizeof(data), ours, NULL), 0);

    int out[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        char *argv[] = {
            (char *)"python3", (char *)"-c", (char *)python_script, priv, data_hex, ours, NULL};
        execv("/usr/bin/python3", argv);
        _exit(127);
    }
    close(out[1]);
    char theirs[2 * TRUST_SIGNATURE_HEX_LEN];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(theirs) - 1 &&
           ((n = read(out[0], theirs + len, sizeof(theirs) - 1 - len)) > 0 ||
            (n < 0 && errno == EINTR)))
        len += n > 0 ? (size_t)n : 0;
    close(out[0]);
    theirs[len] = '\0';
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0); /* 1: Python refused our signature */
    assert_int_equal(len, TRUST_SIGNATURE_HEX_LEN);

    cleanup_pkey EVP_PKEY *pub_key = NULL;
    assert_int_equal(trust_key_load_public(pub, "test", &pub_key, NULL), 0);
    assert_true(trust_verify_hex(pub_key, TRUST_REQUEST, data, sizeof(data), theirs, len));
    assert_false(trust_verify_hex(pub_key, TRUST_PEER_MESSAGE, data, sizeof(data), theirs, len));
    assert_string_equal(theirs, ours); /* deterministic: the same signature */
}

/* --- node certificates ----------------------------------------------------------------- */

static void
test_cert_issue_check_round_trip(void **state)
{
    (void)state;
    struct trust_node_cert c = node_cert(g.node);
    size_t size = 0;
    cleanup_free uint8_t *data = issue(g.cp, &c, &size);
    struct trust_node_cert got;
    struct na_error *err = NULL;
    assert_int_equal(trust_cert_check(g.cp, data, size, NOW_MS, &got, &err), 0);
    assert_string_equal(got.node_id, c.node_id);
    assert_memory_equal(got.public_key, c.public_key, TRUST_PUBLIC_KEY_SIZE);
    assert_int_equal(got.n_endpoints, 2);
    assert_string_equal(got.endpoints[0], "192.0.2.10");
    assert_string_equal(got.endpoints[1], "198.51.100.7");
    assert_int_equal(got.not_before_ms, c.not_before_ms);
    assert_int_equal(got.not_after_ms, c.not_after_ms);

    /* Decoding alone gives the same fields. */
    struct trust_node_cert decoded;
    assert_int_equal(trust_cert_decode(data, size, &decoded, &err), 0);
    assert_memory_equal(&decoded, &got, sizeof(got));

    /* With the public key as a receiver loads it from a file. */
    cleanup_free char *pub = path_in_root("cp.pub");
    assert_int_equal(trust_key_write_public(g.cp, pub, &err), 0);
    cleanup_pkey EVP_PKEY *cp_pub = NULL;
    assert_int_equal(trust_key_load_public(pub, "[bus] control_plane_key", &cp_pub, &err), 0);
    assert_int_equal(trust_cert_check(cp_pub, data, size, NOW_MS, &got, &err), 0);

    /* No endpoints is a valid certificate (a node that announces none). */
    c.n_endpoints = 0;
    cleanup_free uint8_t *bare = issue(g.cp, &c, &size);
    assert_int_equal(trust_cert_check(g.cp, bare, size, NOW_MS, &got, &err), 0);
    assert_int_equal(got.n_endpoints, 0);
}

static void
test_cert_validity_window(void **state)
{
    (void)state;
    struct trust_node_cert c = node_cert(g.node);
    size_t size = 0;
    cleanup_free uint8_t *data = issue(g.cp, &c, &size);
    struct trust_node_cert got;
    struct na_error *err = NULL;
    /* Expired: one millisecond after not_after. */
    assert_int_equal(trust_cert_check(g.cp, data, size, c.not_after_ms, &got, &err), 0);
    assert_refused(trust_cert_check(g.cp, data, size, c.not_after_ms + 1, &got, &err), &err,
                   NA_CODE_UNAUTHENTICATED, "expired");
    assert_refused(trust_cert_check(g.cp, data, size, NOW_MS + 400 * DAY_MS, &got, &err), &err,
                   NA_CODE_UNAUTHENTICATED, "expired");
    /* Not yet valid: earlier than not_before by more than the allowed clock skew. */
    assert_int_equal(
        trust_cert_check(g.cp, data, size, c.not_before_ms - TRUST_MAX_FUTURE_MS, &got, &err), 0);
    assert_refused(
        trust_cert_check(g.cp, data, size, c.not_before_ms - TRUST_MAX_FUTURE_MS - 1, &got, &err),
        &err, NA_CODE_UNAUTHENTICATED, "not valid for another");
    /* Decoding does not look at the time. */
    assert_int_equal(trust_cert_decode(data, size, &got, &err), 0);
}

static void
test_cert_signed_by_another_key_refused(void **state)
{
    (void)state;
    struct trust_node_cert c = node_cert(g.node);
    size_t size = 0;
    /* A node cannot certify itself, nor can any key but the control plane's. */
    cleanup_free uint8_t *by_node = issue(g.node, &c, &size);
    struct trust_node_cert got;
    struct na_error *err = NULL;
    assert_refused(trust_cert_check(g.cp, by_node, size, NOW_MS, &got, &err), &err,
                   NA_CODE_UNAUTHENTICATED, "not signed by the control plane's key");
    cleanup_free uint8_t *by_other = issue(g.other, &c, &size);
    assert_refused(trust_cert_check(g.cp, by_other, size, NOW_MS, &got, &err), &err,
                   NA_CODE_UNAUTHENTICATED, "not signed by the control plane's key");
    assert_refused(trust_cert_check(NULL, by_other, size, NOW_MS, &got, &err), &err,
                   NA_CODE_UNAUTHENTICATED, "not signed");
    /* ...but it decodes: show can print it. */
    assert_int_equal(trust_cert_decode(by_other, size, &got, &err), 0);
}

static void
test_cert_tampered_bytes_refused(void **state)
{
    (void)state;
    struct trust_node_cert c = node_cert(g.node);
    size_t size = 0;
    cleanup_free uint8_t *data = issue(g.cp, &c, &size);
    struct trust_node_cert got;
    struct na_error *err = NULL;
    /* Every single changed bit of every byte is refused (or the message no longer parses). */
    for (size_t i = 0; i < size; i++) {
        for (int bit = 0; bit < 8; bit++) {
            data[i] ^= (uint8_t)(1u << bit);
            if (trust_cert_check(g.cp, data, size, NOW_MS, &got, &err) == 0)
                fail_msg("byte %zu bit %d changed, still accepted", i, bit);
            assert_int_equal(err->code, NA_CODE_UNAUTHENTICATED);
            na_error_clear(&err);
            data[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* Truncated, extended, empty. */
    for (size_t n = 0; n < size; n++) {
        assert_true(trust_cert_check(g.cp, data, n, NOW_MS, &got, &err) < 0);
        na_error_clear(&err);
    }
    assert_refused(trust_cert_check(g.cp, NULL, 0, NOW_MS, &got, &err), &err,
                   NA_CODE_UNAUTHENTICATED, "no node certificate");
    assert_int_equal(trust_cert_check(g.cp, data, size, NOW_MS, &got, &err), 0);
}

static void
test_cert_issue_refuses_bad_fields(void **state)
{
    (void)state;
    struct na_error *err = NULL;
    uint8_t *data = NULL;
    size_t size = 0;
    struct trust_node_cert c = node_cert(g.node);
    c.node_id[0] = '\0';
    assert_refused(trust_cert_issue(g.cp, &c, &data, &size, &err), &err, NA_CODE_INVALID_ARGUMENT,
                   "node_id");
    c = node_cert(g.node);
    snprintf(c.node_id, sizeof(c.node_id), "a/b");
    assert_refused(trust_cert_issue(g.cp, &c, &data, &size, &err), &err, NA_CODE_INVALID_ARGUMENT,
                   "node_id");
    c = node_cert(g.node);
    snprintf(c.endpoints[1], sizeof(c.endpoints[1]), "10.0.0.256");
    assert_refused(trust_cert_issue(g.cp, &c, &data, &size, &err), &err, NA_CODE_INVALID_ARGUMENT,
                   "tunnel_endpoints[1]");
    c = node_cert(g.node);
    c.n_endpoints = TRUST_MAX_ENDPOINTS + 1;
    assert_refused(trust_cert_issue(g.cp, &c, &data, &size, &err), &err, NA_CODE_INVALID_ARGUMENT,
                   "at most 16");
    c = node_cert(g.node);
    c.not_after_ms = c.not_before_ms;
    assert_refused(trust_cert_issue(g.cp, &c, &data, &size, &err), &err, NA_CODE_INVALID_ARGUMENT,
                   "not_after_ms");
    c = node_cert(g.node);
    c.not_before_ms = 0;
    assert_refused(trust_cert_issue(g.cp, &c, &data, &size, &err), &err, NA_CODE_INVALID_ARGUMENT,
                   "not_after_ms");
    assert_null(data);
    /* Sixteen endpoints are fine. */
    c = node_cert(g.node);
    for (size_t i = 0; i < TRUST_MAX_ENDPOINTS; i++)
        snprintf(c.endpoints[i], sizeof(c.endpoints[i]), "10.0.0.%zu", i + 1);
    c.n_endpoints = TRUST_MAX_ENDPOINTS;
    cleanup_free uint8_t *full = issue(g.cp, &c, &size);
    struct trust_node_cert got;
    assert_int_equal(trust_cert_check(g.cp, full, size, NOW_MS, &got, &err), 0);
    assert_int_equal(got.n_endpoints, TRUST_MAX_ENDPOINTS);
}

static void
test_cert_allows_endpoint(void **state)
{
    (void)state;
    struct trust_node_cert c = node_cert(g.node);
    assert_true(trust_cert_allows_endpoint(&c, "192.0.2.10"));
    assert_true(trust_cert_allows_endpoint(&c, "198.51.100.7"));
    assert_false(trust_cert_allows_endpoint(&c, "192.0.2.1"));
    assert_false(trust_cert_allows_endpoint(&c, "192.0.2.100"));
    assert_false(trust_cert_allows_endpoint(&c, ""));
    c.n_endpoints = 0;
    assert_false(trust_cert_allows_endpoint(&c, "192.0.2.10"));
}

/* --- node-signed messages -------------------------------------------------------------- */

static void
test_node_message_check(void **state)
{
    (void)state;
    struct trust_node_cert c = node_cert(g.node);
    size_t size = 0;
    cleanup_free uint8_t *cert = issue(g.cp, &c, &size);
    static const uint8_t announcement[] = "\x0a\x10node-1.example_a\x22\x0a"
                                          "192.0.2.10";
    char sig[TRUST_SIGNATURE_HEX_LEN + 1];
    struct na_error *err = NULL;
    assert_int_equal(
        trust_sign_hex(g.node, TRUST_ANNOUNCEMENT, announcement, sizeof(announcement), sig, &err),
        0);
    struct trust_node_cert got;
    assert_int_equal(trust_node_message_check(g.cp, TRUST_ANNOUNCEMENT, cert, size, sig,
                                              strlen(sig), announcement, sizeof(announcement),
                                              NOW_MS, &got, &err),
                     0);
    assert_string_equal(got.node_id, "node-1.example_a");
    assert_true(trust_cert_allows_endpoint(&got, "192.0.2.10"));

    /* Signed with another key than the certificate's. */
    char other_sig[TRUST_SIGNATURE_HEX_LEN + 1];
    assert_int_equal(trust_sign_hex(g.other, TRUST_ANNOUNCEMENT, announcement, sizeof(announcement),
                                    other_sig, &err),
                     0);
    assert_refused(trust_node_message_check(g.cp, TRUST_ANNOUNCEMENT, cert, size, other_sig,
                                            strlen(other_sig), announcement, sizeof(announcement),
                                            NOW_MS, &got, &err),
                   &err, NA_CODE_UNAUTHENTICATED, "not that of `node-1.example_a`");
    /* Even the control plane's key is not the node's. */
    char cp_sig[TRUST_SIGNATURE_HEX_LEN + 1];
    assert_int_equal(
        trust_sign_hex(g.cp, TRUST_ANNOUNCEMENT, announcement, sizeof(announcement), cp_sig, &err),
        0);
    assert_refused(trust_node_message_check(g.cp, TRUST_ANNOUNCEMENT, cert, size, cp_sig,
                                            strlen(cp_sig), announcement, sizeof(announcement),
                                            NOW_MS, &got, &err),
                   &err, NA_CODE_UNAUTHENTICATED, "not that of");
    /* No certificate, no signature. */
    assert_refused(trust_node_message_check(g.cp, TRUST_ANNOUNCEMENT, NULL, 0, sig, strlen(sig),
                                            announcement, sizeof(announcement), NOW_MS, &got, &err),
                   &err, NA_CODE_UNAUTHENTICATED, "no " TRUST_CERTIFICATE_HEADER);
    assert_refused(trust_node_message_check(g.cp, TRUST_ANNOUNCEMENT, cert, size, NULL, 0,
                                            announcement, sizeof(announcement), NOW_MS, &got, &err),
                   &err, NA_CODE_UNAUTHENTICATED, "no " TRUST_SIGNATURE_HEADER);
    /* The right key, for another purpose. */
    assert_refused(trust_node_message_check(g.cp, TRUST_PEER_MESSAGE, cert, size, sig, strlen(sig),
                                            announcement, sizeof(announcement), NOW_MS, &got, &err),
                   &err, NA_CODE_UNAUTHENTICATED, "not that of");
    /* Other bytes. */
    assert_refused(trust_node_message_check(g.cp, TRUST_ANNOUNCEMENT, cert, size, sig, strlen(sig),
                                            announcement, sizeof(announcement) - 1, NOW_MS, &got,
                                            &err),
                   &err, NA_CODE_UNAUTHENTICATED, "not that of");
    /* A certificate the control plane did not sign, or an expired one. */
    cleanup_free uint8_t *self = issue(g.node, &c, &size);
    assert_refused(trust_node_message_check(g.cp, TRUST_ANNOUNCEMENT, self, size, sig, strlen(sig),
                                            announcement, sizeof(announcement), NOW_MS, &got, &err),
                   &err, NA_CODE_UNAUTHENTICATED, "not signed by the control plane");
    size_t cert_size = 0;
    cleanup_free uint8_t *again = issue(g.cp, &c, &cert_size);
    assert_refused(trust_node_message_check(g.cp, TRUST_ANNOUNCEMENT, again, cert_size, sig,
                                            strlen(sig), announcement, sizeof(announcement),
                                            c.not_after_ms + 1, &got, &err),
                   &err, NA_CODE_UNAUTHENTICATED, "expired");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_generate_and_reload),
        cmocka_unit_test(test_key_generate_never_replaces),
        cmocka_unit_test(test_key_generate_without_public_half_leaves_nothing),
        cmocka_unit_test(test_private_key_readable_by_others_refused),
        cmocka_unit_test(test_key_owned_by_another_user_refused),
        cmocka_unit_test(test_key_file_not_regular_or_missing_refused),
        cmocka_unit_test(test_sign_verify_round_trip),
        cmocka_unit_test(test_signature_for_one_purpose_fails_for_another),
        cmocka_unit_test(test_signature_by_another_key_fails),
        cmocka_unit_test(test_verify_refuses_bad_hex),
        cmocka_unit_test(test_fixed_seed_vector),
        cmocka_unit_test(test_python_cryptography_interop),
        cmocka_unit_test(test_cert_issue_check_round_trip),
        cmocka_unit_test(test_cert_validity_window),
        cmocka_unit_test(test_cert_signed_by_another_key_refused),
        cmocka_unit_test(test_cert_tampered_bytes_refused),
        cmocka_unit_test(test_cert_issue_refuses_bad_fields),
        cmocka_unit_test(test_cert_allows_endpoint),
        cmocka_unit_test(test_node_message_check),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
