/* libFuzzer target: bytes as a SignedNodeCertificate, the way an agent takes a peer's
 * `nodeagent-certificate` header: trust_cert_decode and trust_cert_check against a control
 * plane key made once, at a fixed time.  Finds crashes, leaks and undefined behaviour in
 * protobuf-c's unpacking and proto/trust.c's checks.  Since fuzzed bytes can never carry
 * this key's signature, whatever decodes is also re-issued with the key and checked again,
 * so the accepting path runs too: a decoded certificate must survive issue and check with
 * the same fields.  (proto/trust.c comes with the contract's code.)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/trust.h"

#define NOW_MS 1700000000000LL

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static EVP_PKEY *cp_key;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cp_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!cp_key)
        abort();
    return 0;
}

/* What every accepted certificate holds, whatever the bytes were. */
static void
check_invariants(const struct trust_node_cert *c)
{
    size_t len = strnlen(c->node_id, sizeof(c->node_id));
    if (len == 0 || len >= sizeof(c->node_id))
        __builtin_trap();
    if (c->n_endpoints > TRUST_MAX_ENDPOINTS)
        __builtin_trap();
    for (size_t i = 0; i < c->n_endpoints; i++) {
        size_t n = strnlen(c->endpoints[i], sizeof(c->endpoints[i]));
        if (n == 0 || n >= sizeof(c->endpoints[i]))
            __builtin_trap();
        if (!trust_cert_allows_endpoint(c, c->endpoints[i]))
            __builtin_trap();
    }
    if (c->not_before_ms <= 0 || c->not_after_ms <= c->not_before_ms)
        __builtin_trap();
}

static bool
same_cert(const struct trust_node_cert *a, const struct trust_node_cert *b)
{
    if (strcmp(a->node_id, b->node_id) != 0 ||
        memcmp(a->public_key, b->public_key, sizeof(a->public_key)) != 0 ||
        a->n_endpoints != b->n_endpoints || a->not_before_ms != b->not_before_ms ||
        a->not_after_ms != b->not_after_ms)
        return false;
    for (size_t i = 0; i < a->n_endpoints; i++)
        if (strcmp(a->endpoints[i], b->endpoints[i]) != 0)
            return false;
    return true;
}

/* An error and a negative return come together, with a message. */
static void
check_result(int ret, struct na_error *err)
{
    if ((ret < 0) != (err != NULL) || (err && !err->msg))
        __builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct trust_node_cert decoded, checked;
    struct na_error *err = NULL;

    int ret = trust_cert_check(cp_key, data, size, NOW_MS, &checked, &err);
    check_result(ret, err);
    if (ret == 0)
        __builtin_trap(); /* nothing outside this process has cp_key's signature */
    if (err->code != NA_CODE_UNAUTHENTICATED)
        __builtin_trap();
    na_error_clear(&err);

    ret = trust_cert_decode(data, size, &decoded, &err);
    check_result(ret, err);
    na_error_clear(&err);
    if (ret < 0)
        return 0;
    check_invariants(&decoded);

    /* What decodes can be issued as it is, and then passes the check within its validity. */
    uint8_t *issued = NULL;
    size_t issued_size = 0;
    ret = trust_cert_issue(cp_key, &decoded, &issued, &issued_size, &err);
    check_result(ret, err);
    if (ret < 0)
        __builtin_trap();
    int64_t now = decoded.not_after_ms; /* inside [not_before, not_after] */
    ret = trust_cert_check(cp_key, issued, issued_size, now, &checked, &err);
    check_result(ret, err);
    if (ret < 0)
        __builtin_trap();
    check_invariants(&checked);
    if (!same_cert(&checked, &decoded))
        __builtin_trap();
    /* And with the fixed clock: accepted exactly when NOW_MS lies in the validity. */
    ret = trust_cert_check(cp_key, issued, issued_size, NOW_MS, &checked, &err);
    check_result(ret, err);
    bool in_window =
        NOW_MS <= decoded.not_after_ms && NOW_MS >= decoded.not_before_ms - TRUST_MAX_FUTURE_MS;
    if ((ret == 0) != in_window)
        __builtin_trap();
    na_error_clear(&err);
    free(issued);
    return 0;
}
