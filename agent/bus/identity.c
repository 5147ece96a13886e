/* Identity: the control plane's key, this node's key and certificate.  See identity.h. */
#include "agent/bus/identity.h"
#include "agent/bus/bus.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

void
agent_identity_free(struct agent_identity *id)
{
    if (!id)
        return;
    EVP_PKEY_free(id->cp_key);
    EVP_PKEY_free(id->node_key);
    free(id->cert);
    free(id->cert_hex);
    free(id);
}

static int
load_node_key(const struct agent_config *cfg, bool create_key, struct agent_identity *id,
              struct na_error **err)
{
    cleanup_free char *pub = trust_public_path(cfg->node_key);
    struct stat st;
    if (create_key && lstat(cfg->node_key, &st) < 0 && errno == ENOENT) {
        int ret = trust_key_generate(cfg->node_key, pub, &id->node_key, err);
        if (ret < 0)
            return na_error_wrap(err, "[bus] node_key: generate this node's key");
        na_log(NA_LOG_WARN, NULL,
               "generated this node's key; the control plane must issue its certificate",
               "node_key=%s public_key=%s", cfg->node_key, pub);
        return 0;
    }
    int ret = trust_key_load_private(cfg->node_key, "[bus] node_key", &id->node_key, err);
    if (ret == -ENOENT)
        na_error_wrap(err,
                      "%s: this node has no key yet; the agent makes one at its first "
                      "start",
                      cfg->path);
    if (ret == 0 && lstat(pub, &st) < 0 && errno == ENOENT && create_key)
        ret = trust_key_write_public(id->node_key, pub, err);
    return ret;
}

/* What to do when there is no node certificate yet. */
static char *
issue_cert_hint(const struct agent_config *cfg)
{
    cleanup_free char *pub = trust_public_path(cfg->node_key);
    return na_xasprintf("have the control plane issue one for the public key `%s` (nodectl "
                        "node-cert issue --node-id %s --public-key %s%s%s --cert-out %s)",
                        pub, cfg->node_id, pub, cfg->tunnel_endpoint ? " --endpoint " : "",
                        cfg->tunnel_endpoint ? cfg->tunnel_endpoint : "", cfg->node_cert);
}

static int
load_cert(const struct agent_config *cfg, struct agent_identity *id, struct na_error **err)
{
    int ret =
        trust_cert_read_file(cfg->node_cert, "[bus] node_cert", &id->cert, &id->cert_size, err);
    if (ret == -ENOENT) {
        cleanup_free char *hint = issue_cert_hint(cfg);
        return na_error_wrap(err, "%s: no node certificate; %s", cfg->path, hint);
    }
    if (ret < 0)
        return ret;
    struct trust_node_cert *c = &id->cert_info;
    if ((ret = trust_cert_check(id->cp_key, id->cert, id->cert_size, na_now_ms(), c, err)) < 0)
        return na_error_wrap(err, "%s: [bus] node_cert `%s`", cfg->path, cfg->node_cert);
    uint8_t raw[TRUST_PUBLIC_KEY_SIZE];
    if ((ret = trust_key_public_raw(id->node_key, raw, err)) < 0)
        return ret;
    trust_key_fingerprint(raw, id->fingerprint);
    id->cert_hex = trust_hex_encode(id->cert, id->cert_size);
    if (strcmp(c->node_id, cfg->node_id) != 0)
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                            "%s: [bus] node_cert `%s` is for node `%s`, not for this node `%s`",
                            cfg->path, cfg->node_cert, c->node_id, cfg->node_id);
    if (memcmp(c->public_key, raw, sizeof(raw)) != 0) {
        char theirs[17];
        trust_key_fingerprint(c->public_key, theirs);
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                            "%s: [bus] node_cert `%s` certifies the key %s, not this node's "
                            "key %s (`%s`)",
                            cfg->path, cfg->node_cert, theirs, id->fingerprint, cfg->node_key);
    }
    if (cfg->tunnel_endpoint && !trust_cert_allows_endpoint(c, cfg->tunnel_endpoint))
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                            "%s: [network] tunnel_endpoint %s is not among the endpoints that "
                            "[bus] node_cert `%s` allows",
                            cfg->path, cfg->tunnel_endpoint, cfg->node_cert);
    return 0;
}

/* With no control plane key, the rest of what the operator must provide, so that the first
 * --check-config names all of it: the node's key is made (with create_key) and, when there
 * is no node certificate yet, "; [bus] node_cert ...: how to get one".  NULL when the
 * certificate is there (it is checked once the key is set). */
static char *
next_steps_without_cp_key(const struct agent_config *cfg, bool create_key,
                          struct agent_identity *id)
{
    cleanup_error struct na_error *key_err = NULL;
    if (load_node_key(cfg, create_key, id, &key_err) < 0)
        return na_xasprintf("; %s", key_err->msg);
    struct stat st;
    if (lstat(cfg->node_cert, &st) == 0 || errno != ENOENT)
        return NULL;
    cleanup_free char *hint = issue_cert_hint(cfg);
    return na_xasprintf("; [bus] node_cert `%s` does not exist yet: %s", cfg->node_cert, hint);
}

int
agent_identity_load(const struct agent_config *cfg, bool create_key, struct agent_identity **out,
                    struct na_error **err)
{
    struct agent_identity *id = na_xcalloc(1, sizeof(*id));
    int ret = 0;
    if (cfg->insecure_unsigned) {
        id->insecure = true;
        if (cfg->control_plane_key)
            ret = na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                               "%s: [bus] insecure_unsigned = true and [bus] control_plane_key "
                               "exclude each other: choose one",
                               cfg->path);
    } else if (!cfg->control_plane_key) {
        cleanup_free char *next = next_steps_without_cp_key(cfg, create_key, id);
        ret = na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                           "%s: [bus] control_plane_key is not set: the agent needs the control "
                           "plane's Ed25519 public key to authenticate requests and node "
                           "certificates (or [bus] insecure_unsigned = true, which lets anyone "
                           "who can write to the bus control this node)%s",
                           cfg->path, next ? next : "");
    } else if ((ret = trust_key_load_public(cfg->control_plane_key, "[bus] control_plane_key",
                                            &id->cp_key, err)) < 0) {
        na_error_wrap(err, "%s", cfg->path);
    } else if ((ret = load_node_key(cfg, create_key, id, err)) == 0) {
        ret = load_cert(cfg, id, err);
    }
    if (ret < 0) {
        agent_identity_free(id);
        return ret;
    }
    *out = id;
    return 0;
}

int
agent_identity_check_node_message(const struct agent_identity *id, enum trust_purpose purpose,
                                  const struct agent_bus_msg *msg, struct trust_node_cert *out,
                                  struct na_error **err)
{
    const struct agent_bus_headers *h = &msg->headers;
    cleanup_free uint8_t *cert = NULL;
    size_t cert_size = 0;
    if (h->certificate &&
        !trust_hex_decode(h->certificate, h->certificate_len, 64 * 1024, &cert, &cert_size))
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0, "its %s header is not lowercase hex",
                            TRUST_CERTIFICATE_HEADER);
    return trust_node_message_check(id->cp_key, purpose, h->certificate ? cert : NULL, cert_size,
                                    h->signature, h->signature_len, msg->payload, msg->size,
                                    na_now_ms(), out, err);
}
