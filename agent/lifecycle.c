/* Power operations on an existing instance: start, stop, reboot, pause, resume, suspend,
 * and reading its console.  Each checks the instance's state on the loop, acts through
 * libvirt in a worker, and reports the power state libvirt has afterwards. */
#include "agent/agent.h"
#include "agent/instance_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#define S(x) NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_##x
#define CONSOLE_TAIL_DEFAULT (64 * 1024)

Nodeagent__V1__InstanceState
agent_state_from_power(enum hv_power power)
{
    switch (power) {
    case HV_POWER_RUNNING:
        return S(RUNNING);
    case HV_POWER_PAUSED:
        return S(PAUSED);
    case HV_POWER_SHUTOFF:
        return S(STOPPED);
    case HV_POWER_SUSPENDED:
        return S(SUSPENDED);
    case HV_POWER_CRASHED:
        return S(CRASHED);
    case HV_POWER_NONE:
        return S(ERROR);
    case HV_POWER_OTHER:
    default:
        return S(UNSPECIFIED);
    }
}

int
agent_prepare_existing(struct agent *a, struct agent_op *op, struct na_error **err)
{
    struct agent_instance *inst = agent_instances_find(&a->instances, op->instance);
    if (!inst)
        return na_error_quiet(err, NA_CODE_NOT_FOUND, ENOENT, "no instance %s on node %s",
                              op->instance, a->cfg->node_id);
    op->spec = agent_spec_copy(inst->spec);
    op->uid = inst->uid;
    op->state_before = op->state = inst->observed;
    inst->task = agent_request_kind_name(op->kind);
    return 0;
}

/* Fails unless the instance is in one of the states given (terminated by UNSPECIFIED). */
static int
require_state(struct agent_op *op, struct na_error **err, const char *hint, ...)
{
    va_list ap;
    va_start(ap, hint);
    int s;
    bool ok = false;
    while ((s = va_arg(ap, int)) != S(UNSPECIFIED))
        ok = ok || s == (int)op->state_before;
    va_end(ap);
    if (ok)
        return 0;
    return na_error_quiet(err, NA_CODE_CONFLICT, EBUSY, "instance %s is %s; %s", op->instance,
                          agent_state_name(op->state_before), hint);
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

static int
set_desired(struct agent *a, struct agent_op *op, Nodeagent__V1__InstanceState desired)
{
    struct agent_instance *inst = agent_instances_find(&a->instances, op->instance);
    if (inst)
        inst->desired = desired;
    return 0;
}

/* --- start ----------------------------------------------------------------------------- */

static int
prepare_start(struct agent *a, struct agent_op *op, struct na_error **err)
{
    int ret = agent_prepare_existing(a, op, err);
    if (ret == 0)
        ret = require_state(op, err, "it cannot be started", S(STOPPED), S(SUSPENDED), S(CRASHED),
                            S(RUNNING), S(UNSPECIFIED));
    return ret < 0 ? ret : set_desired(a, op, S(RUNNING));
}

static int
run_start(struct agent_op *op, struct na_error **err)
{
    int ret = hv_domain_start(op->host->hv, op->instance, err);
    if (ret < 0)
        return ret;
    na_failpoint("start.started");
    return read_power(op, err);
}

const struct agent_handler agent_handle_start = {prepare_start, run_start, agent_finish_power};

/* --- stop ------------------------------------------------------------------------------ */

static int
prepare_stop(struct agent *a, struct agent_op *op, struct na_error **err)
{
    int ret = agent_prepare_existing(a, op, err);
    if (ret == 0)
        ret = require_state(op, err, "resume it before stopping it, or delete it", S(RUNNING),
                            S(PAUSED), S(STOPPED), S(CRASHED), S(UNSPECIFIED));
    return ret < 0 ? ret : set_desired(a, op, S(STOPPED));
}

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

const struct agent_handler agent_handle_stop = {prepare_stop, run_stop, agent_finish_power};

/* --- reboot ---------------------------------------------------------------------------- */

static int
prepare_reboot(struct agent *a, struct agent_op *op, struct na_error **err)
{
    int ret = agent_prepare_existing(a, op, err);
    if (ret == 0)
        ret = require_state(op, err, "only a running instance can be rebooted; start it",
                            S(RUNNING), S(UNSPECIFIED));
    return ret < 0 ? ret : set_desired(a, op, S(RUNNING));
}

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

const struct agent_handler agent_handle_reboot = {prepare_reboot, run_reboot, agent_finish_power};

/* --- pause and resume ------------------------------------------------------------------ */

static int
prepare_pause(struct agent *a, struct agent_op *op, struct na_error **err)
{
    int ret = agent_prepare_existing(a, op, err);
    if (ret == 0)
        ret = require_state(op, err, "only a running instance can be paused", S(RUNNING), S(PAUSED),
                            S(UNSPECIFIED));
    return ret < 0 ? ret : set_desired(a, op, S(PAUSED));
}

static int
run_pause(struct agent_op *op, struct na_error **err)
{
    int ret = hv_domain_pause(op->host->hv, op->instance, err);
    if (ret < 0)
        return ret;
    na_failpoint("pause.paused");
    return read_power(op, err);
}

const struct agent_handler agent_handle_pause = {prepare_pause, run_pause, agent_finish_power};

static int
prepare_resume(struct agent *a, struct agent_op *op, struct na_error **err)
{
    int ret = agent_prepare_existing(a, op, err);
    if (ret == 0)
        ret = require_state(op, err, "only a paused or suspended instance can be resumed",
                            S(PAUSED), S(SUSPENDED), S(RUNNING), S(UNSPECIFIED));
    return ret < 0 ? ret : set_desired(a, op, S(RUNNING));
}

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

const struct agent_handler agent_handle_resume = {prepare_resume, run_resume, agent_finish_power};

/* --- suspend --------------------------------------------------------------------------- */

static int
prepare_suspend(struct agent *a, struct agent_op *op, struct na_error **err)
{
    int ret = agent_prepare_existing(a, op, err);
    if (ret == 0)
        ret = require_state(op, err, "only a running or paused instance can be suspended",
                            S(RUNNING), S(PAUSED), S(SUSPENDED), S(UNSPECIFIED));
    if (ret == 0)
        ret = agent_disk_room_check(a, "suspend", err);
    return ret < 0 ? ret : set_desired(a, op, S(SUSPENDED));
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
