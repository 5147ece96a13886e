/* Validation of untrusted qcow2 and raw images.
 *
 * The order follows what later checks depend on: the fixed header, then the header
 * extensions (which may carry the data file or encryption we refuse), then the placement of
 * each table (L1, refcount table, snapshot table), and last their entries, read in bounded
 * windows so that a hostile image cannot make us allocate or read more than QEMU's own
 * ceilings allow.  Every sum or product of on-disk values is checked for overflow. */
#include "storage/qcow2/qcow2.h"
#include "storage/qcow2/qcow2-private.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>

#define READ_WINDOW_SIZE (256u << 10)

struct range {
    const char *what;
    uint64_t start;
    uint64_t end; /* exclusive; start == end means absent */
};

/* What the header says, once read. */
struct img {
    int fd;
    const struct qcow2_limits *limits;
    uint64_t file_size;
    uint32_t version;
    uint32_t cluster_bits;
    uint64_t cluster_size;
    uint32_t l2_entry_size; /* 8, or 16 with extended L2 entries */
    uint64_t incompat;
    uint64_t compat;
    struct range header, l1, reftable, snapshots;
    uint32_t l1_size;
    uint32_t nb_snapshots;
};

/* A window over the file, refilled on demand, so tables are read in chunks. */
struct reader {
    const struct img *im;
    uint8_t *buf;
    uint64_t start;
    size_t n;
};

static int NA_PRINTF(3, 4) refuse(struct na_error **err, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cleanup_free char *text = na_xvasprintf(fmt, ap);
    va_end(ap);
    na_error_quiet(err, NA_CODE_IMAGE, status, "qcow2: %s", text);
    return -status;
}

/* Reads exactly size bytes at off; a short read means the file changed under us. */
static int
pread_exact(int fd, void *buf, size_t size, uint64_t off, struct na_error **err)
{
    size_t done = 0;
    while (done < size) {
        ssize_t n = pread(fd, (uint8_t *)buf + done, size - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return na_error_set(err, NA_CODE_STORAGE, errno,
                                "qcow2: read %zu bytes at offset %" PRIu64, size - done,
                                off + done);
        if (n == 0)
            return na_error_set(err, NA_CODE_STORAGE, EIO,
                                "qcow2: short read at offset %" PRIu64 " (file truncated?)",
                                off + done);
        done += (size_t)n;
    }
    return 0;
}

static int
reader_get(struct reader *r, uint64_t off, size_t size, const uint8_t **out, const char *what,
           struct na_error **err)
{
    uint64_t end;
    if (size > READ_WINDOW_SIZE || __builtin_add_overflow(off, size, &end) ||
        end > r->im->file_size)
        return refuse(err, EINVAL,
                      "%s at offset %" PRIu64 " (%zu bytes) lies past the end of the file (%" PRIu64
                      " bytes)",
                      what, off, size, r->im->file_size);
    if (!r->buf)
        r->buf = na_xmalloc(READ_WINDOW_SIZE);
    if (off < r->start || end > r->start + r->n) {
        uint64_t left = r->im->file_size - off;
        size_t want = left < READ_WINDOW_SIZE ? (size_t)left : READ_WINDOW_SIZE;
        r->n = 0;
        int ret = pread_exact(r->im->fd, r->buf, want, off, err);
        if (ret < 0)
            return ret;
        r->start = off;
        r->n = want;
    }
    *out = r->buf + (off - r->start);
    return 0;
}

static void
reader_fini(struct reader *r)
{
    free(r->buf);
    r->buf = NULL;
}

static bool
ranges_overlap(const struct range *a, const struct range *b)
{
    return a->start < a->end && b->start < b->end && a->start < b->end && b->start < a->end;
}

/* A metadata table must start on a cluster boundary after the header cluster, and lie
 * entirely inside the file. */
static int
check_table(const struct img *im, const char *what, const char *field, uint64_t off, uint64_t size,
            struct range *out, struct na_error **err)
{
    uint64_t end;
    if (off & (im->cluster_size - 1))
        return refuse(err, EINVAL,
                      "%s offset %" PRIu64 " (%s) is not aligned to the cluster size %" PRIu64,
                      what, off, field, im->cluster_size);
    if (off < im->cluster_size)
        return refuse(err, EINVAL, "%s offset %" PRIu64 " (%s) overlaps the header cluster", what,
                      off, field);
    if (__builtin_add_overflow(off, size, &end) || end > im->file_size)
        return refuse(err, EINVAL,
                      "%s at offset %" PRIu64 " (%s), %" PRIu64
                      " bytes, extends past the end of the file (%" PRIu64 " bytes)",
                      what, off, field, size, im->file_size);
    if (out)
        *out = (struct range){what, off, end};
    return 0;
}

static int
check_no_overlap(const struct range *a, const struct range *b, struct na_error **err)
{
    if (!ranges_overlap(a, b))
        return 0;
    return refuse(err, EINVAL,
                  "%s [%" PRIu64 ", %" PRIu64 ") overlaps %s [%" PRIu64 ", %" PRIu64 ")", a->what,
                  a->start, a->end, b->what, b->start, b->end);
}

/* Copies an on-disk string that must not contain NUL bytes. */
static int
copy_name(char *dst, size_t dst_size, const uint8_t *src, size_t len, const char *what,
          uint64_t off, struct na_error **err)
{
    if (len == 0 || len >= dst_size)
        return refuse(err, EINVAL, "%s at offset %" PRIu64 " has length %zu (allowed 1..%zu)", what,
                      off, len, dst_size - 1);
    if (memchr(src, '\0', len))
        return refuse(err, EINVAL, "%s at offset %" PRIu64 " contains a NUL byte", what, off);
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}

/* Header extensions run from the end of the header to the backing file name, or to the end
 * of the header cluster; bytes past the end of the file read as zero, as in QEMU. */
static int
read_extensions(struct img *im, const uint8_t *hdr, uint64_t start, uint64_t end,
                struct qcow2_info *out, struct na_error **err)
{
    uint64_t off = start;
    while (off < end) {
        if (end - off < 8)
            return refuse(err, EINVAL,
                          "header extension at offset %" PRIu64
                          " runs past the end of the header area (%" PRIu64 ")",
                          off, end);
        uint32_t type = qcow2_be32(hdr + off);
        uint32_t len = qcow2_be32(hdr + off + 4);
        uint64_t data = off + 8;
        if (len > end - data)
            return refuse(err, EINVAL,
                          "header extension 0x%08" PRIx32 " at offset %" PRIu64
                          " has length %" PRIu32 ", past the end of the header area (%" PRIu64 ")",
                          type, off, len, end);
        switch (type) {
        case QCOW2_EXT_END:
            return 0;
        case QCOW2_EXT_DATA_FILE:
            return refuse(err, ENOTSUP,
                          "external data file header extension (0x%08" PRIx32 ") at offset %" PRIu64
                          ": images must hold their own data",
                          type, off);
        case QCOW2_EXT_CRYPTO:
            return refuse(err, ENOTSUP,
                          "full disk encryption header extension (0x%08" PRIx32
                          ") at offset %" PRIu64 ": encrypted images are not supported",
                          type, off);
        case QCOW2_EXT_BACKING_FORMAT:
            if (len > QCOW2_MAX_BACKING_FORMAT_SIZE)
                return refuse(err, EINVAL,
                              "backing format extension at offset %" PRIu64 " has length %" PRIu32
                              " (at most %d)",
                              off, len, QCOW2_MAX_BACKING_FORMAT_SIZE);
            if (im->limits->allow_backing) {
                int ret = copy_name(out->backing_format, sizeof(out->backing_format), hdr + data,
                                    len, "backing format", data, err);
                if (ret < 0)
                    return ret;
            }
            break;
        default:
            /* Feature names, bitmaps and unknown extensions change nothing QEMU reads for us. */
            break;
        }
        off = data + (((uint64_t)len + 7) & ~7ull);
    }
    return 0;
}

static int
check_features(struct img *im, const uint8_t *hdr, uint32_t header_length, struct na_error **err)
{
    uint64_t unknown = im->incompat & ~QCOW2_INCOMPAT_KNOWN;
    if (unknown)
        return refuse(err, ENOTSUP,
                      "unknown incompatible feature bits 0x%" PRIx64 " (header offset %d)", unknown,
                      QCOW2_OFF_INCOMPATIBLE_FEATURES);
    if (im->incompat & QCOW2_INCOMPAT_CORRUPT)
        return refuse(err, EINVAL,
                      "image is marked corrupt (incompatible feature bit 1): its metadata was "
                      "found inconsistent");
    if (im->incompat & QCOW2_INCOMPAT_DATA_FILE)
        return refuse(err, ENOTSUP,
                      "image uses an external data file (incompatible feature bit 2): images "
                      "must hold their own data");

    uint8_t ctype = QCOW2_COMPRESSION_ZLIB;
    if (header_length > QCOW2_OFF_COMPRESSION_TYPE)
        ctype = hdr[QCOW2_OFF_COMPRESSION_TYPE];
    if (ctype != QCOW2_COMPRESSION_ZLIB && ctype != QCOW2_COMPRESSION_ZSTD)
        return refuse(err, ENOTSUP, "unknown compression type %u at offset %d", ctype,
                      QCOW2_OFF_COMPRESSION_TYPE);
    bool bit = im->incompat & QCOW2_INCOMPAT_COMPRESSION;
    if (bit != (ctype != QCOW2_COMPRESSION_ZLIB))
        return refuse(err, EINVAL,
                      "compression type %u at offset %d disagrees with incompatible feature "
                      "bit 3 (%s)",
                      ctype, QCOW2_OFF_COMPRESSION_TYPE, bit ? "set" : "clear");

    if (im->incompat & QCOW2_INCOMPAT_EXTL2) {
        if (im->cluster_bits < QCOW2_EXTL2_MIN_CLUSTER_BITS)
            return refuse(err, EINVAL, "extended L2 entries need cluster_bits >= %d, have %" PRIu32,
                          QCOW2_EXTL2_MIN_CLUSTER_BITS, im->cluster_bits);
        im->l2_entry_size = 16;
    }
    return 0;
}

static int
read_header(struct img *im, struct qcow2_info *out, struct na_error **err)
{
    uint8_t fixed[QCOW2_V3_MIN_HEADER_SIZE] = {0};
    if (im->file_size < QCOW2_V2_HEADER_SIZE)
        return refuse(err, EINVAL,
                      "file of %" PRIu64 " bytes is too small for a qcow2 header (%d bytes)",
                      im->file_size, QCOW2_V2_HEADER_SIZE);
    size_t n = im->file_size < sizeof(fixed) ? (size_t)im->file_size : sizeof(fixed);
    int ret = pread_exact(im->fd, fixed, n, 0, err);
    if (ret < 0)
        return ret;

    uint32_t magic = qcow2_be32(fixed + QCOW2_OFF_MAGIC);
    if (magic != QCOW2_MAGIC)
        return refuse(err, EINVAL, "bad magic 0x%08" PRIx32 " at offset 0 (want 0x%08x)", magic,
                      QCOW2_MAGIC);
    im->version = qcow2_be32(fixed + QCOW2_OFF_VERSION);
    if (im->version != 2 && im->version != 3)
        return refuse(err, ENOTSUP, "version %" PRIu32 " at offset %d is not 2 or 3", im->version,
                      QCOW2_OFF_VERSION);
    im->cluster_bits = qcow2_be32(fixed + QCOW2_OFF_CLUSTER_BITS);
    if (im->cluster_bits < QCOW2_MIN_CLUSTER_BITS || im->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
        return refuse(err, EINVAL, "cluster_bits %" PRIu32 " at offset %d outside %d..%d",
                      im->cluster_bits, QCOW2_OFF_CLUSTER_BITS, QCOW2_MIN_CLUSTER_BITS,
                      QCOW2_MAX_CLUSTER_BITS);
    im->cluster_size = 1ull << im->cluster_bits;
    im->l2_entry_size = 8;

    uint32_t header_length = QCOW2_V2_HEADER_SIZE;
    uint32_t refcount_order = 4;
    if (im->version == 3) {
        if (im->file_size < QCOW2_V3_MIN_HEADER_SIZE)
            return refuse(err, EINVAL,
                          "file of %" PRIu64 " bytes is too small for a version 3 header (%d)",
                          im->file_size, QCOW2_V3_MIN_HEADER_SIZE);
        header_length = qcow2_be32(fixed + QCOW2_OFF_HEADER_LENGTH);
        if (header_length < QCOW2_V3_MIN_HEADER_SIZE || header_length % 8 ||
            header_length > im->cluster_size || header_length > im->file_size)
            return refuse(err, EINVAL,
                          "header_length %" PRIu32 " at offset %d: must be a multiple of 8 "
                          "between %d and the cluster size %" PRIu64 ", within the file",
                          header_length, QCOW2_OFF_HEADER_LENGTH, QCOW2_V3_MIN_HEADER_SIZE,
                          im->cluster_size);
        refcount_order = qcow2_be32(fixed + QCOW2_OFF_REFCOUNT_ORDER);
        if (refcount_order > 6)
            return refuse(err, EINVAL, "refcount_order %" PRIu32 " at offset %d is above 6",
                          refcount_order, QCOW2_OFF_REFCOUNT_ORDER);
        im->incompat = qcow2_be64(fixed + QCOW2_OFF_INCOMPATIBLE_FEATURES);
        im->compat = qcow2_be64(fixed + QCOW2_OFF_COMPATIBLE_FEATURES);
    }

    /* The whole header cluster, zero-padded past the end of the file. */
    cleanup_free uint8_t *hdr = na_xcalloc(1, im->cluster_size);
    uint64_t hdr_read = im->file_size < im->cluster_size ? im->file_size : im->cluster_size;
    ret = pread_exact(im->fd, hdr, (size_t)hdr_read, 0, err);
    if (ret < 0)
        return ret;

    if (im->version == 3) {
        ret = check_features(im, hdr, header_length, err);
        if (ret < 0)
            return ret;
    }

    uint32_t crypt = qcow2_be32(hdr + QCOW2_OFF_CRYPT_METHOD);
    if (crypt != 0)
        return refuse(err, ENOTSUP,
                      "crypt_method %" PRIu32 " at offset %d: encrypted images are not supported",
                      crypt, QCOW2_OFF_CRYPT_METHOD);

    uint64_t backing_off = qcow2_be64(hdr + QCOW2_OFF_BACKING_FILE_OFFSET);
    uint32_t backing_size = qcow2_be32(hdr + QCOW2_OFF_BACKING_FILE_SIZE);
    uint64_t ext_end = im->cluster_size;
    if (backing_off || backing_size) {
        if (!im->limits->allow_backing)
            return refuse(err, ENOTSUP,
                          "image has a backing file (backing_file_offset %" PRIu64
                          ", backing_file_size %" PRIu32 "): base images must be self-contained",
                          backing_off, backing_size);
        if (backing_size == 0 || backing_size > QCOW2_MAX_BACKING_FILE_SIZE ||
            backing_off < header_length || backing_off > im->cluster_size ||
            backing_off + backing_size > hdr_read) /* both bounded: no overflow */
            return refuse(err, EINVAL,
                          "backing file name at offset %" PRIu64 ", %" PRIu32
                          " bytes, is not inside the header cluster after the header",
                          backing_off, backing_size);
        ret = copy_name(out->backing_file, sizeof(out->backing_file), hdr + backing_off,
                        backing_size, "backing file name", backing_off, err);
        if (ret < 0)
            return ret;
        ext_end = backing_off;
    }

    ret = read_extensions(im, hdr, header_length, ext_end, out, err);
    if (ret < 0)
        return ret;
    if (out->backing_file[0]) {
        if (strcmp(out->backing_format, "qcow2") != 0 && strcmp(out->backing_format, "raw") != 0)
            return refuse(err, ENOTSUP,
                          "backing file without a backing format of qcow2 or raw (have \"%s\"): "
                          "QEMU would probe it",
                          out->backing_format);
    } else {
        out->backing_format[0] = '\0';
    }

    uint64_t size = qcow2_be64(hdr + QCOW2_OFF_SIZE);
    if (size == 0)
        return refuse(err, EINVAL, "virtual size at offset %d is 0", QCOW2_OFF_SIZE);
    if (size > im->limits->max_virtual_size)
        return refuse(err, EFBIG,
                      "virtual size %" PRIu64 " at offset %d exceeds the limit %" PRIu64, size,
                      QCOW2_OFF_SIZE, im->limits->max_virtual_size);

    /* L1: each entry maps one L2 table, which maps cluster_size / l2_entry_size clusters. */
    im->l1_size = qcow2_be32(hdr + QCOW2_OFF_L1_SIZE);
    uint64_t l1_off = qcow2_be64(hdr + QCOW2_OFF_L1_TABLE_OFFSET);
    uint64_t per_l1 = im->cluster_size * (im->cluster_size / im->l2_entry_size); /* <= 2^39 */
    uint64_t l1_needed = size / per_l1 + (size % per_l1 != 0);
    if (im->l1_size < l1_needed)
        return refuse(err, EINVAL,
                      "l1_size %" PRIu32 " at offset %d is too small for virtual size %" PRIu64
                      " (needs %" PRIu64 " entries)",
                      im->l1_size, QCOW2_OFF_L1_SIZE, size, l1_needed);
    if ((uint64_t)im->l1_size * 8 > QCOW2_MAX_L1_SIZE)
        return refuse(err, EFBIG, "l1_size %" PRIu32 " at offset %d is above %u entries",
                      im->l1_size, QCOW2_OFF_L1_SIZE, QCOW2_MAX_L1_SIZE / 8);
    ret = check_table(im, "L1 table", "l1_table_offset", l1_off, (uint64_t)im->l1_size * 8, &im->l1,
                      err);
    if (ret < 0)
        return ret;

    uint64_t rt_off = qcow2_be64(hdr + QCOW2_OFF_REFCOUNT_TABLE_OFFSET);
    uint32_t rt_clusters = qcow2_be32(hdr + QCOW2_OFF_REFCOUNT_TABLE_CLUSTERS);
    if (rt_clusters == 0)
        return refuse(err, EINVAL, "refcount_table_clusters at offset %d is 0",
                      QCOW2_OFF_REFCOUNT_TABLE_CLUSTERS);
    if ((uint64_t)rt_clusters * im->cluster_size > QCOW2_MAX_REFTABLE_SIZE)
        return refuse(err, EFBIG,
                      "refcount_table_clusters %" PRIu32 " at offset %d: %" PRIu64
                      " bytes is above %u",
                      rt_clusters, QCOW2_OFF_REFCOUNT_TABLE_CLUSTERS,
                      (uint64_t)rt_clusters * im->cluster_size, QCOW2_MAX_REFTABLE_SIZE);
    ret = check_table(im, "refcount table", "refcount_table_offset", rt_off,
                      (uint64_t)rt_clusters * im->cluster_size, &im->reftable, err);
    if (ret < 0)
        return ret;
    ret = check_no_overlap(&im->reftable, &im->l1, err);
    if (ret < 0)
        return ret;

    im->nb_snapshots = qcow2_be32(hdr + QCOW2_OFF_NB_SNAPSHOTS);
    uint32_t max_sn = im->limits->max_snapshots < QCOW2_MAX_SNAPSHOTS ? im->limits->max_snapshots
                                                                      : QCOW2_MAX_SNAPSHOTS;
    if (im->nb_snapshots > max_sn)
        return refuse(err, EFBIG,
                      "nb_snapshots %" PRIu32 " at offset %d exceeds the limit %" PRIu32,
                      im->nb_snapshots, QCOW2_OFF_NB_SNAPSHOTS, max_sn);
    im->snapshots.start = qcow2_be64(hdr + QCOW2_OFF_SNAPSHOTS_OFFSET);

    out->version = im->version;
    out->virtual_size = size;
    out->cluster_size = (uint32_t)im->cluster_size;
    out->n_snapshots = im->nb_snapshots;
    out->dirty = im->incompat & QCOW2_INCOMPAT_DIRTY;
    out->extended_l2 = im->l2_entry_size == 16;
    return 0;
}

/* An L1 table (the active one or a snapshot's) must lie in the file. */
static int
check_l1_placement(const struct img *im, const char *what, uint64_t off, uint32_t l1_size,
                   struct na_error **err)
{
    if ((uint64_t)l1_size * 8 > QCOW2_MAX_L1_SIZE)
        return refuse(err, EFBIG, "%s has %" PRIu32 " entries, above %u", what, l1_size,
                      QCOW2_MAX_L1_SIZE / 8);
    if (l1_size == 0)
        return 0;
    return check_table(im, what, "snapshot l1_table_offset", off, (uint64_t)l1_size * 8, NULL, err);
}

static int
read_snapshots(struct img *im, struct reader *r, struct na_error **err)
{
    if (im->nb_snapshots == 0) {
        im->snapshots = (struct range){"snapshot table", 0, 0};
        return 0;
    }
    uint64_t start = im->snapshots.start;
    int ret = check_table(im, "snapshot table", "snapshots_offset", start, QCOW2_SN_HEADER_SIZE,
                          NULL, err);
    if (ret < 0)
        return ret;

    uint64_t off = start;
    for (uint32_t i = 0; i < im->nb_snapshots; i++) {
        char what[64];
        snprintf(what, sizeof(what), "snapshot %" PRIu32, i);
        const uint8_t *p;
        ret = reader_get(r, off, QCOW2_SN_HEADER_SIZE, &p, what, err);
        if (ret < 0)
            return ret;
        uint64_t sn_l1_off = qcow2_be64(p + QCOW2_SN_OFF_L1_TABLE_OFFSET);
        uint32_t sn_l1_size = qcow2_be32(p + QCOW2_SN_OFF_L1_SIZE);
        uint16_t id_size = qcow2_be16(p + QCOW2_SN_OFF_ID_STR_SIZE);
        uint16_t name_size = qcow2_be16(p + QCOW2_SN_OFF_NAME_SIZE);
        uint32_t extra = qcow2_be32(p + QCOW2_SN_OFF_EXTRA_DATA_SIZE);
        if (extra > QCOW2_MAX_SNAPSHOT_EXTRA_DATA)
            return refuse(err, EINVAL,
                          "%s at offset %" PRIu64 ": extra_data_size %" PRIu32 " is above %u", what,
                          off, extra, QCOW2_MAX_SNAPSHOT_EXTRA_DATA);
        if (im->version == 3 && extra < QCOW2_SN_V3_MIN_EXTRA_DATA)
            return refuse(err, EINVAL,
                          "%s at offset %" PRIu64 ": extra_data_size %" PRIu32
                          " is below %d, required in version 3",
                          what, off, extra, QCOW2_SN_V3_MIN_EXTRA_DATA);
        if (extra >= QCOW2_SN_V3_MIN_EXTRA_DATA) {
            ret = reader_get(r, off + QCOW2_SN_HEADER_SIZE, extra, &p, what, err);
            if (ret < 0)
                return ret;
            uint64_t disk_size = qcow2_be64(p + 8);
            if (disk_size > im->limits->max_virtual_size)
                return refuse(err, EFBIG,
                              "%s at offset %" PRIu64 ": disk size %" PRIu64
                              " exceeds the limit %" PRIu64,
                              what, off, disk_size, im->limits->max_virtual_size);
        }
        ret = check_l1_placement(im, what, sn_l1_off, sn_l1_size, err);
        if (ret < 0)
            return ret;

        /* Sizes are bounded (16+16+10 bits), so the entry size cannot overflow.  QEMU does
         * not write the padding after the last entry: only the unpadded part must be in the
         * file. */
        uint64_t used = QCOW2_SN_HEADER_SIZE + (uint64_t)extra + id_size + name_size;
        uint64_t entry = (used + 7) & ~7ull;
        if (off - start + entry > QCOW2_MAX_SNAPSHOTS_SIZE)
            return refuse(err, EFBIG,
                          "snapshot table at offset %" PRIu64 " is larger than %u bytes", start,
                          QCOW2_MAX_SNAPSHOTS_SIZE);
        /* The names are not needed; make sure they are in the file all the same. */
        if (off + used > im->file_size)
            return refuse(err, EINVAL,
                          "%s at offset %" PRIu64 " (%" PRIu64
                          " bytes) extends past the end of the file (%" PRIu64 " bytes)",
                          what, off, used, im->file_size);
        off += entry;
    }
    im->snapshots = (struct range){"snapshot table", start, off};
    ret = check_no_overlap(&im->snapshots, &im->l1, err);
    if (ret < 0)
        return ret;
    return check_no_overlap(&im->snapshots, &im->reftable, err);
}

/* A cluster of metadata (L2 table, refcount block) pointed to by a table entry. */
static int
check_meta_cluster(const struct img *im, const char *what, uint32_t index, uint64_t entry_off,
                   uint64_t off, struct na_error **err)
{
    if (off & (im->cluster_size - 1))
        return refuse(err, EINVAL,
                      "%s %" PRIu32 " at offset %" PRIu64 ": offset %" PRIu64
                      " is not cluster-aligned",
                      what, index, entry_off, off);
    uint64_t end;
    if (off < im->cluster_size || __builtin_add_overflow(off, im->cluster_size, &end) ||
        end > im->file_size)
        return refuse(err, EINVAL,
                      "%s %" PRIu32 " at offset %" PRIu64 ": offset %" PRIu64
                      " is in the header cluster or past the end of the file (%" PRIu64 " bytes)",
                      what, index, entry_off, off, im->file_size);
    struct range r = {what, off, end};
    const struct range *tables[] = {&im->l1, &im->reftable, &im->snapshots};
    for (size_t i = 0; i < NA_ARRAY_SIZE(tables); i++) {
        int ret = check_no_overlap(&r, tables[i], err);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int
scan_l2(const struct img *im, struct reader *r, uint32_t l1_index, uint64_t l2_off,
        struct qcow2_info *out, struct na_error **err)
{
    uint64_t n_entries = im->cluster_size / im->l2_entry_size;
    unsigned x = 62 - (im->cluster_bits - 8); /* bits of a compressed cluster's host offset */
    for (uint64_t j = 0; j < n_entries; j++) {
        uint64_t eoff = l2_off + j * im->l2_entry_size;
        const uint8_t *p;
        int ret = reader_get(r, eoff, 8, &p, "L2 entry", err);
        if (ret < 0)
            return ret;
        uint64_t e = qcow2_be64(p);
        uint64_t host;
        if (e & QCOW2_OFLAG_COMPRESSED) {
            if (e & QCOW2_OFLAG_COPIED)
                return refuse(err, EINVAL,
                              "L2 entry %" PRIu64 " of L1 entry %" PRIu32 " at offset %" PRIu64
                              ": compressed cluster with the copied flag (0x%016" PRIx64 ")",
                              j, l1_index, eoff, e);
            host = e & ((1ull << x) - 1);
            out->compressed = true;
        } else {
            if (e & QCOW2_L2E_RESERVED_MASK)
                return refuse(err, EINVAL,
                              "L2 entry %" PRIu64 " of L1 entry %" PRIu32 " at offset %" PRIu64
                              ": reserved bits set (0x%016" PRIx64 ")",
                              j, l1_index, eoff, e);
            if (im->version == 2 && (e & QCOW2_OFLAG_ZERO))
                return refuse(err, EINVAL,
                              "L2 entry %" PRIu64 " of L1 entry %" PRIu32 " at offset %" PRIu64
                              ": zero flag in a version 2 image",
                              j, l1_index, eoff);
            host = e & QCOW2_L2E_OFFSET_MASK;
            if (host & (im->cluster_size - 1))
                return refuse(err, EINVAL,
                              "L2 entry %" PRIu64 " of L1 entry %" PRIu32 " at offset %" PRIu64
                              ": data offset %" PRIu64 " is not cluster-aligned",
                              j, l1_index, eoff, host);
        }
        if (host && (host < im->cluster_size || host >= im->file_size))
            return refuse(err, EINVAL,
                          "L2 entry %" PRIu64 " of L1 entry %" PRIu32 " at offset %" PRIu64
                          ": data offset %" PRIu64
                          " is in the header cluster or past the end of the file (%" PRIu64
                          " bytes)",
                          j, l1_index, eoff, host, im->file_size);
    }
    return 0;
}

static int
check_l1_entries(const struct img *im, struct qcow2_info *out, struct na_error **err)
{
    struct reader l1r = {.im = im}, l2r = {.im = im};
    uint64_t scanned = 0;
    int ret = 0;
    out->l2_scan_complete = true;
    for (uint32_t i = 0; i < im->l1_size && ret == 0; i++) {
        uint64_t eoff = im->l1.start + (uint64_t)i * 8;
        const uint8_t *p;
        ret = reader_get(&l1r, eoff, 8, &p, "L1 entry", err);
        if (ret < 0)
            break;
        uint64_t e = qcow2_be64(p);
        if (e & QCOW2_L1E_RESERVED_MASK) {
            ret = refuse(err, EINVAL,
                         "L1 entry %" PRIu32 " at offset %" PRIu64
                         ": reserved bits set (0x%016" PRIx64 ")",
                         i, eoff, e);
            break;
        }
        uint64_t l2_off = e & QCOW2_L1E_OFFSET_MASK;
        if (!l2_off)
            continue; /* unallocated, whatever the flags say */
        ret = check_meta_cluster(im, "L1 entry", i, eoff, l2_off, err);
        if (ret < 0)
            break;
        if (scanned + im->cluster_size > im->limits->max_l2_scan_size) {
            out->l2_scan_complete = false;
            continue;
        }
        scanned += im->cluster_size;
        ret = scan_l2(im, &l2r, i, l2_off, out, err);
    }
    reader_fini(&l1r);
    reader_fini(&l2r);
    return ret;
}

static int
check_refcount_table(const struct img *im, struct na_error **err)
{
    struct reader r = {.im = im};
    int ret = 0;
    uint64_t n = (im->reftable.end - im->reftable.start) / 8; /* <= 1M */
    for (uint32_t i = 0; i < n; i++) {
        uint64_t eoff = im->reftable.start + (uint64_t)i * 8;
        const uint8_t *p;
        ret = reader_get(&r, eoff, 8, &p, "refcount table entry", err);
        if (ret < 0)
            break;
        uint64_t e = qcow2_be64(p);
        if (e & QCOW2_REFT_RESERVED_MASK) {
            ret = refuse(err, EINVAL,
                         "refcount table entry %" PRIu32 " at offset %" PRIu64
                         ": reserved bits set (0x%016" PRIx64 ")",
                         i, eoff, e);
            break;
        }
        uint64_t off = e & QCOW2_REFT_OFFSET_MASK;
        if (off) {
            ret = check_meta_cluster(im, "refcount table entry", i, eoff, off, err);
            if (ret < 0)
                break;
        }
    }
    reader_fini(&r);
    return ret;
}

void
qcow2_limits_init(struct qcow2_limits *limits)
{
    *limits = (struct qcow2_limits){
        .max_virtual_size = 16ull << 40,
        .max_snapshots = QCOW2_MAX_SNAPSHOTS,
        .max_l2_scan_size = 64ull << 20,
        .allow_backing = false,
    };
}

static int
stat_regular(int fd, uint64_t *size, struct na_error **err)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "qcow2: fstat");
    if (!S_ISREG(st.st_mode))
        return refuse(err, EINVAL, "image is not a regular file");
    *size = (uint64_t)st.st_size;
    return 0;
}

int
qcow2_validate(int fd, const struct qcow2_limits *limits, struct qcow2_info *out,
               struct na_error **err)
{
    struct qcow2_limits defaults;
    if (!limits) {
        qcow2_limits_init(&defaults);
        limits = &defaults;
    }
    struct qcow2_info info = {.format = QCOW2_FORMAT_QCOW2};
    struct img im = {.fd = fd, .limits = limits};
    int ret = stat_regular(fd, &im.file_size, err);
    if (ret < 0)
        return ret;
    info.file_size = im.file_size;
    ret = read_header(&im, &info, err);
    if (ret < 0)
        return ret;

    struct reader r = {.im = &im};
    ret = read_snapshots(&im, &r, err);
    reader_fini(&r);
    if (ret < 0)
        return ret;
    ret = check_l1_entries(&im, &info, err);
    if (ret < 0)
        return ret;
    ret = check_refcount_table(&im, err);
    if (ret < 0)
        return ret;
    *out = info;
    return 0;
}

/* A raw image must not be another format in disguise (see probe.c). */
static int
refuse_foreign(int fd, uint64_t size, struct na_error **err)
{
    uint8_t head[QCOW2_PROBE_HEAD_SIZE], tail[QCOW2_PROBE_TAIL_SIZE];
    size_t head_size = size < sizeof(head) ? (size_t)size : sizeof(head);
    int ret = pread_exact(fd, head, head_size, 0, err);
    if (ret < 0)
        return ret;
    bool have_tail = size >= sizeof(tail);
    if (have_tail && (ret = pread_exact(fd, tail, sizeof(tail), size - sizeof(tail), err)) < 0)
        return ret;
    const char *where = NULL;
    const char *format = qcow2_probe_foreign(head, head_size, have_tail ? tail : NULL, &where);
    if (format)
        return refuse(err, EINVAL,
                      "image declared raw is a %s image (%s): its content must match its "
                      "declared format",
                      format, where);
    return 0;
}

int
qcow2_validate_raw(int fd, const struct qcow2_limits *limits, struct qcow2_info *out,
                   struct na_error **err)
{
    struct qcow2_limits defaults;
    if (!limits) {
        qcow2_limits_init(&defaults);
        limits = &defaults;
    }
    uint64_t size;
    int ret = stat_regular(fd, &size, err);
    if (ret < 0)
        return ret;
    if (size == 0)
        return refuse(err, EINVAL, "raw image is empty");
    if (size > limits->max_virtual_size)
        return refuse(err, EFBIG, "raw image of %" PRIu64 " bytes exceeds the limit %" PRIu64, size,
                      limits->max_virtual_size);
    ret = refuse_foreign(fd, size, err);
    if (ret < 0)
        return ret;
    /* QEMU rounds a raw image up to whole 512-byte sectors; the guest sees that size. */
    *out = (struct qcow2_info){
        .format = QCOW2_FORMAT_RAW,
        .virtual_size = (size + 511) & ~511ull,
        .file_size = size,
        .l2_scan_complete = true,
    };
    return 0;
}

int
qcow2_validate_format(int fd, enum qcow2_format format, const struct qcow2_limits *limits,
                      struct qcow2_info *out, struct na_error **err)
{
    if (format == QCOW2_FORMAT_RAW)
        return qcow2_validate_raw(fd, limits, out, err);
    return qcow2_validate(fd, limits, out, err);
}

const char *
qcow2_format_name(enum qcow2_format format)
{
    return format == QCOW2_FORMAT_RAW ? "raw" : "qcow2";
}

int
qcow2_format_parse(const char *name, const char *field, enum qcow2_format *out,
                   struct na_error **err)
{
    if (name && strcmp(name, "raw") == 0) {
        *out = QCOW2_FORMAT_RAW;
        return 0;
    }
    if (name && strcmp(name, "qcow2") == 0) {
        *out = QCOW2_FORMAT_QCOW2;
        return 0;
    }
    return na_error_field(err, field, "%s: unknown image format \"%s\" (want raw or qcow2)", field,
                          name ? name : "");
}
