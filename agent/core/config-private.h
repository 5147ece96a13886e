/* What the configuration's files share (config.c, config_secrets.c).  Not for other files. */
#ifndef NODEAGENT_AGENT_CORE_CONFIG_PRIVATE_H
#define NODEAGENT_AGENT_CORE_CONFIG_PRIVATE_H

#include "agent/core/config.h"

/* [bus] hmac_key_file into cfg->hmac_key: 16 to 4096 bytes. */
int config_read_key_file(struct agent_config *cfg, struct na_error **err);
/* [admin] token_file into cfg->admin_token: a regular file of root's that neither its group
 * nor others may read or write; its one line is the bearer token. */
int config_read_admin_token(struct agent_config *cfg, struct na_error **err);

#endif
