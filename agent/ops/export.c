/* snapshot_export: an instance's disk, as it is or at one of its snapshots, flattened into a
 * standalone image (storage/qcow2/export.h), then uploaded and/or published into the image
 * cache.  A job of three phases:
 *   flatten  the image is made in the cache's staging directory and hashed; its sha256,
 *            size and virtual size go into the job's state (redone after a crash: the
 *            staging file is made again);
 *   upload   PUT to the request's upload_url, when it has one (redone: a PUT replaces);
 *   publish  adopted into the image cache under its sha256 when asked, else removed
 *            (redone: an image already published stays).
 * The disk as it is is only consistent while no guest writes it: without a snapshot the
 * instance must be stopped.  The DONE event carries image_export. */
#include "agent/core/agent.h"
#include "agent/ops/instance_dir.h"
#include "agent/ops/jobs.h"
#include "agent/ops/ops.h"
#include "storage/qcow2/export.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S(x) NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_##x

static const Nodeagent__V1__SnapshotExportRequest *
request(const struct agent_op *op)
{
    return op->env->snapshot_export;
}

static bool
has_snapshot(const struct agent_op *op)
{
    const char *s = request(op)->snapshot_name;
    return s && s[0];
}

/* The staging file's name: one per request, so that a redone phase finds its own. */
static char *
staging_name(const struct agent_op *op)
{
    return na_xasprintf("export-%s.qcow2", op->request_id);
}

static int
prepare_export(struct agent *a, struct agent_op *op, struct na_error **err)
{
    int ret = agent_prepare_existing(a, op, err);
    if (ret < 0)
        return ret;
    if (!has_snapshot(op) && op->state_before != S(STOPPED))
        return na_error_quiet(err, NA_CODE_CONFLICT, EBUSY,
                              "instance %s is %s: its disk as it is can be exported only while "
                              "it is STOPPED; name a snapshot to export a running guest's disk",
                              op->instance, agent_state_name(op->state_before));
    return 0;
}

static int
export_flatten(struct agent_op *op, struct na_error **err)
{
    const struct agent_host *h = op->host;
    const Nodeagent__V1__Image *image = op->spec->image;
    agent_op_progress(op, 10, "flattening the disk%s%s", has_snapshot(op) ? " at snapshot " : "",
                      has_snapshot(op) ? request(op)->snapshot_name : "");
    cleanup_close int dirfd = agent_instance_dir_open(h->instances_dir, op->instance, false, err);
    if (dirfd < 0)
        return dirfd;
    cleanup_close int overlay = openat(dirfd, "disk", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (overlay < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "open the disk of instance %s",
                            op->instance);
    cleanup_close int staging =
        open(qcow2_image_cache_staging_dir(h->images), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (staging < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "open the image cache's staging dir");
    cleanup_free char *base = na_xasprintf("%s/%s", h->images_dir, image->sha256);
    struct qcow2_export_source src = {
        .overlay_fd = overlay,
        .base_path = base,
        .base_format =
            image->format == NODEAGENT__V1__IMAGE_FORMAT__IMAGE_FORMAT_RAW ? "raw" : "qcow2",
        .snapshot = has_snapshot(op) ? request(op)->snapshot_name : NULL,
        .guest_running = op->state_before != S(STOPPED),
    };
    struct qcow2_file_owner owner = {.uid = 0, .gid = 0, .mode = 0400};
    cleanup_free char *name = staging_name(op);
    struct qcow2_export made;
    int ret = qcow2_export_flatten(&src, staging, name, &owner,
                                   &qcow2_image_cache_settings(h->images)->limits, &made, err);
    if (ret < 0)
        return ret;
    char num[24];
    agent_job_state_put(op->job, "sha256", made.sha256);
    snprintf(num, sizeof(num), "%" PRIu64, made.size);
    agent_job_state_put(op->job, "size", num);
    snprintf(num, sizeof(num), "%" PRIu64, made.virtual_size);
    agent_job_state_put(op->job, "virtual_size", num);
    na_failpoint("snapshot_export.flattened");
    return 0;
}

static void
on_upload_progress(void *ctx, uint64_t sent, uint64_t total)
{
    struct agent_op *op = ctx;
    unsigned percent = total ? (unsigned)(40 + 50 * sent / total) : 90;
    agent_op_progress(op, percent, "uploaded %" PRIu64 " of %" PRIu64 " bytes", sent, total);
}

static int
export_upload(struct agent_op *op, struct na_error **err)
{
    const char *url = request(op)->upload_url;
    if (!url || !url[0])
        return 0;
    agent_op_progress(op, 40, "uploading the image");
    cleanup_free char *name = staging_name(op);
    cleanup_free char *path =
        na_xasprintf("%s/%s", qcow2_image_cache_staging_dir(op->host->images), name);
    cleanup_close int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "open the exported image");
    int ret = qcow2_export_upload(qcow2_image_cache_settings(op->host->images), fd, url,
                                  on_upload_progress, op, err);
    if (ret == 0)
        agent_job_state_put(op->job, "uploaded", "1");
    return ret;
}

static void
result_free(void *result)
{
    Nodeagent__V1__ImageExport *r = result;
    free(r->sha256);
    free(r);
}

/* The DONE event's image_export, from what the phases left in the job's state. */
static void
make_result(struct agent_op *op, bool published)
{
    char buf[80];
    Nodeagent__V1__ImageExport *r = na_xmalloc(sizeof(*r));
    nodeagent__v1__image_export__init(r);
    const char *sha = agent_job_state_get(op->job, "sha256", buf, sizeof(buf));
    r->sha256 = na_xstrdup(sha ? sha : "");
    const char *size = agent_job_state_get(op->job, "size", buf, sizeof(buf));
    r->size_bytes = size ? strtoull(size, NULL, 10) : 0;
    const char *vsize = agent_job_state_get(op->job, "virtual_size", buf, sizeof(buf));
    r->virtual_size_bytes = vsize ? strtoull(vsize, NULL, 10) : 0;
    r->uploaded = agent_job_state_get(op->job, "uploaded", buf, sizeof(buf)) != NULL;
    r->published = published;
    op->result = r;
    op->result_free = result_free;
}

static int
export_publish(struct agent_op *op, struct na_error **err)
{
    struct qcow2_image_cache *cache = op->host->images;
    cleanup_free char *name = staging_name(op);
    char sha[80];
    if (!agent_job_state_get(op->job, "sha256", sha, sizeof(sha)))
        return na_error_set(err, NA_CODE_INTERNAL, ENOENT, "the export's job lost its sha256");
    cleanup_free char *path = na_xasprintf("%s/%s", qcow2_image_cache_staging_dir(cache), name);
    cleanup_free char *published = na_xasprintf("%s/%s", op->host->images_dir, sha);
    bool publish = request(op)->publish;
    if (publish && access(path, F_OK) == 0) {
        agent_op_progress(op, 95, "publishing image %s into the image cache", sha);
        int ret = qcow2_image_cache_adopt(cache, name, sha, err);
        if (ret < 0)
            return ret;
    } else if (publish && access(published, F_OK) < 0) {
        return na_error_set(err, NA_CODE_STORAGE, ENOENT,
                            "the exported image is neither staged nor published");
    } else if (unlink(path) < 0 && errno != ENOENT) {
        return na_error_set(err, NA_CODE_STORAGE, errno, "remove the staged export");
    }
    make_result(op, publish);
    return 0;
}

/* A failed export leaves nothing staged. */
static void
export_rollback(struct agent_op *op)
{
    cleanup_free char *name = staging_name(op);
    cleanup_free char *path =
        na_xasprintf("%s/%s", qcow2_image_cache_staging_dir(op->host->images), name);
    unlink(path);
}

static int
finish_export(struct agent *a, struct agent_op *op, struct na_error **err)
{
    op->state = op->state_before;
    return agent_finish_power(a, op, err);
}

static void
event_export(const struct agent_op *op, Nodeagent__V1__Event *ev)
{
    ev->image_export = op->result;
}

static const struct agent_job_phase export_phases[] = {
    {"flatten", export_flatten, AGENT_JOB_REDO},
    {"upload", export_upload, AGENT_JOB_REDO},
    {"publish", export_publish, AGENT_JOB_REDO},
};
static const struct agent_job_kind export_job = {export_phases, NA_ARRAY_SIZE(export_phases),
                                                 export_rollback};

const struct agent_handler agent_handle_snapshot_export = {
    .prepare = prepare_export,
    .finish = finish_export,
    .job = &export_job,
    .event = event_export,
};
