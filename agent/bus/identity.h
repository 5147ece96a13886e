/* Identity: the keys this agent trusts and signs with (DESIGN.md section 12).
 *
 * Inputs: [bus] control_plane_key (the control plane's Ed25519 public key), node_key (this
 * node's private key, generated at the first start when missing, with its public half
 * beside it as node.pub), node_cert (the node certificate the control plane issued for that
 * key) and insecure_unsigned.  Loaded once at start, before anything listens, and by
 * `nodeagent --check-config`; every check names the setting and file it is about.
 * Read-only afterwards: intake uses cp_key to authenticate requests, peers sign
 * announcements with node_key and send cert with them.
 */
#ifndef NODEAGENT_AGENT_IDENTITY_H
#define NODEAGENT_AGENT_IDENTITY_H

#include "agent/core/config.h"
#include "proto/trust.h"

struct agent_identity {
    bool insecure;      /* [bus] insecure_unsigned: nothing below is set */
    EVP_PKEY *cp_key;   /* the control plane's public key */
    EVP_PKEY *node_key; /* this node's private key */
    uint8_t *cert;      /* this node's SignedNodeCertificate */
    size_t cert_size;
    char *cert_hex; /* the same, as the nodeagent-certificate header carries it */
    struct trust_node_cert cert_info;
    char fingerprint[17]; /* of the node's public key, for logs */
};

/* Loads and checks everything above; with create_key, a missing node key is generated (the
 * agent at start and --check-config both do: a new node's first run makes its key).
 * The node certificate must be the control plane's, unexpired, for cfg->node_id and the
 * node key, and allow cfg->tunnel_endpoint. */
int agent_identity_load(const struct agent_config *cfg, bool create_key,
                        struct agent_identity **out, struct na_error **err);
void agent_identity_free(struct agent_identity *id);

/* A message signed by a node for purpose: the certificate and signature in its headers
 * checked against the control plane's key (trust_node_message_check).  *out is the
 * sender's certificate; UNAUTHENTICATED saying why otherwise. */
struct agent_bus_msg;
int agent_identity_check_node_message(const struct agent_identity *id, enum trust_purpose purpose,
                                      const struct agent_bus_msg *msg, struct trust_node_cert *out,
                                      struct na_error **err);

#endif
