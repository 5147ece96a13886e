/* An instance's directory, <state_dir>/instances/<uuid>/, reached through descriptors.
 *
 * The directory is root's, mode 0711: the guest's QEMU (its own uid, libvirt's DAC label)
 * can search it and open its own files by name, but cannot list it, create, rename or
 * remove an entry in it.  So nothing a guest does can put a symlink, a FIFO or a hard link
 * under a name root later opens or libvirt relabels.  The files inside (disk 0600,
 * disk.config 0400) carry the guest's uid; they are created with openat(O_EXCL |
 * O_NOFOLLOW) on the directory's descriptor and given their owner with fchown/fchmod before
 * they are renamed into place (storage/qcow2's publish).  Directories an older agent left
 * owned by the guest are taken back at the agent's start and whenever they are opened.
 *
 * Threading: these are blocking file-system calls for workers; nothing here touches agent
 * state. */
#ifndef NODEAGENT_AGENT_INSTANCE_DIR_H
#define NODEAGENT_AGENT_INSTANCE_DIR_H

#include "common/common.h"

#include <sys/stat.h>

#define AGENT_INSTANCE_DIR_MODE 0711

/* Opens (creating it when create is set) the directory of instance uuid under
 * instances_dir without following a symlink, and makes it root's with mode 0711.
 * Returns the directory's descriptor (O_CLOEXEC). */
int agent_instance_dir_open(const char *instances_dir, const char *uuid, bool create,
                            struct na_error **err);

/* Makes an existing directory safe to hand to libvirt again, at the agent's start before any
 * request on the instance: takes it back (root:root 0711) and removes whatever sits under
 * disk, disk.config or console.log and is not a regular file (a symlink, FIFO or device
 * left while a guest could write the directory: virtlogd opens console.log as root, and
 * libvirt gives disk and disk.config to the guest's uid).  A missing directory is fine. */
int agent_instance_dir_secure(const char *instances_dir, const char *uuid, struct na_error **err);

/* Opens the regular file `name` in dirfd with flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
 * (a FIFO or a device never blocks the open) and checks with fstat that it is a regular
 * file owned by uid (any owner when uid is -1).  Returns the descriptor, -ENOENT when
 * there is no such entry, or another negative errno with err set (-ELOOP for a symlink,
 * -EPERM for another kind of file or owner). */
int agent_instance_file_open(int dirfd, const char *name, int flags, int64_t uid, struct stat *st,
                             struct na_error **err);

/* Removes the entry `name` of dirfd whatever it is (never following it); a missing entry is
 * fine. */
int agent_instance_entry_remove(int dirfd, const char *name, struct na_error **err);

#endif
