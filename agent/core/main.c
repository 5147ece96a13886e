/* nodeagent: the compute-node agent.  Parses the command line, loads the configuration,
 * and hands over to agent_run(). */
#include "agent/core/agent.h"
#include "agent/bus/identity.h"

#include <getopt.h>
#include <sys/stat.h>
#include <signal.h>
#include <string.h>

static void
usage(FILE *out)
{
    fprintf(out,
            "Usage: nodeagent [-c PATH] [--check-config]\n"
            "\n"
            "Runs this compute node's agent: takes instance requests from the bus topic\n"
            "<prefix>.node.<node_id>, records them durably, executes them, and publishes an\n"
            "event for each on <prefix>.events.  Serves /healthz, /metrics and /v1/... on the\n"
            "admin socket.\n"
            "\n"
            "  -c, --config PATH   configuration file (default %s)\n"
            "  -t, --check-config  load and validate the configuration and the keys it names\n"
            "                      (control plane key, node key and certificate), then exit;\n"
            "                      makes the node key when there is none yet\n"
            "  -V, --version       print the version and exit\n"
            "  -h, --help          print this help and exit\n"
            "\n"
            "Signals: SIGTERM or SIGINT stop gracefully (running work finishes, queued work\n"
            "stays recorded for the next start); SIGHUP reopens the log file.\n"
            "Every configuration key is documented in nodeagent.conf.sample.\n",
            AGENT_DEFAULT_CONFIG);
}

int
main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = AGENT_DEFAULT_CONFIG;
    bool check_only = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:tVh", options, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check_only = true;
            break;
        case 'V':
            printf("nodeagent %s\n", AGENT_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "nodeagent: unexpected argument `%s`\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    struct agent_config *cfg = NULL;
    cleanup_error struct na_error *err = NULL;
    if (agent_config_load(path, &cfg, &err) < 0) {
        fprintf(stderr, "nodeagent: %s\n", err->msg);
        return 1;
    }
    if (check_only) {
        struct agent_identity *id = NULL;
        int ret = agent_identity_load(cfg, true, &id, &err);
        if (ret < 0)
            fprintf(stderr, "nodeagent: %s\n", err->msg);
        else if (id->insecure)
            printf("%s: configuration is valid (node_id %s); WARNING: [bus] insecure_unsigned "
                   "= true: requests and announcements are not authenticated\n",
                   path, cfg->node_id);
        else
            printf("%s: configuration is valid (node_id %s, node key %s, certificate valid "
                   "until %lld ms)\n",
                   path, cfg->node_id, id->fingerprint, (long long)id->cert_info.not_after_ms);
        agent_identity_free(id);
        agent_config_free(cfg);
        return ret < 0 ? 1 : 0;
    }
    na_log_set_level(cfg->log_level);
    if (na_log_open(cfg->log_file, &err) < 0) {
        fprintf(stderr, "nodeagent: %s\n", err->msg);
        agent_config_free(cfg);
        return 1;
    }

    /* The worker pool's size is read once, when libuv first uses it. */
    char workers[16];
    snprintf(workers, sizeof(workers), "%u", cfg->workers);
    setenv("UV_THREADPOOL_SIZE", workers, 1);
    signal(SIGPIPE, SIG_IGN);
    /* state.db and logs stay private; what guests must read gets its mode explicitly. */
    umask(027);

    int status = agent_run(cfg);
    agent_config_free(cfg);
    return status;
}
