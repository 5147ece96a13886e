/* nodeagent-devbus: librdkafka's mock cluster as the embedded dev and test bus.
 *
 * Creates the cluster and the contract's topics, prints the bootstrap address as the first
 * line on stdout, then sleeps in a libuv loop that only wakes for signals and for the
 * optional fixed-port relay: SIGTERM/SIGINT stop it cleanly, SIGUSR1 takes every broker
 * down (a bus outage), SIGUSR2 brings them back.  The cluster lives in memory: a restart
 * loses topics and committed offsets.
 */
#include "common/common.h"
#include "tools/devbus/forward.h"

#include <errno.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <uv.h>

struct devbus_opts {
    int port; /* 0: print the mock's own bootstraps */
    int n_brokers;
    const char *prefix;
    const char **nodes;
    size_t n_nodes;
};

struct devbus {
    uv_loop_t *loop;
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mcluster;
    struct devbus_forward *fwd;
    uv_signal_t signals[4];
};

static const int handled_signals[] = {SIGTERM, SIGINT, SIGUSR1, SIGUSR2};

static void
usage(FILE *out)
{
    fprintf(out, "usage: nodeagent-devbus [--port N] [--brokers N] [--prefix P] [--node ID]...\n"
                 "\n"
                 "Runs librdkafka's mock Kafka cluster as the dev/test bus and prints its\n"
                 "bootstrap address as the first line on stdout.\n"
                 "\n"
                 "  --port N      listen on 127.0.0.1:N and relay to the first broker\n"
                 "  --brokers N   number of mock brokers (default 1)\n"
                 "  --prefix P    topic prefix (default nodeagent)\n"
                 "  --node ID     also create topic P.node.ID (repeatable)\n"
                 "  -h, --help    this text\n"
                 "\n"
                 "Always creates P.events, P.capacity and P.nodes (1 partition each).\n"
                 "Other topics are auto-created by the mock on first produce or metadata\n"
                 "request, with the mock's default of 4 partitions: list node topics with\n"
                 "--node to get the contract's single partition.\n"
                 "Consumer groups work; a member that rejoins a group waits for the old\n"
                 "member's session.timeout.ms (45 s by default), so tests should lower it.\n"
                 "Signals: TERM/INT stop, USR1 takes all brokers down, USR2 brings them up.\n");
}

static int
parse_int(const char *s, int min, int max, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -EINVAL;
    *out = (int)v;
    return 0;
}

/* Returns 0, 1 for --help, or -EINVAL after printing why. */
static int
parse_opts(int argc, char **argv, struct devbus_opts *o)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},   {"brokers", required_argument, NULL, 'b'},
        {"prefix", required_argument, NULL, 'P'}, {"node", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},         {0},
    };
    *o = (struct devbus_opts){.n_brokers = 1, .prefix = "nodeagent"};
    o->nodes = na_xcalloc((size_t)argc, sizeof(*o->nodes));
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (parse_int(optarg, 1, 65535, &o->port) < 0) {
                fprintf(stderr, "nodeagent-devbus: bad --port `%s`\n", optarg);
                return -EINVAL;
            }
            break;
        case 'b':
            if (parse_int(optarg, 1, 32, &o->n_brokers) < 0) {
                fprintf(stderr, "nodeagent-devbus: bad --brokers `%s` (1..32)\n", optarg);
                return -EINVAL;
            }
            break;
        case 'P':
            o->prefix = optarg;
            break;
        case 'n':
            o->nodes[o->n_nodes++] = optarg;
            break;
        case 'h':
            return 1;
        default:
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "nodeagent-devbus: unexpected argument `%s`\n", argv[optind]);
        return -EINVAL;
    }
    return 0;
}

static void
rdkafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    char q[1024];
    enum na_log_level l = level <= 3 ? NA_LOG_ERROR : level <= 4 ? NA_LOG_WARN : NA_LOG_DEBUG;
    na_log(l, NULL, "rdkafka", "facility=%s detail=%s", fac, na_log_quote(q, sizeof(q), buf));
}

struct topic_job {
    rd_kafka_mock_cluster_t *mcluster;
    char *name;
    int replicas;
    pthread_t thread;
    rd_kafka_resp_err_t result;
};

static void *
topic_job_run(void *arg)
{
    struct topic_job *job = arg;
    job->result = rd_kafka_mock_topic_create(job->mcluster, job->name, 1, job->replicas);
    return NULL;
}

/* Each rd_kafka_mock_topic_create() waits for the mock's thread, which in librdkafka 2.0.2
 * often only notices a request at its next 1 s poll timeout; asking for all topics at once
 * costs that second once instead of once per topic. */
static int
create_topics(struct devbus *bus, const struct devbus_opts *o, struct na_error **err)
{
    static const char *const fixed[] = {"events", "capacity", "nodes"};
    size_t n_jobs = NA_ARRAY_SIZE(fixed) + o->n_nodes;
    struct topic_job *jobs = na_xcalloc(n_jobs, sizeof(*jobs));
    int replicas = o->n_brokers < 3 ? o->n_brokers : 3;
    for (size_t i = 0; i < n_jobs; i++) {
        jobs[i].mcluster = bus->mcluster;
        jobs[i].replicas = replicas;
        jobs[i].name = i < NA_ARRAY_SIZE(fixed) ? na_xasprintf("%s.%s", o->prefix, fixed[i])
                                                : na_xasprintf("%s.node.%s", o->prefix,
                                                               o->nodes[i - NA_ARRAY_SIZE(fixed)]);
        if (pthread_create(&jobs[i].thread, NULL, topic_job_run, &jobs[i]) != 0)
            abort();
    }
    int rc = 0;
    for (size_t i = 0; i < n_jobs; i++) {
        pthread_join(jobs[i].thread, NULL);
        if (jobs[i].result)
            rc = na_error_set(err, NA_CODE_INTERNAL, 0, "create topic `%s`: %s", jobs[i].name,
                              rd_kafka_err2str(jobs[i].result));
        else
            NA_LOG_INFO(NULL, "topic created", "topic=%s partitions=1", jobs[i].name);
        free(jobs[i].name);
    }
    free(jobs);
    return rc;
}

static int
cluster_start(struct devbus *bus, const struct devbus_opts *o, struct na_error **err)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, rdkafka_log);
    bus->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!bus->rk) {
        rd_kafka_conf_destroy(conf);
        return na_error_set(err, NA_CODE_INTERNAL, 0, "rdkafka handle: %s", errstr);
    }
    bus->mcluster = rd_kafka_mock_cluster_new(bus->rk, o->n_brokers);
    if (!bus->mcluster)
        return na_error_set(err, NA_CODE_INTERNAL, 0, "cannot create the mock cluster");
    return create_topics(bus, o, err);
}

static void
cluster_stop(struct devbus *bus)
{
    if (bus->mcluster)
        rd_kafka_mock_cluster_destroy(bus->mcluster);
    if (bus->rk)
        rd_kafka_destroy(bus->rk);
    bus->mcluster = NULL;
    bus->rk = NULL;
}

static void
on_signal(uv_signal_t *h, int signum)
{
    struct devbus *bus = h->data;
    switch (signum) {
    case SIGUSR1: {
        rd_kafka_resp_err_t e = rd_kafka_mock_broker_set_down(bus->mcluster, -1);
        NA_LOG_WARN(NULL, "all brokers set down (bus outage)", "signal=USR1 result=\"%s\"",
                    rd_kafka_err2str(e));
        break;
    }
    case SIGUSR2: {
        rd_kafka_resp_err_t e = rd_kafka_mock_broker_set_up(bus->mcluster, -1);
        NA_LOG_INFO(NULL, "all brokers set up", "signal=USR2 result=\"%s\"", rd_kafka_err2str(e));
        break;
    }
    default:
        NA_LOG_INFO(NULL, "stopping", "signal=%s", signum == SIGTERM ? "TERM" : "INT");
        devbus_forward_stop(bus->fwd);
        bus->fwd = NULL;
        for (size_t i = 0; i < NA_ARRAY_SIZE(bus->signals); i++)
            uv_close((uv_handle_t *)&bus->signals[i], NULL);
        break;
    }
}

/* The first entry of the mock's comma-separated bootstrap list. */
static char *
first_broker(const char *bootstraps)
{
    return na_xstrndup(bootstraps, strcspn(bootstraps, ","));
}

static int
run(const struct devbus_opts *o, struct na_error **err)
{
    struct devbus bus = {0};
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc < 0)
        return na_error_set(err, NA_CODE_INTERNAL, -rc, "libuv loop");
    bus.loop = &loop;

    for (size_t i = 0; i < NA_ARRAY_SIZE(bus.signals); i++) {
        uv_signal_init(&loop, &bus.signals[i]);
        bus.signals[i].data = &bus;
        uv_signal_start(&bus.signals[i], on_signal, handled_signals[i]);
    }

    rc = cluster_start(&bus, o, err);
    const char *bootstraps = bus.mcluster ? rd_kafka_mock_cluster_bootstraps(bus.mcluster) : "";
    if (rc == 0 && o->port) {
        cleanup_free char *target = first_broker(bootstraps);
        rc = devbus_forward_start(&loop, o->port, target, &bus.fwd, err);
    }
    if (rc < 0) {
        for (size_t i = 0; i < NA_ARRAY_SIZE(bus.signals); i++)
            uv_close((uv_handle_t *)&bus.signals[i], NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        cluster_stop(&bus);
        return rc;
    }

    if (o->port)
        printf("127.0.0.1:%d\n", o->port);
    else
        printf("%s\n", bootstraps);
    fflush(stdout);
    NA_LOG_INFO(NULL, "devbus ready", "brokers=%s n_brokers=%d relay_port=%d prefix=%s", bootstraps,
                o->n_brokers, o->port, o->prefix);

    /* Returns once the stop signal closed every handle. */
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    cluster_stop(&bus);
    NA_LOG_INFO(NULL, "devbus stopped", NULL);
    return 0;
}

int
main(int argc, char **argv)
{
    struct devbus_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc != 0) {
        usage(rc > 0 ? stdout : stderr);
        free(o.nodes);
        return rc > 0 ? 0 : 2;
    }
    /* A client that vanishes mid-write must not kill the bus. */
    signal(SIGPIPE, SIG_IGN);

    cleanup_error struct na_error *err = NULL;
    rc = run(&o, &err);
    free(o.nodes);
    if (rc < 0) {
        NA_LOG_ERROR(NULL, "devbus failed", "error=\"%s\"", err ? err->msg : "unknown");
        return 1;
    }
    return 0;
}
