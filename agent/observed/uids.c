#include "agent/observed/uids.h"
#include "agent/core/agent.h"
#include "agent/core/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* --- the choice -------------------------------------------------------------------------- */

static int
cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

static bool
sorted_has(const uint32_t *v, size_t n, uint32_t uid)
{
    return n > 0 && bsearch(&uid, v, n, sizeof(*v), cmp_u32) != NULL;
}

static bool
taken(const struct agent_uid_choice_in *in, uint32_t uid)
{
    return sorted_has(in->in_use, in->n_in_use, uid) ||
           (in->host_user && in->host_user(uid, in->ctx));
}

int
agent_uid_choose(const struct agent_uid_choice_in *in, uint32_t *out)
{
    /* Every uid ever released stays quarantined until it is handed out again: look them up
     * in a sorted copy, not by walking the list once per uid of the range. */
    cleanup_free uint32_t *released = na_xcalloc(in->n_quarantined + 1, sizeof(*released));
    for (size_t i = 0; i < in->n_quarantined; i++)
        released[i] = in->quarantined[i].uid;
    size_t n_released = na_u32_sort_unique(released, in->n_quarantined);

    /* A uid seen on a process or a file may be free after a later scan: worth waiting for. */
    bool waiting = false;
    for (uint64_t uid = in->min; uid <= in->max; uid++) {
        if (sorted_has(released, n_released, (uint32_t)uid) || taken(in, (uint32_t)uid))
            continue;
        if (sorted_has(in->busy, in->n_busy, (uint32_t)uid)) {
            waiting = true;
            continue;
        }
        *out = (uint32_t)uid;
        return 0;
    }
    const struct agent_uid_quarantined *best = NULL;
    for (size_t i = 0; i < in->n_quarantined; i++) {
        const struct agent_uid_quarantined *q = &in->quarantined[i];
        if (q->held || q->uid < in->min || q->uid > in->max || taken(in, q->uid))
            continue;
        if (!q->cleared || sorted_has(in->busy, in->n_busy, q->uid)) {
            waiting = true;
            continue;
        }
        if (!best || q->released_ms < best->released_ms ||
            (q->released_ms == best->released_ms && q->uid < best->uid))
            best = q;
    }
    if (best) {
        *out = best->uid;
        return 0;
    }
    return waiting ? -EAGAIN : -ENOSPC;
}

/* --- the quarantine ------------------------------------------------------------------- */

static struct agent_uid_quarantined *
quarantine_find(struct agent_uids *u, uint32_t uid)
{
    for (size_t i = 0; i < u->n_quarantined; i++)
        if (u->quarantined[i].uid == uid)
            return &u->quarantined[i];
    return NULL;
}

static struct agent_uid_quarantined *
quarantine_add(struct agent_uids *u, uint32_t uid)
{
    struct agent_uid_quarantined *q = quarantine_find(u, uid);
    if (q)
        return q;
    if (u->n_quarantined == u->cap) {
        u->cap = u->cap ? u->cap * 2 : 16;
        u->quarantined = na_xrealloc(u->quarantined, u->cap * sizeof(*u->quarantined));
    }
    q = &u->quarantined[u->n_quarantined++];
    *q = (struct agent_uid_quarantined){.uid = uid};
    return q;
}

static void
quarantine_remove(struct agent_uids *u, uint32_t uid)
{
    struct agent_uid_quarantined *q = quarantine_find(u, uid);
    if (q)
        *q = u->quarantined[--u->n_quarantined];
}

static int
load_one(int64_t uid, int64_t released_ms, bool held, void *ctx)
{
    struct agent_uids *u = ctx;
    if (uid < 0 || uid > UINT32_MAX)
        return 0;
    struct agent_uid_quarantined *q = quarantine_add(u, (uint32_t)uid);
    q->released_ms = released_ms;
    q->held = held;
    q->need_scan = 1; /* the first scan of this run */
    return 0;
}

int
agent_uids_open(struct agent *a, struct na_error **err)
{
    int ret = agent_store_uid_quarantine_load(a->store, load_one, a->uids, err);
    if (ret < 0)
        return ret;
    for (size_t i = 0; i < a->uids->n_quarantined; i++)
        if (a->uids->quarantined[i].held)
            na_log(NA_LOG_WARN, NULL,
                   "a guest uid is held: its instance could not be cleaned up; see "
                   "docs/operations.md",
                   "uid=%u", a->uids->quarantined[i].uid);
    agent_uids_scan(a);
    return 0;
}

void
agent_uids_close(struct agent_uids *u)
{
    free(u->quarantined);
    free(u->busy);
    *u = (struct agent_uids){0};
}

static bool
host_user(uint32_t uid, void *ctx)
{
    (void)ctx;
    return getpwuid((uid_t)uid) != NULL;
}

/* "70001, 70004 (held)": for the refusal's message. */
static char *
quarantine_list(const struct agent_uids *u)
{
    size_t size = 0;
    char *buf = NULL;
    FILE *f = open_memstream(&buf, &size);
    for (size_t i = 0; i < u->n_quarantined && i < 16; i++)
        fprintf(f, "%s%u%s", i ? ", " : "", u->quarantined[i].uid,
                u->quarantined[i].held ? " (held)" : "");
    if (u->n_quarantined > 16)
        fprintf(f, ", ...");
    fclose(f);
    return buf;
}

int
agent_uids_allocate(struct agent *a, int64_t *out, struct na_error **err)
{
    struct agent_uids *u = a->uids;
    cleanup_free uint32_t *in_use = na_xcalloc(a->instances.n + 1, sizeof(*in_use));
    size_t n_in_use = 0;
    for (size_t i = 0; i < a->instances.n; i++)
        if (a->instances.items[i]->uid >= 0 && a->instances.items[i]->uid <= UINT32_MAX)
            in_use[n_in_use++] = (uint32_t)a->instances.items[i]->uid;
    n_in_use = na_u32_sort_unique(in_use, n_in_use);
    struct agent_uid_choice_in in = {
        .min = a->cfg->uid_min,
        .max = a->cfg->uid_max,
        .in_use = in_use,
        .n_in_use = n_in_use,
        .busy = u->busy,
        .n_busy = u->n_busy,
        .quarantined = u->quarantined,
        .n_quarantined = u->n_quarantined,
        .host_user = host_user,
    };
    uint32_t uid;
    int ret = agent_uid_choose(&in, &uid);
    if (ret == -EAGAIN) {
        agent_uids_scan(a);
        cleanup_free char *list = quarantine_list(u);
        return na_error_quiet(err, NA_CODE_NO_CAPACITY, EAGAIN,
                              "no guest uid is free now in [instances] uid_min..uid_max "
                              "(%u..%u): the released ones stay in quarantine while a process "
                              "runs as them or a file has them (quarantined: %s)",
                              a->cfg->uid_min, a->cfg->uid_max, list ? list : "");
    }
    if (ret < 0) {
        cleanup_free char *list = quarantine_list(u);
        return na_error_quiet(err, NA_CODE_NO_CAPACITY, ENOSPC,
                              "no free uid for the guest in [instances] uid_min..uid_max "
                              "(%u..%u)%s%s",
                              a->cfg->uid_min, a->cfg->uid_max,
                              list && *list ? "; in quarantine: " : "", list ? list : "");
    }
    if (quarantine_find(u, uid)) {
        if ((ret = agent_store_uid_quarantine_delete(a->store, uid, err)) < 0)
            return ret;
        quarantine_remove(u, uid);
    }
    *out = uid;
    return 0;
}

int
agent_uids_release(struct agent *a, int64_t uid, bool held, struct na_error **err)
{
    if (uid < 0 || uid > UINT32_MAX)
        return 0;
    /* In quarantine here first: a failed write must not leave the uid free to hand out. */
    int64_t now = na_now_ms();
    struct agent_uid_quarantined *q = quarantine_add(a->uids, (uint32_t)uid);
    q->released_ms = now;
    q->held = q->held || held;
    q->cleared = false;
    q->need_scan = a->uids->scans_started + 1;
    na_log(held ? NA_LOG_WARN : NA_LOG_INFO, NULL,
           held ? "guest uid held: its instance could not be cleaned up"
                : "guest uid in quarantine",
           "uid=%lld", (long long)uid);
    agent_uids_scan(a);
    return agent_store_uid_quarantine_put(a->store, uid, now, q->held, err);
}

/* --- the scan (in a worker) --------------------------------------------------------------- */

struct scan_job {
    uv_work_t req;
    struct agent *agent;
    uint64_t number;
    uint32_t min, max;
    char *instances_dir;
    char *images_dir;
    uint32_t *found;
    size_t n_found, cap;
};

static void
scan_add(struct scan_job *j, uint64_t uid)
{
    if (uid < j->min || uid > j->max)
        return;
    if (j->n_found == j->cap) {
        j->cap = j->cap ? j->cap * 2 : 64;
        j->found = na_xrealloc(j->found, j->cap * sizeof(*j->found));
    }
    j->found[j->n_found++] = (uint32_t)uid;
}

/* Real, effective, saved and file-system uids of every process. */
static void
scan_processes(struct scan_job *j)
{
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        unsigned long pid = strtoul(e->d_name, &end, 10);
        if (pid == 0 || *end)
            continue;
        char path[64];
        snprintf(path, sizeof(path), "/proc/%lu/status", pid);
        FILE *f = fopen(path, "re");
        if (!f)
            continue; /* gone meanwhile */
        char line[256];
        while (fgets(line, sizeof(line), f)) {
            unsigned long long r, ef, s, fs;
            if (sscanf(line, "Uid:\t%llu\t%llu\t%llu\t%llu", &r, &ef, &s, &fs) == 4) {
                scan_add(j, r);
                scan_add(j, ef);
                scan_add(j, s);
                scan_add(j, fs);
                break;
            }
        }
        fclose(f);
    }
    closedir(d);
}

static __thread struct scan_job *tree_job;

static int
scan_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)path;
    (void)ftw;
    if (type != FTW_NS) /* FTW_NS: stat failed, st says nothing */
        scan_add(tree_job, st->st_uid);
    return 0;
}

static void
scan_work(uv_work_t *req)
{
    struct scan_job *j = req->data;
    scan_processes(j);
    tree_job = j;
    nftw(j->instances_dir, scan_entry, 16, FTW_PHYS | FTW_MOUNT);
    nftw(j->images_dir, scan_entry, 16, FTW_PHYS | FTW_MOUNT);
    tree_job = NULL;
    j->n_found = na_u32_sort_unique(j->found, j->n_found);
}

static void
scan_done(uv_work_t *req, int status)
{
    (void)status;
    struct scan_job *j = req->data;
    struct agent *a = j->agent;
    struct agent_uids *u = a->uids;
    free(u->busy);
    u->busy = na_steal(&j->found);
    u->n_busy = j->n_found;
    u->scanning = false;
    for (size_t i = 0; i < u->n_quarantined; i++) {
        struct agent_uid_quarantined *q = &u->quarantined[i];
        bool busy = sorted_has(u->busy, u->n_busy, q->uid);
        if (!q->cleared && !q->held && j->number >= q->need_scan && !busy) {
            q->cleared = true;
            na_log(NA_LOG_INFO, NULL, "guest uid out of quarantine: no process and no file has it",
                   "uid=%u", q->uid);
        }
    }
    free(j->instances_dir);
    free(j->images_dir);
    free(j);
    if (u->rescan && !a->stopping) {
        u->rescan = false;
        agent_uids_scan(a);
    }
}

bool
agent_uids_waiting(const struct agent_uids *u)
{
    for (size_t i = 0; i < u->n_quarantined; i++)
        if (!u->quarantined[i].held && !u->quarantined[i].cleared)
            return true;
    return false;
}

void
agent_uids_scan(struct agent *a)
{
    struct agent_uids *u = a->uids;
    if (u->scanning) {
        u->rescan = true;
        return;
    }
    if (a->stopping)
        return;
    struct scan_job *j = na_xcalloc(1, sizeof(*j));
    j->agent = a;
    j->number = ++u->scans_started;
    j->min = a->cfg->uid_min;
    j->max = a->cfg->uid_max;
    j->instances_dir = na_xstrdup(a->host.instances_dir);
    j->images_dir = na_xstrdup(a->host.images_dir);
    j->req.data = j;
    u->scanning = true;
    uv_queue_work(a->loop, &j->req, scan_work, scan_done);
}
