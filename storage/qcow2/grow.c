/* Growing an instance's disk.  Moving or growing the L1 table of an image a guest has
 * written is qemu-img's job: it runs with an argv array, never a shell, on the descriptor
 * the caller opened and checked (the child reaches it as /proc/self/fd/N), never on a
 * path, and with the backing chain left closed: the backing name in the header is the
 * guest's to write, and growing needs nothing from the base. */
#include "storage/qcow2/qcow2.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

/* The descriptor number the image has in qemu-img. */
#define GROW_CHILD_FD 3

int
qcow2_grow(int fd, uint64_t new_size, struct na_error **err)
{
    char size[32];
    snprintf(size, sizeof(size), "%llu", (unsigned long long)new_size);
    char image[160];
    snprintf(image, sizeof(image),
             "json:{\"driver\":\"qcow2\",\"backing\":null,\"file\":{\"driver\":\"file\","
             "\"filename\":\"/proc/self/fd/%d\"}}",
             GROW_CHILD_FD);
    char *const argv[] = {"qemu-img", "resize", "-q", "--", image, size, NULL};
    /* A copy above GROW_CHILD_FD, so that the child's dup2 is a real one and clears
     * close-on-exec on GROW_CHILD_FD whatever number fd has. */
    cleanup_close int copy = fcntl(fd, F_DUPFD_CLOEXEC, GROW_CHILD_FD + 1);
    if (copy < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "duplicate the disk's descriptor");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, copy, GROW_CHILD_FD);
    pid_t pid;
    int e = posix_spawnp(&pid, "qemu-img", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e)
        return na_error_set(err, NA_CODE_STORAGE, e, "run qemu-img to grow the disk");
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return na_error_set(err, NA_CODE_STORAGE, errno, "wait for qemu-img");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return na_error_quiet(err, NA_CODE_STORAGE, EIO,
                              "qemu-img resize of the disk to %s bytes failed (status %d)", size,
                              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
