/* Growing an instance's disk.  Moving or growing the L1 table of an image a guest has
 * written is qemu-img's job: it runs with an argv array, never a shell. */
#include "storage/qcow2/qcow2.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

int
qcow2_grow(const char *path, uint64_t new_size, struct na_error **err)
{
    char size[32];
    snprintf(size, sizeof(size), "%llu", (unsigned long long)new_size);
    char *const argv[] = {"qemu-img", "resize",     "-q", "-f", "qcow2",
                          "--",       (char *)path, size, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    int e = posix_spawnp(&pid, "qemu-img", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e)
        return na_error_set(err, NA_CODE_STORAGE, e, "run qemu-img to grow `%s`", path);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return na_error_set(err, NA_CODE_STORAGE, errno, "wait for qemu-img");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return na_error_quiet(err, NA_CODE_STORAGE, EIO,
                              "qemu-img resize of `%s` to %s bytes failed (status %d)", path, size,
                              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
