/* Power operations on an existing instance: start, stop, reboot, pause, resume, suspend,
 * and reading its console.  Each checks the instance's state on the loop, acts through
 * libvirt in a worker, and reports the power state libvirt has afterwards. */
#include "agent/core/agent.h"
#include "agent/ops/ops.h"
#include "agent/observed/observed.h"
#include "agent/ops/instance_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#define S(x) NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_##x
#define CONSOLE_TAIL_DEFAULT (64 * 1024)

int
agent_prepare_existing(struct agent *a, struct agent_op *op, struct na_error **err)
{
    struct agent_instance *inst = agent_instances_find(&a->instances, op->instance);
    if (!inst)
        return na_error_quiet(err, NA_CODE_NOT_FOUND, ENOENT, "no instance %s on node %s",
                              op->instance, a->cfg->node_id);
    if (!agent_request_allowed_from(op->kind, inst->observed)) {
        char from[128];
        agent_request_from_text(op->kind, from, sizeof(from));
        return na_error_quiet(err, NA_CODE_CONFLICT, EBUSY,
                              "instance %s is %s; `%s` is allowed only when it is %s", op->instance,
                              agent_state_name(inst->observed), agent_request_kind_name(op->kind),
                              from);
    }
    op->spec = agent_spec_copy(inst->spec);
    op->uid = inst->uid;
    op->state_before = op->state = inst->observed;
    inst->task = agent_request_kind_name(op->kind);
    return 0;
}

int
agent_finish_power(struct agent *a, struct agent_op *op, struct na_error **err)
{
    struct agent_instance *inst = agent_instances_find(&a->instances, op->instance);
    if (!inst)
        return 0;
    inst->task = NULL;
    if (op->state != S(UNSPECIFIED))
        inst->observed = op->state;
    return agent_instance_save(a->store, inst, err);
}

/* After an action: what libvirt says now. */
static int
read_power(struct agent_op *op, struct na_error **err)
{
    enum hv_power power;
    int ret = hv_domain_power(op->host->hv, op->instance, &power, err);
    if (ret == 0)
        op->state = agent_state_from_power(power);
    return ret;
}

/* --- start ----------------------------------------------------------------------------- */

static int
run_start(struct agent_op *op, struct na_error **err)
{
    int ret = hv_domain_start(op->host->hv, op->instance, err);
    if (ret < 0)
        return ret;
    na_failpoint("start.started");
    return read_power(op, err);
}

const struct agent_handler agent_handle_start = {agent_prepare_existing, run_start,
                                                 agent_finish_power};

/* --- stop ------------------------------------------------------------------------------ */

static int
run_stop(struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__StopRequest *req = op->env->stop;
    unsigned timeout = req->timeout_s ? req->timeout_s : op->host->cfg->stop_timeout_s;
    int ret = req->force ? hv_domain_destroy(op->host->hv, op->instance, err)
                         : hv_domain_shutdown(op->host->hv, op->instance, timeout, err);
    if (ret < 0)
        return ret;
    na_failpoint("stop.stopped");
    return read_power(op, err);
}

const struct agent_handler agent_handle_stop = {agent_prepare_existing, run_stop,
                                                agent_finish_power};

/* --- reboot ---------------------------------------------------------------------------- */

static int
run_reboot(struct agent_op *op, struct na_error **err)
{
    bool hard = op->env->reboot->type == NODEAGENT__V1__REBOOT_TYPE__REBOOT_TYPE_HARD;
    int ret = hv_domain_reboot(op->host->hv, op->instance, hard, err);
    if (ret < 0)
        return ret;
    na_failpoint("reboot.requested");
    return read_power(op, err);
}

const struct agent_handler agent_handle_reboot = {agent_prepare_existing, run_reboot,
                                                  agent_finish_power};

/* --- pause and resume ------------------------------------------------------------------ */

static int
run_pause(struct agent_op *op, struct na_error **err)
{
    int ret = hv_domain_pause(op->host->hv, op->instance, err);
    if (ret < 0)
        return ret;
    na_failpoint("pause.paused");
    return read_power(op, err);
}

const struct agent_handler agent_handle_pause = {agent_prepare_existing, run_pause,
                                                 agent_finish_power};

static int
run_resume(struct agent_op *op, struct na_error **err)
{
    /* A suspended (managed-saved) domain resumes by starting: libvirt restores it. */
    int ret = op->state_before == S(SUSPENDED) ? hv_domain_start(op->host->hv, op->instance, err)
                                               : hv_domain_resume(op->host->hv, op->instance, err);
    if (ret < 0)
        return ret;
    na_failpoint("resume.resumed");
    return read_power(op, err);
}

const struct agent_handler agent_handle_resume = {agent_prepare_existing, run_resume,
                                                  agent_finish_power};

/* --- suspend --------------------------------------------------------------------------- */

static int
prepare_suspend(struct agent *a, struct agent_op *op, struct na_error **err)
{
    int ret = agent_prepare_existing(a, op, err);
    return ret < 0 ? ret : agent_disk_room_check(a, "suspend", err);
}

static int
run_suspend(struct agent_op *op, struct na_error **err)
{
    int ret = hv_domain_managed_save(op->host->hv, op->instance, err);
    if (ret < 0)
        return ret;
    na_failpoint("suspend.saved");
    return read_power(op, err);
}

const struct agent_handler agent_handle_suspend = {prepare_suspend, run_suspend,
                                                   agent_finish_power};

/* --- console log ----------------------------------------------------------------------- */

/* The tail of console.log, read through one descriptor opened without following a
 * symlink and without blocking (a FIFO or a device under that name is refused, never
 * waited on). */
static int
run_console_log(struct agent_op *op, struct na_error **err)
{
    uint32_t want =
        op->env->console_log->tail_bytes ? op->env->console_log->tail_bytes : CONSOLE_TAIL_DEFAULT;
    cleanup_close int dirfd =
        agent_instance_dir_open(op->host->instances_dir, op->instance, false, err);
    if (dirfd == -ENOENT) {
        na_error_clear(err);
        return 0; /* nothing written yet */
    }
    if (dirfd < 0)
        return dirfd;
    struct stat st;
    cleanup_close int fd = agent_instance_file_open(dirfd, "console.log", O_RDONLY, -1, &st, err);
    if (fd == -ENOENT)
        return 0; /* nothing printed yet */
    if (fd < 0)
        return na_error_wrap(err, "console log of %s", op->instance);
    off_t start = st.st_size > (off_t)want ? st.st_size - (off_t)want : 0;
    size_t size = (size_t)(st.st_size - start);
    op->console_log = na_xmalloc(size ? size : 1);
    ssize_t n = pread(fd, op->console_log, size, start);
    if (n < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "read the console log of %s",
                            op->instance);
    op->console_log_size = (size_t)n;
    na_failpoint("console_log.read");
    return 0;
}

static int
finish_console_log(struct agent *a, struct agent_op *op, struct na_error **err)
{
    (void)err;
    struct agent_instance *inst = agent_instances_find(&a->instances, op->instance);
    if (inst)
        inst->task = NULL;
    return 0;
}

const struct agent_handler agent_handle_console_log = {agent_prepare_existing, run_console_log,
                                                       finish_console_log};
