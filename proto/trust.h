/* trust: who may say what on the bus (DESIGN.md section 12, docs/protocol.md "Signatures").
 *
 * Two kinds of signer, both Ed25519 (OpenSSL's EVP API):
 *   - the control plane signs requests (an Envelope's bytes) and node certificates;
 *   - each node signs its announcements and its migration peer messages, and sends with
 *     them its SignedNodeCertificate, which binds its node id, its public key, the tunnel
 *     endpoints it may announce and an expiry, under the control plane's signature.
 * Every signature covers a context string, its NUL and then the exact message bytes, so
 * that bytes signed for one purpose never verify for another (a node certificate is no
 * request, an announcement no peer message).  A receiver holds only the control plane's
 * public key; a node key therefore can never pass for the control plane.
 *
 * Key files are PEM (PKCS#8 private keys, SubjectPublicKeyInfo public keys), as
 * `openssl genpkey -algorithm ed25519` and Python's cryptography write them.  A private key
 * file that a group or others may read, or any key or certificate file that is not owned
 * by root (or the user running this) or that others may write, is refused.
 *
 * Pure functions of their inputs and files; thread-safe.  The agent, nodectl, the unit
 * tests and the fuzzers link it.
 */
#ifndef NODEAGENT_PROTO_TRUST_H
#define NODEAGENT_PROTO_TRUST_H

#include "common/common.h"

#include <openssl/evp.h>

/* Kafka headers, both lowercase hex so that any Kafka tool can set them: the signature (128
 * digits), and the sender's SignedNodeCertificate (its protobuf bytes) with node-signed
 * messages. */
#define TRUST_SIGNATURE_HEADER "nodeagent-signature"
#define TRUST_CERTIFICATE_HEADER "nodeagent-certificate"
#define TRUST_SIGNATURE_HEX_LEN 128
#define TRUST_PUBLIC_KEY_SIZE 32
/* How far a sender's clock may run ahead of the receiver's. */
#define TRUST_MAX_FUTURE_MS (60 * 1000)
#define TRUST_MAX_ENDPOINTS 16

/* What a signature is for; each has its own context string (trust.c). */
enum trust_purpose {
    TRUST_REQUEST,          /* control plane: an Envelope with a control-plane request */
    TRUST_PEER_MESSAGE,     /* node: an Envelope with a migration peer message */
    TRUST_ANNOUNCEMENT,     /* node: a NodeAnnouncement */
    TRUST_NODE_CERTIFICATE, /* control plane: a NodeCertificate */
};

/* The context string signed before the bytes ("nodeagent.v1.request", ...). */
const char *trust_purpose_context(enum trust_purpose purpose);

static inline void
trust_keyp(EVP_PKEY **k)
{
    EVP_PKEY_free(*k);
}
#define cleanup_pkey __attribute__((cleanup(trust_keyp)))

/* --- keys ------------------------------------------------------------------------------ */

/* A private key file, checked as above; what names the setting in errors ("[bus] node_key"). */
int trust_key_load_private(const char *path, const char *what, EVP_PKEY **out,
                           struct na_error **err);
/* A public key file (or, for convenience, a private key file: its public half). */
int trust_key_load_public(const char *path, const char *what, EVP_PKEY **out,
                          struct na_error **err);
/* A new key pair: the private key to priv_path (created 0600, never replacing a file) and,
 * when pub_path is not NULL, the public key beside it (0644, replaced). */
int trust_key_generate(const char *priv_path, const char *pub_path, EVP_PKEY **out,
                       struct na_error **err);
int trust_key_write_public(EVP_PKEY *key, const char *path, struct na_error **err);
/* Where a private key's public half goes by default: ".key" replaced by ".pub", or ".pub"
 * added (node.key -> node.pub).  The caller frees it. */
char *trust_public_path(const char *private_path);
/* The raw 32-byte public key. */
int trust_key_public_raw(EVP_PKEY *key, uint8_t out[TRUST_PUBLIC_KEY_SIZE], struct na_error **err);
/* The first 16 hex digits of the SHA-256 of the raw public key, for logs. */
void trust_key_fingerprint(const uint8_t pub[TRUST_PUBLIC_KEY_SIZE], char out[17]);

/* --- signatures ------------------------------------------------------------------------ */

/* Lowercase hex signature of data for purpose, NUL-terminated. */
int trust_sign_hex(EVP_PKEY *key, enum trust_purpose purpose, const uint8_t *data, size_t size,
                   char out[TRUST_SIGNATURE_HEX_LEN + 1], struct na_error **err);
/* Whether hex (hex_len characters, not NUL-terminated) is key's signature of data. */
bool trust_verify_hex(EVP_PKEY *key, enum trust_purpose purpose, const uint8_t *data, size_t size,
                      const char *hex, size_t hex_len);

/* --- node certificates ----------------------------------------------------------------- */

struct trust_node_cert {
    char node_id[65];
    uint8_t public_key[TRUST_PUBLIC_KEY_SIZE];
    char endpoints[TRUST_MAX_ENDPOINTS][16];
    size_t n_endpoints;
    int64_t not_before_ms;
    int64_t not_after_ms;
};

/* A SignedNodeCertificate for cert, signed with the control plane's private key; *out is
 * malloc'd.  INVALID_ARGUMENT naming the field when cert is not one a receiver would take. */
int trust_cert_issue(EVP_PKEY *cp_key, const struct trust_node_cert *cert, uint8_t **out,
                     size_t *size, struct na_error **err);
/* Decodes a SignedNodeCertificate and checks it: the control plane's signature, every
 * field, and that now_ms lies in its validity (not_before minus TRUST_MAX_FUTURE_MS).
 * UNAUTHENTICATED saying why otherwise. */
int trust_cert_check(EVP_PKEY *cp_pub, const uint8_t *data, size_t size, int64_t now_ms,
                     struct trust_node_cert *out, struct na_error **err);
/* Decodes without checking the signature or the time (for `nodectl node-cert show`). */
int trust_cert_decode(const uint8_t *data, size_t size, struct trust_node_cert *out,
                      struct na_error **err);
bool trust_cert_allows_endpoint(const struct trust_node_cert *cert, const char *endpoint);
/* A certificate file ([bus] node_cert), with the same ownership rules as a public key. */
int trust_cert_read_file(const char *path, const char *what, uint8_t **out, size_t *size,
                         struct na_error **err);

/* A node-signed message: the certificate (from TRUST_CERTIFICATE_HEADER) checked as by
 * trust_cert_check, then the signature (TRUST_SIGNATURE_HEADER) checked with the
 * certificate's key.  The caller still checks that the message names *out's node. */
int trust_node_message_check(EVP_PKEY *cp_pub, enum trust_purpose purpose, const uint8_t *cert,
                             size_t cert_size, const char *sig_hex, size_t sig_len,
                             const uint8_t *data, size_t size, int64_t now_ms,
                             struct trust_node_cert *out, struct na_error **err);

/* --- hex, for headers ------------------------------------------------------------------ */

/* Lowercase hex of data, NUL-terminated, malloc'd. */
char *trust_hex_encode(const uint8_t *data, size_t size);
/* Decodes len lowercase hex digits (not NUL-terminated) into a malloc'd *out; false when
 * hex is not that or longer than max_size bytes would need. */
bool trust_hex_decode(const char *hex, size_t len, size_t max_size, uint8_t **out, size_t *size);

#endif
