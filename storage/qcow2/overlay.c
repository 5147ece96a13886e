/* Writing a qcow2 v3 overlay.
 *
 * The layout is the one qemu-img create uses, so that qemu-img check finds nothing to say:
 *   cluster 0   header, header extensions, backing file name
 *   cluster 1   refcount table (one entry used)
 *   cluster 2   refcount block (16-bit refcounts, covers 2 GiB of host file)
 *   cluster 3.. L1 table, all zero: every guest cluster reads through to the backing file
 * The file is built under a temporary name in the destination directory (opened on its
 * descriptor, never through a path) and renamed into place without replacing anything, so a
 * crash leaves either nothing or a complete image (plus, at worst, a stray
 * "<name>.XXXXXXXX" temp file). */
#include "storage/qcow2/qcow2.h"
#include "storage/qcow2/qcow2-private.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define OV_CLUSTER_BITS 16
#define OV_CLUSTER_SIZE (1u << OV_CLUSTER_BITS)
#define OV_REFTABLE_OFFSET (1ull * OV_CLUSTER_SIZE)
#define OV_REFBLOCK_OFFSET (2ull * OV_CLUSTER_SIZE)
#define OV_L1_OFFSET (3ull * OV_CLUSTER_SIZE)
/* Guest bytes mapped by one L1 entry: one L2 table of cluster_size / 8 clusters. */
#define OV_L1_ENTRY_SPAN ((uint64_t)OV_CLUSTER_SIZE * (OV_CLUSTER_SIZE / 8))

struct feature_name {
    uint8_t type; /* 0 incompatible, 1 compatible, 2 autoclear */
    uint8_t bit;
    const char *name;
};

static const struct feature_name feature_names[] = {
    {0, 0, "dirty bit"},        {0, 1, "corrupt bit"},         {0, 2, "external data file"},
    {0, 3, "compression type"}, {0, 4, "extended L2 entries"}, {1, 0, "lazy refcounts"},
    {2, 0, "bitmaps"},          {2, 1, "raw external data"},
};

static size_t
put_extension(uint8_t *p, uint32_t type, const void *data, uint32_t len)
{
    qcow2_put_be32(p, type);
    qcow2_put_be32(p + 4, len);
    if (len)
        memcpy(p + 8, data, len);
    return 8 + (((size_t)len + 7) & ~(size_t)7);
}

/* Fills the header cluster; returns the number of bytes used. */
static size_t
build_header(uint8_t *h, const char *backing_path, const char *backing_format,
             uint64_t virtual_size, uint32_t l1_size)
{
    qcow2_put_be32(h + QCOW2_OFF_MAGIC, QCOW2_MAGIC);
    qcow2_put_be32(h + QCOW2_OFF_VERSION, 3);
    qcow2_put_be32(h + QCOW2_OFF_CLUSTER_BITS, OV_CLUSTER_BITS);
    qcow2_put_be64(h + QCOW2_OFF_SIZE, virtual_size);
    qcow2_put_be32(h + QCOW2_OFF_CRYPT_METHOD, 0);
    qcow2_put_be32(h + QCOW2_OFF_L1_SIZE, l1_size);
    qcow2_put_be64(h + QCOW2_OFF_L1_TABLE_OFFSET, OV_L1_OFFSET);
    qcow2_put_be64(h + QCOW2_OFF_REFCOUNT_TABLE_OFFSET, OV_REFTABLE_OFFSET);
    qcow2_put_be32(h + QCOW2_OFF_REFCOUNT_TABLE_CLUSTERS, 1);
    qcow2_put_be32(h + QCOW2_OFF_NB_SNAPSHOTS, 0);
    qcow2_put_be64(h + QCOW2_OFF_SNAPSHOTS_OFFSET, 0);
    /* No features: lazy refcounts off, zlib compression (byte 104 stays 0). */
    qcow2_put_be32(h + QCOW2_OFF_REFCOUNT_ORDER, 4);
    qcow2_put_be32(h + QCOW2_OFF_HEADER_LENGTH, QCOW2_V3_HEADER_SIZE);

    size_t off = QCOW2_V3_HEADER_SIZE;
    off += put_extension(h + off, QCOW2_EXT_BACKING_FORMAT, backing_format,
                         (uint32_t)strlen(backing_format));
    uint8_t table[NA_ARRAY_SIZE(feature_names) * QCOW2_FEATURE_NAME_ENTRY_SIZE] = {0};
    for (size_t i = 0; i < NA_ARRAY_SIZE(feature_names); i++) {
        uint8_t *e = table + i * QCOW2_FEATURE_NAME_ENTRY_SIZE;
        e[0] = feature_names[i].type;
        e[1] = feature_names[i].bit;
        memcpy(e + 2, feature_names[i].name, strlen(feature_names[i].name));
    }
    off += put_extension(h + off, QCOW2_EXT_FEATURE_TABLE, table, sizeof(table));
    off += put_extension(h + off, QCOW2_EXT_END, NULL, 0);

    size_t name_size = strlen(backing_path);
    qcow2_put_be64(h + QCOW2_OFF_BACKING_FILE_OFFSET, off);
    qcow2_put_be32(h + QCOW2_OFF_BACKING_FILE_SIZE, (uint32_t)name_size);
    memcpy(h + off, backing_path, name_size);
    return off + name_size;
}

static int
pwrite_all(int fd, const void *buf, size_t size, uint64_t off, const char *path,
           struct na_error **err)
{
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(fd, (const uint8_t *)buf + done, size - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return na_error_set(err, NA_CODE_STORAGE, errno, "qcow2: write %s at offset %" PRIu64,
                                path, off + done);
        done += (size_t)n;
    }
    return 0;
}

static int
write_image(int fd, const char *tmp, const char *backing_path, const char *backing_format,
            uint64_t virtual_size, uint32_t l1_size, struct na_error **err)
{
    uint64_t l1_clusters = ((uint64_t)l1_size * 8 + OV_CLUSTER_SIZE - 1) / OV_CLUSTER_SIZE;
    uint64_t n_clusters = 3 + l1_clusters;
    int ret;

    /* The L1 table is the zeros ftruncate leaves. */
    if (ftruncate(fd, (off_t)(n_clusters * OV_CLUSTER_SIZE)) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "qcow2: truncate %s", tmp);

    cleanup_free uint8_t *buf = na_xcalloc(1, OV_CLUSTER_SIZE);
    size_t used = build_header(buf, backing_path, backing_format, virtual_size, l1_size);
    ret = pwrite_all(fd, buf, used, 0, tmp, err);
    if (ret < 0)
        return ret;

    uint8_t entry[8];
    qcow2_put_be64(entry, OV_REFBLOCK_OFFSET);
    ret = pwrite_all(fd, entry, sizeof(entry), OV_REFTABLE_OFFSET, tmp, err);
    if (ret < 0)
        return ret;

    /* Every cluster of the file is metadata in use once: header, tables, L1. */
    memset(buf, 0, OV_CLUSTER_SIZE);
    for (uint64_t i = 0; i < n_clusters; i++)
        qcow2_put_be16(buf + i * 2, 1);
    ret = pwrite_all(fd, buf, (size_t)n_clusters * 2, OV_REFBLOCK_OFFSET, tmp, err);
    if (ret < 0)
        return ret;

    return 0;
}

int
qcow2_overlay_create(int dirfd, const char *name, const struct qcow2_file_owner *owner,
                     const char *backing_path, const char *backing_format, uint64_t virtual_size,
                     struct na_error **err)
{
    if (!backing_format ||
        (strcmp(backing_format, "qcow2") != 0 && strcmp(backing_format, "raw") != 0))
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, EINVAL,
                            "qcow2: backing format \"%s\" is not qcow2 or raw",
                            backing_format ? backing_format : "");
    size_t name_size = backing_path ? strlen(backing_path) : 0;
    if (name_size == 0 || name_size > QCOW2_MAX_BACKING_FILE_SIZE)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, EINVAL,
                            "qcow2: backing file name of %zu bytes (allowed 1..%d)", name_size,
                            QCOW2_MAX_BACKING_FILE_SIZE);
    /* QEMU's L1 ceiling (32 MiB of entries) caps an image with 64 KiB clusters at 2 PiB. */
    uint64_t l1_size = virtual_size / OV_L1_ENTRY_SPAN + (virtual_size % OV_L1_ENTRY_SPAN != 0);
    if (virtual_size == 0 || l1_size * 8 > QCOW2_MAX_L1_SIZE)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, EINVAL,
                            "qcow2: overlay virtual size %" PRIu64 " outside 1..%" PRIu64,
                            virtual_size, (uint64_t)QCOW2_MAX_L1_SIZE / 8 * OV_L1_ENTRY_SPAN);

    cleanup_free char *tmp = NULL;
    cleanup_close int fd = qcow2_tmpfile_at(dirfd, name, &tmp, err);
    if (fd < 0)
        return fd;

    int ret =
        write_image(fd, tmp, backing_path, backing_format, virtual_size, (uint32_t)l1_size, err);
    if (ret == 0) {
        na_failpoint("qcow2.overlay.before_rename");
        ret = qcow2_publish_at(dirfd, fd, tmp, name, owner, false, err);
    }
    if (ret < 0)
        unlinkat(dirfd, tmp, 0);
    return ret;
}
