/* What the provisioning files share (provision.c: create and delete; respec.c: rebuild and
 * resize): an instance's file paths and the steps that write its disks and domain.  All of
 * them run in a worker with only the op and its host. */
#ifndef NODEAGENT_AGENT_OPS_PROVISION_PRIVATE_H
#define NODEAGENT_AGENT_OPS_PROVISION_PRIVATE_H

#include "agent/core/agent.h"
#include "agent/ops/ops.h"
#include "agent/ops/jobs.h"
#include "agent/observed/observed.h"
#include "agent/outputs/network.h"

#include <stdbool.h>

#define S(x) NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_##x
#define GIB (1024ULL * 1024 * 1024)

/* The files of one instance. */
struct instance_paths {
    char *dir;
    char *disk;
    char *config_drive;
    char *console_log;
};

void provision_paths_init(struct instance_paths *p, const struct agent_host *h, const char *uuid);
/* The overlay `name`, unless an earlier attempt already wrote it: an existing one is kept
 * only if it is a regular file of the guest's uid (never followed) on this base and size. */
int provision_make_disk(struct agent_op *op, int dirfd, const char *name, const char *base,
                        const char *base_format, struct na_error **err);
int provision_make_config_drive(struct agent_op *op, int dirfd, struct na_error **err);
int provision_define_domain(struct agent_op *op, const struct instance_paths *p, const char *base,
                            const char *base_format, struct na_error **err);
/* The domain XML of op's instance, as provision_define_domain() defines it. */
int provision_domain_xml(struct agent_op *op, const struct instance_paths *p, const char *base,
                         const char *base_format, char **xml, struct na_error **err);
/* Until each NIC's tap is on the bridge with its port's flows. */
int provision_wait_ports_bound(struct agent_op *op, struct na_error **err);
const char *provision_format_name(Nodeagent__V1__ImageFormat f);
/* The spec's image, in the cache (fetched once however many ask), and no larger than the
 * flavor's root disk; a refusal names field. */
int provision_fetch_base(struct agent_op *op, const char *field, char **base,
                         struct na_error **err);
/* Starts the domain when asked, then records the power state libvirt reports. */
int provision_start_and_read_state(struct agent_op *op, bool start, struct na_error **err);
/* The base image a job's first phase fetched, from the job's state. */
const char *provision_job_base(struct agent_op *op, char *buf, size_t size, struct na_error **err);
/* Whether the guest ran when the job began (the job keeps what it was then). */
bool provision_job_was_running(const struct agent_op *op);
void provision_paths_clear(struct instance_paths *p);
/* A new instance of spec (create, clone, an incoming migration), on the loop: checked
 * against the table (uuid, name, NICs, groups; refusals name fields under `field`), capacity
 * claimed, uid given, recorded as `observed` (BUILDING, MIGRATING).  The same request resumed
 * finds its own record. */
int provision_prepare_new(struct agent *a, struct agent_op *op,
                          const Nodeagent__V1__InstanceSpec *spec, const char *field,
                          Nodeagent__V1__InstanceState observed, struct na_error **err);
/* The create's phases after its disk, for the kinds that make a new instance: define (with
 * the disk and config drive checked again), start, bind; its rollback and its finish. */
int provision_create_define(struct agent_op *op, struct na_error **err);
int provision_create_start(struct agent_op *op, struct na_error **err);
int provision_create_bind(struct agent_op *op, struct na_error **err);
void provision_create_rollback(struct agent_op *op);
int provision_finish_create(struct agent *a, struct agent_op *op, struct na_error **err);
#define cleanup_paths __attribute__((cleanup(provision_paths_clear)))

#endif
