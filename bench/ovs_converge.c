/* bench/ovs_converge: one timed convergence of the integration bridge, by net/ovs or by
 * `ovs-ofctl add-flows`; bench/ovs_converge.py runs it round after round and writes the
 * report.
 *
 *   ovs_converge ours --ovsdb unix:DB --bridge BR --ports FILE [--rules N --members M]
 *       with --rules, first hands net/ovs BENCH_GROUPS security groups of N rules each
 *       (bench_groups below: half of them remote-group rules) with M member addresses each,
 *       port i in group i % BENCH_GROUPS (untimed); then starts net/ovs (its OVS thread connects to
 * the database and the bridge and installs the empty table: untimed), then times from
 * ovs_net_set_ports() with every port of FILE ("PORT_ID VNI MAC IP" a line) to ovs_net_wait_bound()
 * returning for all of them: the thread saw the interfaces, computed the whole table and
 * ovs-vswitchd took it in one bundle. ovs_converge peer --ofctl PATH --bridge-mgmt unix:MGMT
 * --flows FILE times `ovs-ofctl -O OpenFlow14 --bundle add-flows MGMT FILE`, started with
 *       posix_spawn (an argv array) and waited for.
 *
 * Prints the milliseconds on stdout.  Exit status 1 on failure, 2 on bad usage. */
#include "common/common.h"
#include "net/ovs/ovs.h"

#include <errno.h>
#include <getopt.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

#define CONNECT_TIMEOUT_MS 30000
#define BIND_TIMEOUT_MS 120000
#define MAX_PORTS 100000
#define BENCH_GROUPS 10

struct port_line {
    char id[64];
    unsigned vni;
    char mac[32];
    char ip[32];
    const char *ips[1];
};

static double
now_ms(void)
{
    return (double)na_mono_ns() / 1e6;
}

static int
usage(void)
{
    fprintf(stderr, "usage: ovs_converge ours --ovsdb unix:DB --bridge BR --ports FILE "
                    "[--rules N --members M]\n"
                    "       ovs_converge peer --ofctl PATH --bridge-mgmt unix:MGMT --flows FILE\n");
    return 2;
}

static struct port_line *
read_ports(const char *path, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "ovs_converge: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    struct port_line *lines = na_xcalloc(MAX_PORTS, sizeof(*lines));
    *n = 0;
    while (*n < MAX_PORTS) {
        struct port_line *l = &lines[*n];
        int got = fscanf(f, "%63s %u %31s %31s", l->id, &l->vni, l->mac, l->ip);
        if (got != 4)
            break;
        l->ips[0] = l->ip;
        (*n)++;
    }
    fclose(f);
    return lines;
}

/* BENCH_GROUPS groups of n_rules rules: even rules TCP from a CIDR to one port (i) or a
 * range of ten (i odd in the half), odd rules TCP from the next group's members to one
 * port; one egress rule; n_members addresses each.  Everything owned by the returned arrays
 * (freed by the caller with free_groups). */
static struct ovs_sg *
bench_groups(unsigned n_rules, unsigned n_members)
{
    struct ovs_sg *g = na_xcalloc(BENCH_GROUPS, sizeof(*g));
    for (unsigned k = 0; k < BENCH_GROUPS; k++) {
        struct ovs_sg_rule *r = na_xcalloc(n_rules + 1, sizeof(*r));
        for (unsigned i = 0; i < n_rules; i++) {
            uint16_t port = (uint16_t)(1000 + 20 * i);
            r[i] = (struct ovs_sg_rule){.protocol = 6, .port_min = port, .port_max = port};
            if (i == 0) {
                r[i] = (struct ovs_sg_rule){.egress = true};
            } else if (i % 2) {
                r[i].remote_group = na_xasprintf("sg%u", (k + 1) % BENCH_GROUPS);
            } else {
                r[i].remote_cidr = na_xasprintf("10.%u.0.0/16", 100 + i % 100);
                if (i % 4 == 0)
                    r[i].port_max = (uint16_t)(port + 9);
            }
        }
        char **m = na_xcalloc(n_members + 1, sizeof(*m));
        for (unsigned j = 0; j < n_members; j++)
            m[j] = na_xasprintf("10.%u.%u.%u", 200 + k, j / 250, j % 250 + 1);
        g[k] =
            (struct ovs_sg){na_xasprintf("sg%u", k), r, n_rules, (const char *const *)m, n_members};
    }
    return g;
}

static void
free_groups(struct ovs_sg *g)
{
    for (unsigned k = 0; g && k < BENCH_GROUPS; k++) {
        for (size_t i = 0; i < g[k].n_rules; i++) {
            free((char *)g[k].rules[i].remote_cidr);
            free((char *)g[k].rules[i].remote_group);
        }
        free((struct ovs_sg_rule *)g[k].rules);
        for (size_t j = 0; j < g[k].n_member_ips; j++)
            free((char *)g[k].member_ips[j]);
        free((char **)g[k].member_ips);
        free((char *)g[k].id);
    }
    free(g);
}

static const char *const group_names[BENCH_GROUPS][1] = {
    {"sg0"}, {"sg1"}, {"sg2"}, {"sg3"}, {"sg4"}, {"sg5"}, {"sg6"}, {"sg7"}, {"sg8"}, {"sg9"}};

static int
run_ours(const char *ovsdb, const char *bridge, const char *ports_path, unsigned n_rules,
         unsigned n_members)
{
    size_t n = 0;
    struct port_line *lines = read_ports(ports_path, &n);
    if (!lines || n == 0) {
        fprintf(stderr, "ovs_converge: no ports in %s\n", ports_path);
        free(lines);
        return 1;
    }
    struct ovs_net_port *ports = na_xcalloc(n, sizeof(*ports));
    const char **ids = na_xcalloc(n, sizeof(*ids));
    for (size_t i = 0; i < n; i++) {
        ports[i] = (struct ovs_net_port){lines[i].id, lines[i].vni, lines[i].mac, lines[i].ips, 1};
        if (n_rules) {
            ports[i].groups = group_names[i % BENCH_GROUPS];
            ports[i].n_groups = 1;
        }
        ids[i] = lines[i].id;
    }
    struct ovs_sg *groups = n_rules ? bench_groups(n_rules, n_members) : NULL;
    struct ovs_net_config cfg = {.ovsdb = ovsdb, .bridge = bridge, .datapath_type = "netdev"};
    struct ovs_net *net = NULL;
    cleanup_error struct na_error *err = NULL;
    int rc = 1;
    if (ovs_net_start(&cfg, &net, &err) < 0) {
        fprintf(stderr, "ovs_converge: %s\n", err->msg);
        goto out;
    }
    if (groups)
        ovs_net_set_security_groups(net, groups, BENCH_GROUPS);
    if (ovs_net_wait_converged(net, CONNECT_TIMEOUT_MS) < 0) {
        fprintf(stderr, "ovs_converge: the empty table was not installed in %d ms\n",
                CONNECT_TIMEOUT_MS);
        goto out;
    }
    double t0 = now_ms();
    ovs_net_set_ports(net, ports, n);
    if (ovs_net_wait_bound(net, ids, n, BIND_TIMEOUT_MS, &err) < 0) {
        fprintf(stderr, "ovs_converge: %s\n", err->msg);
        goto out;
    }
    printf("%.3f\n", now_ms() - t0);
    rc = 0;
out:
    ovs_net_stop(net);
    free_groups(groups);
    free(ids);
    free(ports);
    free(lines);
    return rc;
}

static int
run_peer(const char *ofctl, const char *mgmt, const char *flows)
{
    char *argv[] = {(char *)ofctl, "-O",         "OpenFlow14",  "--bundle",
                    "add-flows",   (char *)mgmt, (char *)flows, NULL};
    double t0 = now_ms();
    pid_t pid;
    int e = posix_spawn(&pid, ofctl, NULL, NULL, argv, environ);
    if (e) {
        fprintf(stderr, "ovs_converge: %s: %s\n", ofctl, strerror(e));
        return 1;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    double ms = now_ms() - t0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "ovs_converge: ovs-ofctl add-flows failed (status %d)\n", status);
        return 1;
    }
    printf("%.3f\n", ms);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *mode = argv[1];
    const char *ovsdb = NULL, *bridge = NULL, *ports = NULL, *ofctl = NULL, *mgmt = NULL,
               *flows = NULL;
    static const struct option opts[] = {{"ovsdb", required_argument, NULL, 'd'},
                                         {"bridge", required_argument, NULL, 'b'},
                                         {"ports", required_argument, NULL, 'p'},
                                         {"ofctl", required_argument, NULL, 'o'},
                                         {"bridge-mgmt", required_argument, NULL, 'm'},
                                         {"flows", required_argument, NULL, 'f'},
                                         {"rules", required_argument, NULL, 'r'},
                                         {"members", required_argument, NULL, 'n'},
                                         {NULL, 0, NULL, 0}};
    unsigned n_rules = 0, n_members = 0;
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            ovsdb = optarg;
            break;
        case 'b':
            bridge = optarg;
            break;
        case 'p':
            ports = optarg;
            break;
        case 'o':
            ofctl = optarg;
            break;
        case 'm':
            mgmt = optarg;
            break;
        case 'f':
            flows = optarg;
            break;
        case 'r':
            n_rules = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'n':
            n_members = (unsigned)strtoul(optarg, NULL, 10);
            break;
        default:
            return usage();
        }
    }
    if (strcmp(mode, "ours") == 0 && ovsdb && bridge && ports)
        return run_ours(ovsdb, bridge, ports, n_rules > 256 ? 256 : n_rules,
                        n_members > 4096 ? 4096 : n_members);
    if (strcmp(mode, "peer") == 0 && ofctl && mgmt && flows)
        return run_peer(ofctl, mgmt, flows);
    return usage();
}
