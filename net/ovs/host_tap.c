/* The host's side of a guest's tap: no IPv6 there.
 *
 * A frame the guest sends comes out of its tap into the host's kernel as much as into Open
 * vSwitch: with IPv6 on the tap (the kernel's default), the host would take a guest's Router
 * Advertisement (a route, an address by autoconfiguration) and answer its Neighbor
 * Discovery and pings with an address of its own, around every flow of the bridge.  The host
 * has no business on a tenant network, so the tap's IPv6 is disabled
 * (net.ipv6.conf.<tap>.disable_ipv6 = 1: no address, nothing received by the host's IPv6
 * stack) as soon as the OVS thread sees the interface on the bridge, before the port's flows
 * go in (a create is RUNNING only after that).
 *
 * The tap lives in the network namespace of ovs-vswitchd, which reads it by name: the
 * sysctl is written there, from a short-lived thread that enters that namespace (the pid from
 * ovs-vswitchd's pid file), so that the OVS thread never changes its own.  In the usual setup
 * that is the agent's own namespace and the file is written directly.
 */
#include "net/ovs/ovs-private.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* An interface name that is safe as one path component under /proc/sys. */
static bool
ifname_ok(const char *name)
{
    size_t len = strlen(name);
    return len > 0 && len < IFNAMSIZ && !strchr(name, '/') && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

/* The network namespace of the process whose pid file is pidfile, opened; -1 with errno. */
static int
open_netns_of(const char *pidfile)
{
    FILE *f = fopen(pidfile, "re");
    if (!f)
        return -1;
    long pid = 0;
    int n = fscanf(f, "%ld", &pid);
    fclose(f);
    if (n != 1 || pid <= 0) {
        errno = EINVAL;
        return -1;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/ns/net", pid);
    return open(path, O_RDONLY | O_CLOEXEC);
}

static bool
same_netns(int fd)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat("/proc/thread-self/ns/net", &b) == 0 &&
           a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static int
write_sysctl(const char *ifname)
{
    char path[96];
    snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ifname);
    cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (write(fd, "1\n", 2) != 2)
        return errno ? -errno : -EIO;
    return 0;
}

struct in_netns {
    int netns;
    const char *ifname;
    int ret;
};

static void *
write_in_netns(void *arg)
{
    struct in_netns *job = arg;
    job->ret = setns(job->netns, CLONE_NEWNET) < 0 ? -errno : write_sysctl(job->ifname);
    return NULL;
}

int
ovs_net_tap_ipv6_off(const char *vswitchd_pidfile, const char *ifname, struct na_error **err)
{
    if (!ifname_ok(ifname))
        return na_error_quiet(err, NA_CODE_INVALID_ARGUMENT, EINVAL,
                              "interface name `%s` is not a Linux interface name", ifname);
    cleanup_close int netns = open_netns_of(vswitchd_pidfile);
    int ret;
    const char *where = "the agent's network namespace";
    if (netns < 0 || same_netns(netns)) {
        ret = write_sysctl(ifname);
    } else {
        where = "ovs-vswitchd's network namespace";
        struct in_netns job = {netns, ifname, 0};
        pthread_t t;
        int e = pthread_create(&t, NULL, write_in_netns, &job);
        if (e)
            return na_error_set(err, NA_CODE_INTERNAL, e, "a thread to enter %s", where);
        pthread_join(t, NULL);
        ret = job.ret;
    }
    if (ret < 0)
        return na_error_set(err, NA_CODE_NETWORK, -ret,
                            "cannot set net.ipv6.conf.%s.disable_ipv6 = 1 in %s", ifname, where);
    return 0;
}
