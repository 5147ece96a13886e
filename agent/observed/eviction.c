/* Evicting unused cached images.
 *
 * An image is kept while anything may still read it: an instance's record names it (a create
 * or rebuild pins its new image from the moment it is accepted), or an overlay on disk backs
 * on it.  The overlays are read from the instance directories themselves, not from the
 * records, so the old base of a rebuild in progress, of a rebuild that failed half-way, or of
 * an orphan the store does not know, stays as long as the disk that needs it.  The
 * directory scan and the removal run in a worker.
 */
#include "agent/core/agent.h"
#include "agent/observed/observed.h"
#include "storage/qcow2/qcow2.h"

/* The overlays of one instance directory: its root disk and a rebuild's next one. */
static const char *const overlay_names[] = {"disk", "disk.next"};

struct evict_job {
    uv_work_t req;
    struct qcow2_image_cache *images;
    char *instances_dir;
    char **in_use; /* sha256 names */
    size_t n_in_use;
    int64_t max_age_s;
    int removed;
    struct na_error *err;
};

static void
add_in_use(struct evict_job *job, const char *sha256)
{
    job->in_use = na_xrealloc(job->in_use, (job->n_in_use + 1) * sizeof(*job->in_use));
    job->in_use[job->n_in_use++] = na_xstrdup(sha256);
}

static void
evict_work(uv_work_t *req)
{
    struct evict_job *job = req->data;
    qcow2_image_cache_backed_names(job->images, job->instances_dir, overlay_names,
                                   NA_ARRAY_SIZE(overlay_names), &job->in_use, &job->n_in_use);
    job->removed = qcow2_image_cache_evict(job->images, (const char *const *)job->in_use,
                                           job->n_in_use, job->max_age_s, &job->err);
}

static void
evict_done(uv_work_t *req, int status)
{
    (void)status;
    struct evict_job *job = req->data;
    if (job->err)
        na_log(NA_LOG_WARN, NULL, "evicting unused images failed", "error=\"%s\"", job->err->msg);
    else if (job->removed > 0)
        na_log(NA_LOG_INFO, NULL, "evicted unused images", "count=%d", job->removed);
    for (size_t i = 0; i < job->n_in_use; i++)
        free(job->in_use[i]);
    free(job->in_use);
    free(job->instances_dir);
    na_error_free(job->err);
    free(job);
}

void
agent_evict_images(struct agent *a)
{
    struct evict_job *job = na_xcalloc(1, sizeof(*job));
    job->images = a->host.images;
    job->instances_dir = na_xstrdup(a->host.instances_dir);
    job->max_age_s = a->cfg->image_max_unused_age_s;
    for (size_t i = 0; i < a->instances.n; i++)
        if (a->instances.items[i]->image_sha256 && *a->instances.items[i]->image_sha256)
            add_in_use(job, a->instances.items[i]->image_sha256);
    job->req.data = job;
    uv_queue_work(a->loop, &job->req, evict_work, evict_done);
}
