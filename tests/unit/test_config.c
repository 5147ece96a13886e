/* Config parsing: defaults, every kind of bad input refused with file, line and key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/core/config.h"
#include "storage/qcow2/qcow2.h"

#include <string.h>
#include <sys/stat.h>

static char *
write_temp(const char *text)
{
    char *path = na_xstrdup("/tmp/nodeagent-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static struct agent_config *
load_ok(const char *text)
{
    cleanup_free char *path = write_temp(text);
    struct agent_config *cfg = NULL;
    cleanup_error struct na_error *err = NULL;
    int ret = agent_config_load(path, &cfg, &err);
    if (ret < 0)
        fail_msg("unexpected error: %s", err->msg);
    unlink(path);
    return cfg;
}

/* Loads text, expects failure, and checks the message contains want (after "PATH:"). */
static void
load_fails(const char *text, const char *want)
{
    cleanup_free char *path = write_temp(text);
    struct agent_config *cfg = NULL;
    cleanup_error struct na_error *err = NULL;
    assert_true(agent_config_load(path, &cfg, &err) < 0);
    assert_null(cfg);
    assert_non_null(err);
    if (!strstr(err->msg, want) || strncmp(err->msg, path, strlen(path)) != 0)
        fail_msg("error `%s` does not start with the path or lacks `%s`", err->msg, want);
    unlink(path);
}

static void
test_defaults(void **state)
{
    (void)state;
    struct agent_config *cfg = load_ok("[agent]\nnode_id = n1\n");
    assert_string_equal(cfg->node_id, "n1");
    assert_string_equal(cfg->state_dir, "/var/lib/nodeagent");
    assert_string_equal(cfg->bootstrap_servers, "localhost:9092");
    assert_null(cfg->image_allowed_networks);
    assert_int_equal(cfg->n_image_allowed_networks, 0);
    assert_string_equal(cfg->topic_prefix, "nodeagent");
    assert_string_equal(cfg->admin_socket, "/run/nodeagent/admin.sock");
    assert_null(cfg->admin_listen);
    assert_null(cfg->hmac_key);
    assert_int_equal(cfg->workers, 16);
    assert_int_equal(cfg->shutdown_timeout_s, 30);
    assert_int_equal(cfg->log_level, NA_LOG_INFO);
    cleanup_free char *t = agent_topic_node(cfg, cfg->node_id);
    assert_string_equal(t, "nodeagent.node.n1");
    agent_config_free(cfg);
}

static void
test_full(void **state)
{
    (void)state;
    struct agent_config *cfg = load_ok("; comment\n"
                                       "[agent]\n"
                                       "node_id = compute-7.rack2\n"
                                       "state_dir = /srv/na\n"
                                       "log_level = debug\n"
                                       "workers = 16\n"
                                       "[bus]\n"
                                       "bootstrap_servers = k1:9093,k2:9093\n"
                                       "topic_prefix = prod\n"
                                       "[bus.rdkafka]\n"
                                       "security.protocol = ssl\n"
                                       "socket.timeout.ms = 30000\n"
                                       "[capacity]\n"
                                       "reserved_memory_mb = 2048\n"
                                       "vcpu_allocation_ratio = 16\n"
                                       "memory_allocation_ratio = 1.5\n"
                                       "custom_traits = CUSTOM_SSD,CUSTOM_RACK_A1  CUSTOM_GPU\n"
                                       "[placement]\n"
                                       "endpoint = http://placement:8778/\n"
                                       "token = admin\n"
                                       "manage_allocations = true\n"
                                       "[memory]\n"
                                       "ksm = true\n"
                                       "[admin]\n"
                                       "listen = 127.0.0.1:9100\n"
                                       "[image_cache]\n"
                                       "retries = 2\n"
                                       "[image_cache]\n"
                                       "allowed_networks = 127.0.0.0/8,10.1.2.3/32  fd00::/8\n");
    assert_string_equal(cfg->node_id, "compute-7.rack2");
    assert_int_equal(cfg->log_level, NA_LOG_DEBUG);
    assert_int_equal(cfg->workers, 16);
    assert_int_equal(cfg->n_rdkafka, 2);
    assert_string_equal(cfg->rdkafka[0].key, "security.protocol");
    assert_string_equal(cfg->rdkafka[1].value, "30000");
    assert_string_equal(cfg->admin_listen, "127.0.0.1:9100");
    assert_int_equal(cfg->reserved_memory_mb, 2048);
    assert_int_equal(cfg->reserved_vcpus, 0);
    assert_true(cfg->vcpu_allocation_ratio == 16.0);
    assert_true(cfg->memory_allocation_ratio == 1.5);
    assert_true(cfg->disk_allocation_ratio == 1.0);
    assert_int_equal(cfg->n_custom_traits, 3);
    assert_string_equal(cfg->custom_traits[0], "CUSTOM_SSD");
    assert_string_equal(cfg->custom_traits[1], "CUSTOM_RACK_A1");
    assert_string_equal(cfg->custom_traits[2], "CUSTOM_GPU");
    assert_string_equal(cfg->placement_endpoint, "http://placement:8778/");
    assert_string_equal(cfg->placement_token, "admin");
    assert_true(cfg->placement_manage_allocations);
    assert_true(cfg->ksm);
    assert_int_equal(cfg->report_interval_s, 60);
    assert_int_equal(cfg->image_retries, 2);
    assert_int_equal(cfg->n_image_allowed_networks, 3);
    assert_int_equal(cfg->image_allowed_networks[0].prefix_len, 104);
    assert_int_equal(cfg->image_allowed_networks[0].addr[12], 127);
    assert_int_equal(cfg->image_allowed_networks[1].prefix_len, 128);
    assert_int_equal(cfg->image_allowed_networks[1].addr[15], 3);
    assert_int_equal(cfg->image_allowed_networks[2].prefix_len, 8);
    assert_int_equal(cfg->image_allowed_networks[2].addr[0], 0xfd);
    agent_config_free(cfg);

    /* Empty: nothing allowed, as by default. */
    cfg = load_ok("[agent]\nnode_id = n1\n[image_cache]\nallowed_networks =\n");
    assert_int_equal(cfg->n_image_allowed_networks, 0);
    agent_config_free(cfg);
}

static void
test_bad_input(void **state)
{
    (void)state;
    load_fails("[agent]\nnode_id = n1\nbogus = 1\n", ":3: [agent] bogus: unknown key");
    load_fails("[agnet]\nnode_id = n1\n", ":2: [agnet] node_id: unknown section");
    load_fails("[capacity]\nvcpu_allocation_ratio = 0\n",
               "[capacity] vcpu_allocation_ratio: must be a number above 0");
    load_fails("[capacity]\nmemory_allocation_ratio = nan\n", "memory_allocation_ratio");
    load_fails("[capacity]\ndisk_allocation_ratio = 1.5x\n", "disk_allocation_ratio");
    load_fails("[capacity]\ncustom_traits = CUSTOM_OK, ssd\n",
               "[capacity] custom_traits: `ssd` is not a custom trait");
    load_fails("[capacity]\ncustom_traits = HW_CPU_X86_AVX2\n", "`HW_CPU_X86_AVX2`");
    load_fails("[image_cache]\nallowed_networks = 127.0.0.0/8, 10.0.0.1\n",
               "[image_cache] allowed_networks: `10.0.0.1` is not an address, '/' and a prefix "
               "length (want a CIDR such as 127.0.0.0/8 or fd00::/8)");
    load_fails("[image_cache]\nallowed_networks = 127.0.0.1/8\n",
               "`127.0.0.1/8` has bits set past its prefix length");
    load_fails("[image_cache]\nallowed_networks = fd00::/200\n",
               "`fd00::/200` has no prefix length from 0 to 128");
    load_fails("[image_cache]\nallowed_networks = example.com/32\n",
               "`example.com/32` does not start with an IPv4 or IPv6 address");
    load_fails("[image_cache]\nallowed_networks = 127.0.0.0/8\n[image_cache]\n"
               "allowed_networks = 10.0.0.0/8\n",
               "[image_cache] allowed_networks: given twice");
    load_fails("[placement]\nendpoint = ftp://x\n",
               "[placement] endpoint: must be an http:// or https:// URL");
    load_fails("[instances]\nksm = true\n", "[instances] ksm: unknown key");
    load_fails("[agent]\nworkers = 0\n", ":2: [agent] workers: must be a whole number from 1");
    load_fails("[agent]\nworkers = 4x\n", "[agent] workers: must be a whole number");
    load_fails("[agent]\nworkers = -1\n", "[agent] workers");
    load_fails("[agent]\nlog_level = loud\n", "[agent] log_level: must be one of");
    load_fails("[agent]\nstate_dir = relative/dir\n", "[agent] state_dir: must be an absolute");
    load_fails("[agent]\nnode_id = ../etc\n", "[agent] node_id: must be 1..64 characters");
    load_fails("[agent]\nnode_id = a/b\n", "[agent] node_id");
    load_fails("[agent]\nnode_id = a\nnode_id = b\n", ":3: [agent] node_id: given twice");
    load_fails("[bus.rdkafka]\nno.such.property = 1\n", ":2: [bus.rdkafka] no.such.property");
    load_fails("[bus.rdkafka]\nsocket.timeout.ms = many\n", "[bus.rdkafka] socket.timeout.ms");
    load_fails("[admin]\nlisten = 127.0.0.1\n", "[admin] listen: must be HOST:PORT");
    load_fails("[admin]\nlisten = 127.0.0.1:70000\n", "[admin] listen");
    load_fails("[agent]\nthis line has no equals sign\n", ":2: syntax error");
}

static void
test_missing_file(void **state)
{
    (void)state;
    struct agent_config *cfg = NULL;
    cleanup_error struct na_error *err = NULL;
    assert_true(agent_config_load("/nonexistent/nodeagent.conf", &cfg, &err) < 0);
    assert_non_null(strstr(err->msg, "/nonexistent/nodeagent.conf"));
}

static void
test_hmac_key(void **state)
{
    (void)state;
    cleanup_free char *key = write_temp("0123456789abcdef0123456789abcdef");
    cleanup_free char *text = na_xasprintf("[bus]\nhmac_key_file = %s\n", key);
    struct agent_config *cfg = load_ok(text);
    assert_int_equal(cfg->hmac_key_size, 32);
    assert_memory_equal(cfg->hmac_key, "0123456789abcdef", 16);
    agent_config_free(cfg);

    cleanup_free char *short_key = write_temp("short");
    cleanup_free char *text2 = na_xasprintf("[bus]\nhmac_key_file = %s\n", short_key);
    load_fails(text2, "the key must be 16 to 4096 bytes");
    unlink(key);
    unlink(short_key);
}

/* A path the agent cannot run without is never emptied: "state_dir =" once left it NULL
 * (found by tests/fuzz/fuzz_config). */
static void
test_empty_required_path(void **state)
{
    (void)state;
    load_fails("[agent]\nnode_id = n1\nstate_dir =\n", "[agent] state_dir: must not be empty");
    load_fails("[admin]\nsocket =\n", "[admin] socket: must not be empty");
    struct agent_config *cfg = load_ok("[agent]\nnode_id = n1\nlog_file =\n[bus]\nnode_key =\n");
    assert_null(cfg->log_file);
    assert_non_null(strstr(cfg->node_key, "/var/lib/nodeagent/node.key"));
    agent_config_free(cfg);
}

/* [admin] token_file: one line of token characters, in a file only its owner reads. */
static void
test_admin_token(void **state)
{
    (void)state;
    cleanup_free char *tok = write_temp("0123456789abcdef-token\n");
    chmod(tok, 0600);
    cleanup_free char *text = na_xasprintf("[admin]\ntoken_file = %s\n", tok);
    struct agent_config *cfg = load_ok(text);
    assert_int_equal(cfg->admin_token_size, 22);
    assert_memory_equal(cfg->admin_token, "0123456789abcdef-token", 22);
    agent_config_free(cfg);

    chmod(tok, 0640);
    load_fails(text, "has mode 0640");
    chmod(tok, 0604);
    load_fails(text, "has mode 0604");

    static const char *const bad[] = {"",
                                      "\n",
                                      "short\n",
                                      "0123456789abcdef\nsecond-line\n",
                                      "0123456789abcdef token\n",
                                      "0123456789abcdef\r\n"};
    for (size_t i = 0; i < NA_ARRAY_SIZE(bad); i++) {
        cleanup_free char *b = write_temp(bad[i]);
        chmod(b, 0600);
        cleanup_free char *t = na_xasprintf("[admin]\ntoken_file = %s\n", b);
        load_fails(t, "[admin] token_file");
        unlink(b);
    }
    cleanup_free char *dir = na_xasprintf("[admin]\ntoken_file = /tmp\n");
    load_fails(dir, "not a regular file");
    unlink(tok);
}

/* Every key of the table is documented in the sample, and the sample, uncommented,
 * loads (its example key file and TLS settings aside). */
static void
test_sample_is_complete(void **state)
{
    (void)state;
    FILE *f = fopen(NODEAGENT_SOURCE_DIR "/deploy/nodeagent.conf.sample", "r");
    assert_non_null(f);
    char line[512], section[64] = "";
    size_t text_size = 0;
    char *text = NULL;
    FILE *out = open_memstream(&text, &text_size);
    char documented[4096] = " ";
    while (fgets(line, sizeof(line), f)) {
        char key[128];
        if (sscanf(line, "[%63[^]]]", section) == 1) {
            fputs(line, out);
        } else if (sscanf(line, ";%127[a-z_.] =", key) == 1 && !strchr(line, '\'') &&
                   strcmp(section, "bus.rdkafka") != 0 && strcmp(key, "hmac_key_file") != 0 &&
                   strcmp(key, "token_file") != 0) {
            fputs(line + 1, out);
            strcat(documented, section);
            strcat(documented, ".");
            strcat(documented, key);
            strcat(documented, " ");
        }
    }
    fclose(f);
    fclose(out);
    strcat(documented, "bus.hmac_key_file admin.token_file ");
    char name[128], want[140];
    for (size_t i = 0; agent_config_key_name(i, name, sizeof(name)); i++) {
        snprintf(want, sizeof(want), " %s ", name);
        if (!strstr(documented, want))
            fail_msg("key %s is not documented in nodeagent.conf.sample", name);
    }
    struct agent_config *cfg = load_ok(text);
    agent_config_free(cfg);
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),    cmocka_unit_test(test_full),
        cmocka_unit_test(test_bad_input),   cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_hmac_key),    cmocka_unit_test(test_sample_is_complete),
        cmocka_unit_test(test_admin_token), cmocka_unit_test(test_empty_required_path),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
