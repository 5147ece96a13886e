/* libFuzzer target for the qcow2 validator: the input is the image file.  It is written to
 * a memfd and validated three times, as a base image, as an overlay (backing file allowed),
 * with a small L2 scan budget so that large inputs stay fast, and as a raw image (which looks
 * for other formats' signatures at its start and in its last sector).
 * fuzz-sources: storage/qcow2/validate.c storage/qcow2/probe.c
 */
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "storage/qcow2/qcow2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_qcow2", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) {
            close(fd);
            return 0;
        }
        done += (size_t)n;
    }
    struct qcow2_limits limits;
    qcow2_limits_init(&limits);
    limits.max_l2_scan_size = 4u << 20;
    for (int backing = 0; backing < 2; backing++) {
        limits.allow_backing = backing;
        struct qcow2_info info;
        struct na_error *err = NULL;
        if (qcow2_validate(fd, &limits, &info, &err) < 0 && (!err || !err->msg))
            __builtin_trap(); /* every refusal carries a message */
        na_error_free(err);
    }
    struct qcow2_info info;
    struct na_error *err = NULL;
    if (qcow2_validate_raw(fd, &limits, &info, &err) < 0 && (!err || !err->msg))
        __builtin_trap();
    na_error_free(err);
    close(fd);
    return 0;
}
