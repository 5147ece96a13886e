/* libFuzzer target: the agent's configuration parser (agent_config_parse: inih, the key
 * table, value checks, librdkafka's judgement of [bus.rdkafka] keys, custom traits and
 * allowed networks, defaults).  A config file is written by an operator, or by whatever
 * tool templates it; a mistake must be an error naming the line, never a crash.  Checks:
 * an error has a message that starts with the file name; a success has every default
 * filled in and values inside their declared ranges; freeing releases everything (ASan's
 * leak check).  The key files a config names are read by agent_config_load, not here.
 *
 * fuzz-sources: agent/core/config.c agent/core/config_secrets.c
 * fuzz-sources: scheduler-client/traits.c storage/qcow2/address.c
 * fuzz-pkgs: inih rdkafka
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NAME "fuzz.conf"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    struct agent_config *cfg = NULL;
    struct na_error *err = NULL;
    int ret = agent_config_parse(NAME, text, &cfg, &err);
    if ((ret < 0) != (err != NULL) || (ret < 0) != (cfg == NULL))
        __builtin_trap();
    if (ret < 0 && (!err->msg || strncmp(err->msg, NAME, strlen(NAME)) != 0) &&
        !strstr(err->msg, "default of"))
        __builtin_trap();
    if (cfg) {
        if (!cfg->node_id || !cfg->state_dir || !cfg->admin_socket || !cfg->node_key ||
            !cfg->node_cert || !cfg->virt_type || !cfg->cpu_mode || !cfg->topic_prefix)
            __builtin_trap();
        if (cfg->workers < 1 || cfg->workers > 128 || cfg->uid_max < cfg->uid_min)
            __builtin_trap();
        if (!(cfg->vcpu_allocation_ratio > 0 && cfg->vcpu_allocation_ratio <= 1000))
            __builtin_trap();
        if (cfg->hmac_key || cfg->admin_token)
            __builtin_trap(); /* parsing reads no file */
        if (strcmp(cfg->cpu_mode, "custom") == 0 && !cfg->cpu_model)
            __builtin_trap();
        if (cfg->n_image_allowed_networks && !cfg->image_allowed_networks)
            __builtin_trap();
    }
    agent_config_free(cfg);
    na_error_clear(&err);
    free(text);
    return 0;
}
