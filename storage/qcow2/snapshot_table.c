/* The internal snapshots a qcow2 image lists in its snapshot table (qcow2.h): names and the
 * size of the VM state each keeps.  The file is written by a guest's QEMU, so every size
 * and offset is bounded before use. */
#include "storage/qcow2/qcow2-private.h"
#include "storage/qcow2/qcow2.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void
qcow2_snapshots_free(struct qcow2_snapshot *snaps, size_t n)
{
    for (size_t i = 0; snaps && i < n; i++)
        free(snaps[i].name);
    free(snaps);
}

static int
bad(struct na_error **err, const char *fmt, uint64_t value)
{
    return na_error_quiet(err, NA_CODE_STORAGE, EINVAL, "qcow2 snapshot table: %s %" PRIu64, fmt,
                          value);
}

static int
read_at(int fd, void *buf, size_t size, uint64_t off, uint64_t file_size, struct na_error **err)
{
    if (off > file_size || size > file_size - off)
        return bad(err, "entry past the end of the file at offset", off);
    size_t done = 0;
    while (done < size) {
        ssize_t n = pread(fd, (uint8_t *)buf + done, size - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return na_error_set(err, NA_CODE_STORAGE, n < 0 ? errno : EIO,
                                "qcow2 snapshot table: read at offset %" PRIu64, off + done);
        done += (size_t)n;
    }
    return 0;
}

/* One entry at *off: its name and VM state size; *off moves to the next. */
static int
read_entry(int fd, uint64_t *off, uint64_t file_size, struct qcow2_snapshot *out,
           struct na_error **err)
{
    uint8_t h[QCOW2_SN_HEADER_SIZE];
    int ret = read_at(fd, h, sizeof(h), *off, file_size, err);
    if (ret < 0)
        return ret;
    uint16_t id_size = qcow2_be16(h + QCOW2_SN_OFF_ID_STR_SIZE);
    uint16_t name_size = qcow2_be16(h + QCOW2_SN_OFF_NAME_SIZE);
    uint32_t extra = qcow2_be32(h + QCOW2_SN_OFF_EXTRA_DATA_SIZE);
    if (extra > QCOW2_MAX_SNAPSHOT_EXTRA_DATA)
        return bad(err, "extra_data_size", extra);
    out->date_s = qcow2_be32(h + 16);
    out->vm_state_size = qcow2_be32(h + 32);
    uint8_t x[QCOW2_MAX_SNAPSHOT_EXTRA_DATA];
    if (extra && (ret = read_at(fd, x, extra, *off + sizeof(h), file_size, err)) < 0)
        return ret;
    if (extra >= 8)
        out->vm_state_size = qcow2_be64(x); /* vm_state_size_large */
    out->name = na_xcalloc(1, (size_t)name_size + 1);
    ret = read_at(fd, out->name, name_size, *off + sizeof(h) + extra + id_size, file_size, err);
    if (ret < 0)
        return ret;
    out->name[strnlen(out->name, name_size)] = '\0';
    uint64_t used = sizeof(h) + (uint64_t)extra + id_size + name_size;
    *off += (used + 7) & ~7ull;
    return 0;
}

int
qcow2_snapshot_table(int fd, struct qcow2_snapshot **out, size_t *n, struct na_error **err)
{
    *out = NULL;
    *n = 0;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "qcow2 snapshot table: stat");
    uint64_t file_size = (uint64_t)st.st_size;
    uint8_t hdr[QCOW2_V2_HEADER_SIZE];
    int ret = read_at(fd, hdr, sizeof(hdr), 0, file_size, err);
    if (ret < 0)
        return ret;
    if (qcow2_be32(hdr + QCOW2_OFF_MAGIC) != QCOW2_MAGIC)
        return na_error_quiet(err, NA_CODE_STORAGE, EINVAL, "qcow2 snapshot table: not qcow2");
    uint32_t count = qcow2_be32(hdr + QCOW2_OFF_NB_SNAPSHOTS);
    if (count > QCOW2_MAX_SNAPSHOTS)
        return bad(err, "nb_snapshots", count);
    uint64_t start = qcow2_be64(hdr + QCOW2_OFF_SNAPSHOTS_OFFSET), off = start;
    struct qcow2_snapshot *snaps = na_xcalloc((size_t)count + 1, sizeof(*snaps));
    for (uint32_t i = 0; i < count; i++) {
        if (off - start > QCOW2_MAX_SNAPSHOTS_SIZE)
            ret = bad(err, "table larger than allowed at offset", off);
        else
            ret = read_entry(fd, &off, file_size, &snaps[i], err);
        if (ret < 0) {
            qcow2_snapshots_free(snaps, count);
            return ret;
        }
    }
    *out = snaps;
    *n = count;
    return 0;
}
