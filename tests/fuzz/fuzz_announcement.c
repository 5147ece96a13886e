/* libFuzzer target: a message on <prefix>.nodes as a hostile node or outsider sends it, its
 * headers included, through the checks the agent makes before believing it: the
 * certificate and signature (trust_node_message_check, against a control plane key made at
 * start), the announcement's decoding and fields (agent_announcement_check), and whether the
 * certificate vouches for it (agent_announcement_matches_cert).  The later checks run even
 * when the signature fails, which it always does for made-up bytes, so that they are
 * fuzzed too.
 *
 * Input layout: 1 byte key length K, K bytes of key, 2 bytes (little endian) certificate
 * length C, C bytes of certificate, 128 bytes of signature text, the rest the message.
 *
 * fuzz-sources: agent/outputs/announcement.c
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "agent/outputs/announcement.h"
#include "proto/trust.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static EVP_PKEY *cp_key;

static const uint8_t *
take(const uint8_t **data, size_t *size, size_t n)
{
    if (*size < n)
        return NULL;
    const uint8_t *p = *data;
    *data += n;
    *size -= n;
    return p;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cp_key)
        cp_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    const uint8_t *k = take(&data, &size, 1);
    const uint8_t *key = k ? take(&data, &size, k[0]) : NULL;
    const uint8_t *c = key ? take(&data, &size, 2) : NULL;
    size_t cert_size = c ? (size_t)(c[0] | c[1] << 8) : 0;
    const uint8_t *cert = c ? take(&data, &size, cert_size) : NULL;
    const char *sig = cert ? (const char *)take(&data, &size, TRUST_SIGNATURE_HEX_LEN) : NULL;
    if (!sig)
        return 0;

    struct trust_node_cert who;
    struct na_error *err = NULL;
    int ret =
        trust_node_message_check(cp_key, TRUST_ANNOUNCEMENT, cert, cert_size, sig,
                                 TRUST_SIGNATURE_HEX_LEN, data, size, 1795000000000, &who, &err);
    if (ret == 0 || !err || err->code != NA_CODE_UNAUTHENTICATED)
        __builtin_trap(); /* nothing here holds the control plane's private key */
    na_error_clear(&err);

    Nodeagent__V1__NodeAnnouncement *an =
        nodeagent__v1__node_announcement__unpack(NULL, size, data);
    if (!an)
        return 0;
    if (agent_announcement_check(an, key, k[0], &err) == 0) {
        /* What passes can be compared with a certificate, and named in a log line. */
        struct trust_node_cert other = {.node_id = "n1", .n_endpoints = 1};
        strcpy(other.endpoints[0], "192.0.2.1");
        int why = agent_announcement_matches_cert(an, &other, &err);
        if ((why >= 0) != (err != NULL))
            __builtin_trap();
        if (strlen(an->node_id) > 64)
            __builtin_trap();
    } else if (!err || !err->field) {
        __builtin_trap();
    }
    na_error_free(err);
    nodeagent__v1__node_announcement__free_unpacked(an, NULL);
    return 0;
}
