/* qcow2 validation on crafted images, and the overlay writer.
 *
 * Every image is built in memory by make_image() (a minimal valid v2 or v3 image with one
 * allocated L2 table and one data cluster), then one field is broken and the image, written
 * to a memfd, must be refused with a message naming that field.
 *
 * With NODEAGENT_QCOW2_CORPUS=<dir> set, the corpus test also validates every image in dir
 * (made by tests/system/qcow2_corpus.sh with qemu-img) and writes overlays into dir/out for
 * the script to check with qemu-img. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "storage/qcow2/qcow2.h"
#include "storage/qcow2/qcow2-private.h"

#define CS (64u << 10)
#define OFF_REFTABLE (1 * CS)
#define OFF_REFBLOCK (2 * CS)
#define OFF_L1 (3 * CS)
#define OFF_L2 (4 * CS)
#define OFF_DATA (5 * CS)
#define OFF_SNAP (6 * CS)
#define IMAGE_SIZE (7 * CS)
#define VSIZE (1ull << 30) /* two L1 entries at 512 MiB each */

struct image {
    uint8_t *b;
    size_t size;
};

/* A valid image: header, refcount table + block, L1 (2 entries), one L2 table mapping guest
 * cluster 0 to one data cluster, and one cluster reserved for a snapshot table. */
static struct image
make_image(uint32_t version)
{
    struct image im = {na_xcalloc(1, IMAGE_SIZE), IMAGE_SIZE};
    uint8_t *h = im.b;
    qcow2_put_be32(h + QCOW2_OFF_MAGIC, QCOW2_MAGIC);
    qcow2_put_be32(h + QCOW2_OFF_VERSION, version);
    qcow2_put_be32(h + QCOW2_OFF_CLUSTER_BITS, 16);
    qcow2_put_be64(h + QCOW2_OFF_SIZE, VSIZE);
    qcow2_put_be32(h + QCOW2_OFF_L1_SIZE, 2);
    qcow2_put_be64(h + QCOW2_OFF_L1_TABLE_OFFSET, OFF_L1);
    qcow2_put_be64(h + QCOW2_OFF_REFCOUNT_TABLE_OFFSET, OFF_REFTABLE);
    qcow2_put_be32(h + QCOW2_OFF_REFCOUNT_TABLE_CLUSTERS, 1);
    if (version == 3) {
        qcow2_put_be32(h + QCOW2_OFF_REFCOUNT_ORDER, 4);
        qcow2_put_be32(h + QCOW2_OFF_HEADER_LENGTH, QCOW2_V3_HEADER_SIZE);
    }
    qcow2_put_be64(im.b + OFF_REFTABLE, OFF_REFBLOCK);
    for (int i = 0; i < 7; i++)
        qcow2_put_be16(im.b + OFF_REFBLOCK + i * 2, 1);
    qcow2_put_be64(im.b + OFF_L1, OFF_L2 | QCOW2_OFLAG_COPIED);
    qcow2_put_be64(im.b + OFF_L2, OFF_DATA | QCOW2_OFLAG_COPIED);
    memset(im.b + OFF_DATA, 0xab, CS);
    return im;
}

static int
memfd_of(const struct image *im)
{
    int fd = memfd_create("qcow2-test", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, im->b, im->size), (ssize_t)im->size);
    return fd;
}

static void
default_limits(struct qcow2_limits *l)
{
    qcow2_limits_init(l);
    l->max_virtual_size = 1ull << 62;
}

/* Validates im (then frees it); returns the result and copies the message, if any. */
static int
validate_with(struct image im, const struct qcow2_limits *limits, struct qcow2_info *info,
              char *msg, size_t msg_size)
{
    cleanup_close int fd = memfd_of(&im);
    free(im.b);
    struct qcow2_info scratch;
    struct na_error *err = NULL;
    int ret = qcow2_validate(fd, limits, info ? info : &scratch, &err);
    msg[0] = '\0';
    if (ret < 0) {
        assert_non_null(err);
        assert_int_equal(err->status, -ret);
        snprintf(msg, msg_size, "%s", err->msg);
        if (getenv("TEST_VERBOSE"))
            fprintf(stderr, "  refused: %s (%s)\n", err->msg, na_code_name(err->code));
    } else {
        assert_null(err);
    }
    na_error_free(err);
    return ret;
}

/* Expects im to be refused with status -want and a message containing every needle. */
static void
expect_refusal(struct image im, int want, const char *needle1, const char *needle2)
{
    struct qcow2_limits l;
    default_limits(&l);
    char msg[1024];
    int ret = validate_with(im, &l, NULL, msg, sizeof(msg));
    if (ret != -want || !strstr(msg, needle1) || (needle2 && !strstr(msg, needle2)))
        fail_msg("ret %d (want %d), message \"%s\" (want \"%s\", \"%s\")", ret, -want, msg, needle1,
                 needle2 ? needle2 : "");
}

static void
put_ext(uint8_t *p, uint32_t type, uint32_t len)
{
    qcow2_put_be32(p, type);
    qcow2_put_be32(p + 4, len);
}

/* --- valid images ---------------------------------------------------------------------- */

static void
test_valid_v3(void **state)
{
    (void)state;
    struct qcow2_limits l;
    default_limits(&l);
    struct qcow2_info info;
    char msg[512];
    assert_int_equal(validate_with(make_image(3), &l, &info, msg, sizeof(msg)), 0);
    assert_int_equal(info.format, QCOW2_FORMAT_QCOW2);
    assert_int_equal(info.version, 3);
    assert_int_equal(info.virtual_size, VSIZE);
    assert_int_equal(info.cluster_size, CS);
    assert_int_equal(info.file_size, IMAGE_SIZE);
    assert_int_equal(info.n_snapshots, 0);
    assert_false(info.compressed);
    assert_true(info.l2_scan_complete);
    assert_false(info.dirty);
    assert_string_equal(info.backing_file, "");
}

static void
test_valid_v2(void **state)
{
    (void)state;
    struct qcow2_info info;
    char msg[512];
    assert_int_equal(validate_with(make_image(2), NULL, &info, msg, sizeof(msg)), 0);
    assert_int_equal(info.version, 2);
    assert_int_equal(info.virtual_size, VSIZE);
}

static void
test_valid_extensions(void **state)
{
    (void)state;
    /* Feature table, an unknown extension, then the end marker: all accepted. */
    struct image im = make_image(3);
    uint8_t *p = im.b + QCOW2_V3_HEADER_SIZE;
    put_ext(p, QCOW2_EXT_FEATURE_TABLE, 48);
    memcpy(p + 8 + 2, "dirty bit", 9);
    p += 8 + 48;
    put_ext(p, 0x12345678, 3);
    char msg[512];
    assert_int_equal(validate_with(im, NULL, NULL, msg, sizeof(msg)), 0);
}

static void
test_valid_with_snapshot(void **state)
{
    (void)state;
    struct image im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_NB_SNAPSHOTS, 1);
    qcow2_put_be64(im.b + QCOW2_OFF_SNAPSHOTS_OFFSET, OFF_SNAP);
    uint8_t *s = im.b + OFF_SNAP;
    qcow2_put_be64(s + QCOW2_SN_OFF_L1_TABLE_OFFSET, OFF_L1); /* shares the active L1 */
    qcow2_put_be32(s + QCOW2_SN_OFF_L1_SIZE, 2);
    qcow2_put_be16(s + QCOW2_SN_OFF_ID_STR_SIZE, 1);
    qcow2_put_be16(s + QCOW2_SN_OFF_NAME_SIZE, 4);
    qcow2_put_be32(s + QCOW2_SN_OFF_EXTRA_DATA_SIZE, 16);
    qcow2_put_be64(s + QCOW2_SN_HEADER_SIZE + 8, VSIZE);
    memcpy(s + QCOW2_SN_HEADER_SIZE + 16, "1snap", 5);
    im.size = OFF_SNAP + 61; /* QEMU leaves out the last entry's padding */
    struct qcow2_info info;
    char msg[512];
    assert_int_equal(validate_with(im, NULL, &info, msg, sizeof(msg)), 0);
    assert_int_equal(info.n_snapshots, 1);
}

/* The table reader (snapshot_table.c): two entries, names and VM state sizes (the large
 * one from the extra data), and a table that lies about its count or sizes refused. */
static void
test_snapshot_table_read(void **state)
{
    (void)state;
    struct image im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_NB_SNAPSHOTS, 2);
    qcow2_put_be64(im.b + QCOW2_OFF_SNAPSHOTS_OFFSET, OFF_SNAP);
    uint8_t *s = im.b + OFF_SNAP;
    qcow2_put_be16(s + QCOW2_SN_OFF_ID_STR_SIZE, 1);
    qcow2_put_be16(s + QCOW2_SN_OFF_NAME_SIZE, 2);
    qcow2_put_be32(s + 16, 1764790000);
    qcow2_put_be32(s + 32, 7);
    qcow2_put_be32(s + QCOW2_SN_OFF_EXTRA_DATA_SIZE, 16);
    qcow2_put_be64(s + QCOW2_SN_HEADER_SIZE, 5ull << 32);
    memcpy(s + QCOW2_SN_HEADER_SIZE + 16, "1s1", 3);
    s += 64; /* 40 + 16 + 1 + 2, padded to 8 */
    qcow2_put_be16(s + QCOW2_SN_OFF_ID_STR_SIZE, 1);
    qcow2_put_be16(s + QCOW2_SN_OFF_NAME_SIZE, 3);
    memcpy(s + QCOW2_SN_HEADER_SIZE, "2off", 4);
    cleanup_close int fd = memfd_of(&im);
    struct qcow2_snapshot *t = NULL;
    size_t n = 0;
    cleanup_error struct na_error *err = NULL;
    assert_int_equal(qcow2_snapshot_table(fd, &t, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(t[0].name, "s1");
    assert_true(t[0].vm_state_size == 5ull << 32);
    assert_int_equal(t[0].date_s, 1764790000);
    assert_string_equal(t[1].name, "off");
    assert_true(t[1].vm_state_size == 0);
    qcow2_snapshots_free(t, n);

    qcow2_put_be32(im.b + QCOW2_OFF_NB_SNAPSHOTS, 3000); /* entries past the end */
    cleanup_close int fd2 = memfd_of(&im);
    assert_true(qcow2_snapshot_table(fd2, &t, &n, &err) < 0);
    assert_int_equal(err->code, NA_CODE_STORAGE);
    na_error_clear(&err);
    qcow2_put_be32(im.b + QCOW2_OFF_NB_SNAPSHOTS, 1);
    qcow2_put_be32(im.b + OFF_SNAP + QCOW2_SN_OFF_EXTRA_DATA_SIZE, 4096);
    cleanup_close int fd3 = memfd_of(&im);
    assert_true(qcow2_snapshot_table(fd3, &t, &n, &err) < 0);
    assert_non_null(strstr(err->msg, "extra_data_size"));
    free(im.b);
}

static void
test_dirty_accepted(void **state)
{
    (void)state;
    struct image im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_INCOMPATIBLE_FEATURES, QCOW2_INCOMPAT_DIRTY);
    qcow2_put_be64(im.b + QCOW2_OFF_COMPATIBLE_FEATURES, QCOW2_COMPAT_LAZY_REFCOUNTS);
    struct qcow2_info info;
    char msg[512];
    assert_int_equal(validate_with(im, NULL, &info, msg, sizeof(msg)), 0);
    assert_true(info.dirty);
}

static void
test_compressed_seen(void **state)
{
    (void)state;
    struct image im = make_image(3);
    /* Compressed descriptor, 64 KiB clusters: offset in bits 0..53, sector count above. */
    uint64_t e = QCOW2_OFLAG_COMPRESSED | (3ull << 54) | (OFF_DATA + 100);
    qcow2_put_be64(im.b + OFF_L2 + 8, e);
    struct qcow2_info info;
    char msg[512];
    assert_int_equal(validate_with(im, NULL, &info, msg, sizeof(msg)), 0);
    assert_true(info.compressed);
}

static void
test_l2_budget(void **state)
{
    (void)state;
    struct qcow2_limits l;
    default_limits(&l);
    l.max_l2_scan_size = 0;
    struct image im = make_image(3);
    qcow2_put_be64(im.b + OFF_L2 + 8, 1ull << 40); /* bad, but not scanned */
    struct qcow2_info info;
    char msg[512];
    assert_int_equal(validate_with(im, &l, &info, msg, sizeof(msg)), 0);
    assert_false(info.l2_scan_complete);
}

static void
test_compression_type(void **state)
{
    (void)state;
    struct image im = make_image(3);
    im.b[QCOW2_OFF_COMPRESSION_TYPE] = QCOW2_COMPRESSION_ZSTD;
    qcow2_put_be64(im.b + QCOW2_OFF_INCOMPATIBLE_FEATURES, QCOW2_INCOMPAT_COMPRESSION);
    char msg[512];
    assert_int_equal(validate_with(im, NULL, NULL, msg, sizeof(msg)), 0);

    im = make_image(3);
    im.b[QCOW2_OFF_COMPRESSION_TYPE] = QCOW2_COMPRESSION_ZSTD;
    expect_refusal(im, EINVAL, "compression type 1 at offset 104", "bit 3 (clear)");
    im = make_image(3);
    im.b[QCOW2_OFF_COMPRESSION_TYPE] = 7;
    expect_refusal(im, ENOTSUP, "unknown compression type 7", NULL);
}

/* --- header refusals ------------------------------------------------------------------- */

static void
test_too_small(void **state)
{
    (void)state;
    struct image im = make_image(3);
    im.size = 50;
    expect_refusal(im, EINVAL, "file of 50 bytes is too small", NULL);
}

static void
test_bad_magic(void **state)
{
    (void)state;
    struct image im = make_image(3);
    memcpy(im.b, "QFI\xfa", 4);
    expect_refusal(im, EINVAL, "bad magic 0x514649fa at offset 0", NULL);
}

static void
test_bad_version(void **state)
{
    (void)state;
    struct image im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_VERSION, 1);
    expect_refusal(im, ENOTSUP, "version 1 at offset 4", NULL);
    im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_VERSION, 4);
    expect_refusal(im, ENOTSUP, "version 4 at offset 4", NULL);
}

static void
test_backing_file_refused(void **state)
{
    (void)state;
    struct image im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_BACKING_FILE_OFFSET, 512);
    qcow2_put_be32(im.b + QCOW2_OFF_BACKING_FILE_SIZE, 10);
    memcpy(im.b + 512, "/etc/shado", 10);
    expect_refusal(im, ENOTSUP, "backing file (backing_file_offset 512, backing_file_size 10)",
                   NULL);
    /* A size alone is refused too. */
    im = make_image(2);
    qcow2_put_be32(im.b + QCOW2_OFF_BACKING_FILE_SIZE, 10);
    expect_refusal(im, ENOTSUP, "backing file", NULL);
}

static void
test_backing_file_allowed(void **state)
{
    (void)state;
    struct qcow2_limits l;
    default_limits(&l);
    l.allow_backing = true;
    struct image im = make_image(3);
    put_ext(im.b + QCOW2_V3_HEADER_SIZE, QCOW2_EXT_BACKING_FORMAT, 3);
    memcpy(im.b + QCOW2_V3_HEADER_SIZE + 8, "raw", 3);
    qcow2_put_be64(im.b + QCOW2_OFF_BACKING_FILE_OFFSET, 512);
    qcow2_put_be32(im.b + QCOW2_OFF_BACKING_FILE_SIZE, 9);
    memcpy(im.b + 512, "/base.img", 9);
    struct image copy = {na_xmalloc(im.size), im.size};
    memcpy(copy.b, im.b, im.size);
    struct qcow2_info info;
    char msg[512];
    assert_int_equal(validate_with(im, &l, &info, msg, sizeof(msg)), 0);
    assert_string_equal(info.backing_file, "/base.img");
    assert_string_equal(info.backing_format, "raw");

    /* Without a backing format QEMU would probe the backing file. */
    memset(copy.b + QCOW2_V3_HEADER_SIZE, 0, 16);
    assert_int_equal(validate_with(copy, &l, NULL, msg, sizeof(msg)), -ENOTSUP);
    assert_non_null(strstr(msg, "would probe"));

    /* A name running past the header cluster. */
    im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_BACKING_FILE_OFFSET, CS - 4);
    qcow2_put_be32(im.b + QCOW2_OFF_BACKING_FILE_SIZE, 9);
    assert_int_equal(validate_with(im, &l, NULL, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "backing file name at offset 65532"));
}

static void
test_data_file_refused(void **state)
{
    (void)state;
    struct image im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_INCOMPATIBLE_FEATURES, QCOW2_INCOMPAT_DATA_FILE);
    expect_refusal(im, ENOTSUP, "external data file (incompatible feature bit 2)", NULL);

    im = make_image(3);
    put_ext(im.b + QCOW2_V3_HEADER_SIZE, QCOW2_EXT_DATA_FILE, 9);
    memcpy(im.b + QCOW2_V3_HEADER_SIZE + 8, "/dev/sda1", 9);
    expect_refusal(im, ENOTSUP, "external data file header extension (0x44415441) at offset 112",
                   NULL);

    /* v2 images have extensions too, right after the 72-byte header. */
    im = make_image(2);
    put_ext(im.b + QCOW2_V2_HEADER_SIZE, QCOW2_EXT_DATA_FILE, 9);
    expect_refusal(im, ENOTSUP, "(0x44415441) at offset 72", NULL);
}

static void
test_encryption_refused(void **state)
{
    (void)state;
    struct image im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_CRYPT_METHOD, 2);
    expect_refusal(im, ENOTSUP, "crypt_method 2 at offset 32", NULL);

    im = make_image(3);
    put_ext(im.b + QCOW2_V3_HEADER_SIZE, QCOW2_EXT_CRYPTO, 16);
    expect_refusal(im, ENOTSUP, "full disk encryption header extension (0x0537be77)", NULL);
}

static void
test_cluster_bits(void **state)
{
    (void)state;
    struct image im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_CLUSTER_BITS, 8);
    expect_refusal(im, EINVAL, "cluster_bits 8 at offset 20 outside 9..21", NULL);
    im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_CLUSTER_BITS, 22);
    expect_refusal(im, EINVAL, "cluster_bits 22 at offset 20 outside 9..21", NULL);
    im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_CLUSTER_BITS, 0xffffffff);
    expect_refusal(im, EINVAL, "cluster_bits 4294967295", NULL);
}

static void
test_virtual_size(void **state)
{
    (void)state;
    struct image im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_SIZE, (1ull << 62) + 1);
    expect_refusal(im, EFBIG,
                   "virtual size 4611686018427387905 at offset 24 exceeds the limit "
                   "4611686018427387904",
                   NULL);
    im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_SIZE, UINT64_MAX);
    expect_refusal(im, EFBIG, "virtual size 18446744073709551615", NULL);
    im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_SIZE, 0);
    expect_refusal(im, EINVAL, "virtual size at offset 24 is 0", NULL);
    /* Exactly 2^62 passes the limit but needs 2^33 L1 entries: l1_size cannot hold it. */
    im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_SIZE, 1ull << 62);
    expect_refusal(im, EINVAL, "l1_size 2 at offset 36 is too small", "needs 8589934592");
}

static void
test_l1_table(void **state)
{
    (void)state;
    struct image im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_L1_TABLE_OFFSET, IMAGE_SIZE);
    expect_refusal(im, EINVAL, "L1 table at offset 458752 (l1_table_offset)",
                   "past the end of the file (458752 bytes)");
    im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_L1_TABLE_OFFSET, OFF_L1 + 8);
    expect_refusal(im, EINVAL, "L1 table offset 196616 (l1_table_offset) is not aligned", NULL);
    im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_L1_TABLE_OFFSET, 0);
    expect_refusal(im, EINVAL, "L1 table offset 0 (l1_table_offset) overlaps the header", NULL);
    im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_L1_TABLE_OFFSET, 0xffffffffffff0000ull);
    expect_refusal(im, EINVAL, "L1 table at offset 18446744073709486080", "past the end");
    im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_L1_SIZE, 1);
    expect_refusal(im, EINVAL, "l1_size 1 at offset 36 is too small for virtual size 1073741824",
                   "needs 2 entries");
    im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_L1_SIZE, 0x20000000);
    expect_refusal(im, EFBIG, "l1_size 536870912 at offset 36 is above 4194304 entries", NULL);
    im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_L1_SIZE, 40000); /* within QEMU's cap, not in the file */
    expect_refusal(im, EINVAL, "L1 table at offset 196608", "320000 bytes, extends past the end");
}

static void
test_l1_entries(void **state)
{
    (void)state;
    struct image im = make_image(3);
    qcow2_put_be64(im.b + OFF_L1 + 8, OFF_L2 | 1);
    expect_refusal(im, EINVAL, "L1 entry 1 at offset 196616: reserved bits set", NULL);
    im = make_image(3);
    qcow2_put_be64(im.b + OFF_L1 + 8, OFF_L2 + 512);
    expect_refusal(im, EINVAL, "L1 entry 1 at offset 196616: offset 262656 is not cluster-aligned",
                   NULL);
    im = make_image(3);
    qcow2_put_be64(im.b + OFF_L1 + 8, IMAGE_SIZE);
    expect_refusal(im, EINVAL, "L1 entry 1 at offset 196616: offset 458752", "past the end");
    im = make_image(3);
    qcow2_put_be64(im.b + OFF_L1 + 8, OFF_L1);
    expect_refusal(im, EINVAL, "L1 entry [196608, 262144) overlaps L1 table", NULL);
}

static void
test_l2_entries(void **state)
{
    (void)state;
    struct image im = make_image(3);
    qcow2_put_be64(im.b + OFF_L2 + 16, (uint64_t)IMAGE_SIZE + CS);
    expect_refusal(im, EINVAL, "L2 entry 2 of L1 entry 0 at offset 262160: data offset 524288",
                   "past the end");
    im = make_image(3);
    qcow2_put_be64(im.b + OFF_L2 + 16, OFF_DATA | (1ull << 3));
    expect_refusal(im, EINVAL, "L2 entry 2 of L1 entry 0", "reserved bits set");
    im = make_image(3);
    qcow2_put_be64(im.b + OFF_L2 + 16, OFF_DATA + 4096);
    expect_refusal(im, EINVAL, "data offset 331776 is not cluster-aligned", NULL);
    im = make_image(2);
    qcow2_put_be64(im.b + OFF_L2 + 16, QCOW2_OFLAG_ZERO);
    expect_refusal(im, EINVAL, "zero flag in a version 2 image", NULL);
    im = make_image(3);
    qcow2_put_be64(im.b + OFF_L2 + 16, QCOW2_OFLAG_COMPRESSED | QCOW2_OFLAG_COPIED | OFF_DATA);
    expect_refusal(im, EINVAL, "compressed cluster with the copied flag", NULL);
    im = make_image(3);
    qcow2_put_be64(im.b + OFF_L2 + 16, QCOW2_OFLAG_COMPRESSED | IMAGE_SIZE);
    expect_refusal(im, EINVAL, "data offset 458752", "past the end");
}

static void
test_refcount_table(void **state)
{
    (void)state;
    struct image im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_REFCOUNT_TABLE_OFFSET, IMAGE_SIZE - CS / 2);
    expect_refusal(im, EINVAL,
                   "refcount table offset 425984 (refcount_table_offset) is not aligned", NULL);
    im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_REFCOUNT_TABLE_OFFSET, OFF_SNAP);
    qcow2_put_be32(im.b + QCOW2_OFF_REFCOUNT_TABLE_CLUSTERS, 2);
    expect_refusal(im, EINVAL, "refcount table at offset 393216", "past the end of the file");
    im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_REFCOUNT_TABLE_OFFSET, 0);
    expect_refusal(im, EINVAL, "refcount table offset 0", "overlaps the header cluster");
    im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_REFCOUNT_TABLE_OFFSET, OFF_L1);
    expect_refusal(im, EINVAL, "refcount table [196608, 262144) overlaps L1 table", NULL);
    im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_REFCOUNT_TABLE_CLUSTERS, 0);
    expect_refusal(im, EINVAL, "refcount_table_clusters at offset 56 is 0", NULL);
    im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_REFCOUNT_TABLE_CLUSTERS, 0xffffffff);
    expect_refusal(im, EFBIG, "refcount_table_clusters 4294967295 at offset 56", "above 8388608");
    im = make_image(3);
    qcow2_put_be64(im.b + OFF_REFTABLE + 8, IMAGE_SIZE);
    expect_refusal(im, EINVAL, "refcount table entry 1 at offset 65544: offset 458752",
                   "past the end");
    im = make_image(3);
    qcow2_put_be64(im.b + OFF_REFTABLE + 8, OFF_DATA | 0x10);
    expect_refusal(im, EINVAL, "refcount table entry 1", "reserved bits set");
}

static void
test_snapshot_table(void **state)
{
    (void)state;
    struct qcow2_limits l;
    default_limits(&l);
    l.max_snapshots = 10;
    struct image im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_NB_SNAPSHOTS, 11);
    qcow2_put_be64(im.b + QCOW2_OFF_SNAPSHOTS_OFFSET, OFF_SNAP);
    char msg[512];
    assert_int_equal(validate_with(im, &l, NULL, msg, sizeof(msg)), -EFBIG);
    assert_non_null(strstr(msg, "nb_snapshots 11 at offset 60 exceeds the limit 10"));

    im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_NB_SNAPSHOTS, 1);
    qcow2_put_be64(im.b + QCOW2_OFF_SNAPSHOTS_OFFSET, IMAGE_SIZE);
    expect_refusal(im, EINVAL, "snapshot table at offset 458752 (snapshots_offset)",
                   "past the end of the file");

    im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_NB_SNAPSHOTS, 1);
    qcow2_put_be64(im.b + QCOW2_OFF_SNAPSHOTS_OFFSET, 0xfffffffffff00000ull);
    expect_refusal(im, EINVAL, "snapshot", "past the end");

    /* 8000 empty (zero) entries of 40 bytes run past the single cluster before EOF. */
    im = make_image(2);
    qcow2_put_be32(im.b + QCOW2_OFF_NB_SNAPSHOTS, 8000);
    qcow2_put_be64(im.b + QCOW2_OFF_SNAPSHOTS_OFFSET, OFF_SNAP);
    expect_refusal(im, EINVAL, "snapshot 1638 at offset 458736", "past the end");

    im = make_image(3); /* v3 wants 16 bytes of extra data */
    qcow2_put_be32(im.b + QCOW2_OFF_NB_SNAPSHOTS, 1);
    qcow2_put_be64(im.b + QCOW2_OFF_SNAPSHOTS_OFFSET, OFF_SNAP);
    expect_refusal(im, EINVAL, "snapshot 0 at offset 393216: extra_data_size 0 is below 16", NULL);

    im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_NB_SNAPSHOTS, 1);
    qcow2_put_be64(im.b + QCOW2_OFF_SNAPSHOTS_OFFSET, OFF_L1);
    qcow2_put_be64(im.b + OFF_L1, 0); /* L1 entries double as the snapshot's fields */
    qcow2_put_be64(im.b + OFF_L1 + 8, 0);
    qcow2_put_be32(im.b + OFF_L1 + QCOW2_SN_OFF_EXTRA_DATA_SIZE, 16);
    expect_refusal(im, EINVAL, "snapshot table [196608, 196664) overlaps L1 table", NULL);

    im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_NB_SNAPSHOTS, 1);
    qcow2_put_be64(im.b + QCOW2_OFF_SNAPSHOTS_OFFSET, OFF_SNAP);
    qcow2_put_be32(im.b + OFF_SNAP + QCOW2_SN_OFF_EXTRA_DATA_SIZE, 16);
    qcow2_put_be64(im.b + OFF_SNAP + QCOW2_SN_OFF_L1_TABLE_OFFSET, OFF_DATA + 8);
    qcow2_put_be32(im.b + OFF_SNAP + QCOW2_SN_OFF_L1_SIZE, 1);
    expect_refusal(im, EINVAL, "snapshot 0 offset 327688", "not aligned");
}

static void
test_features(void **state)
{
    (void)state;
    struct image im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_INCOMPATIBLE_FEATURES, 1ull << 5 | 1ull << 40);
    expect_refusal(im, ENOTSUP, "unknown incompatible feature bits 0x10000000020", NULL);
    im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_INCOMPATIBLE_FEATURES, QCOW2_INCOMPAT_CORRUPT);
    expect_refusal(im, EINVAL, "marked corrupt (incompatible feature bit 1)", NULL);
    /* Unknown compatible and autoclear bits are harmless by definition. */
    im = make_image(3);
    qcow2_put_be64(im.b + QCOW2_OFF_COMPATIBLE_FEATURES, 1ull << 33);
    qcow2_put_be64(im.b + QCOW2_OFF_AUTOCLEAR_FEATURES, 1ull << 9);
    char msg[512];
    assert_int_equal(validate_with(im, NULL, NULL, msg, sizeof(msg)), 0);
    im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_REFCOUNT_ORDER, 7);
    expect_refusal(im, EINVAL, "refcount_order 7 at offset 96 is above 6", NULL);
}

static void
test_header_length(void **state)
{
    (void)state;
    uint32_t bad[] = {0, 72, 100, 105, CS + 8, 0xfffffff8};
    for (size_t i = 0; i < NA_ARRAY_SIZE(bad); i++) {
        struct image im = make_image(3);
        qcow2_put_be32(im.b + QCOW2_OFF_HEADER_LENGTH, bad[i]);
        char want[64];
        snprintf(want, sizeof(want), "header_length %u at offset 100", bad[i]);
        expect_refusal(im, EINVAL, want, NULL);
    }
    /* 104, as older QEMU wrote it, is fine. */
    struct image im = make_image(3);
    qcow2_put_be32(im.b + QCOW2_OFF_HEADER_LENGTH, 104);
    char msg[512];
    assert_int_equal(validate_with(im, NULL, NULL, msg, sizeof(msg)), 0);
}

static void
test_extension_overrun(void **state)
{
    (void)state;
    struct image im = make_image(3);
    put_ext(im.b + QCOW2_V3_HEADER_SIZE, 0x12345678, 0xffff0000);
    expect_refusal(im, EINVAL, "header extension 0x12345678 at offset 112 has length 4294901760",
                   "past the end of the header area (65536)");
    /* Extensions must stop before the backing file name. */
    struct qcow2_limits l;
    default_limits(&l);
    l.allow_backing = true;
    im = make_image(3);
    put_ext(im.b + QCOW2_V3_HEADER_SIZE, QCOW2_EXT_BACKING_FORMAT, 5);
    memcpy(im.b + QCOW2_V3_HEADER_SIZE + 8, "qcow2", 5);
    put_ext(im.b + QCOW2_V3_HEADER_SIZE + 16, 0x1, 64);
    qcow2_put_be64(im.b + QCOW2_OFF_BACKING_FILE_OFFSET, 160);
    qcow2_put_be32(im.b + QCOW2_OFF_BACKING_FILE_SIZE, 4);
    memcpy(im.b + 160, "/b/c", 4);
    char msg[512];
    assert_int_equal(validate_with(im, &l, NULL, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "past the end of the header area (160)"));
    /* Empty extensions filling the whole cluster, with no end marker: accepted, as by QEMU. */
    im = make_image(3);
    for (uint32_t off = QCOW2_V3_HEADER_SIZE; off + 8 <= CS; off += 8)
        put_ext(im.b + off, 0x7, 0);
    assert_int_equal(validate_with(im, NULL, NULL, msg, sizeof(msg)), 0);
}

static void
test_truncated_header_cluster(void **state)
{
    (void)state;
    /* Only the 112-byte header is in the file: its tables cannot be either. */
    struct image im = make_image(3);
    im.size = QCOW2_V3_HEADER_SIZE;
    expect_refusal(im, EINVAL, "L1 table at offset 196608", "past the end");
}

/* --- raw ----------------------------------------------------------------------------- */

static void
test_raw(void **state)
{
    (void)state;
    struct qcow2_limits l;
    qcow2_limits_init(&l);
    l.max_virtual_size = 1 << 20;
    cleanup_close int fd = memfd_create("raw", MFD_CLOEXEC);
    struct qcow2_info info;
    struct na_error *err = NULL;
    assert_int_equal(qcow2_validate_format(fd, QCOW2_FORMAT_RAW, &l, &info, &err), -EINVAL);
    assert_non_null(strstr(err->msg, "raw image is empty"));
    na_error_clear(&err);
    /* Zeros, then a sector that merely mentions a signature past where it counts. */
    uint8_t sector[4096] = {0};
    memcpy(sector + 1, "QFI\xfb", 4);
    memcpy(sector + 0x41, "\x7f\x10\xda\xbe", 4);
    assert_int_equal(write(fd, sector, sizeof(sector)), 4096);
    assert_int_equal(qcow2_validate_raw(fd, &l, &info, &err), 0);
    assert_int_equal(info.format, QCOW2_FORMAT_RAW);
    assert_int_equal(info.virtual_size, 4096);
    assert_int_equal(write(fd, "x", 1), 1); /* QEMU shows whole sectors */
    assert_int_equal(qcow2_validate_raw(fd, &l, &info, &err), 0);
    assert_int_equal(info.virtual_size, 4608);
    assert_int_equal(info.file_size, 4097);
    assert_int_equal(ftruncate(fd, (1 << 20) + 1), 0);
    assert_int_equal(qcow2_validate_raw(fd, &l, &info, &err), -EFBIG);
    assert_int_equal(err->code, NA_CODE_IMAGE);
    assert_non_null(strstr(err->msg, "raw image of 1048577 bytes exceeds the limit 1048576"));
    na_error_clear(&err);
}

/* Writes size bytes of zeros with magic at offset (negative: from the end) to a memfd and
 * validates it as raw: refused naming `format`, or accepted when format is NULL. */
static void
expect_raw(const char *format, size_t size, long offset, const void *magic, size_t magic_size)
{
    cleanup_free uint8_t *b = na_xcalloc(1, size);
    size_t at = offset < 0 ? size - (size_t)-offset : (size_t)offset;
    memcpy(b + at, magic, magic_size);
    cleanup_close int fd = memfd_create("raw", MFD_CLOEXEC);
    assert_int_equal(write(fd, b, size), (ssize_t)size);
    struct qcow2_info info;
    struct na_error *err = NULL;
    int ret = qcow2_validate_raw(fd, NULL, &info, &err);
    if (!format) {
        if (ret < 0)
            fail_msg("refused: %s", err->msg);
        return;
    }
    if (ret == 0)
        fail_msg("a raw image with a %s signature at %ld was accepted", format, offset);
    assert_int_equal(ret, -EINVAL);
    assert_int_equal(err->code, NA_CODE_IMAGE);
    cleanup_free char *want = na_xasprintf("image declared raw is a %s image", format);
    if (!strstr(err->msg, want))
        fail_msg("message \"%s\" lacks \"%s\"", err->msg, want);
    na_error_free(err);
}

/* A raw image whose content is another format is refused (OpenStack's format inspector,
 * OSSA-2024-001): each signature, at its place, in a crafted sector. */
static void
test_raw_foreign_formats(void **state)
{
    (void)state;
    /* The qcow2 make_image() writes, with its backing file or not. */
    struct image im = make_image(3);
    cleanup_close int fd = memfd_create("raw", MFD_CLOEXEC);
    assert_int_equal(write(fd, im.b, im.size), (ssize_t)im.size);
    free(im.b);
    struct qcow2_info info;
    struct na_error *err = NULL;
    assert_int_equal(qcow2_validate_raw(fd, NULL, &info, &err), -EINVAL);
    assert_non_null(
        strstr(err->msg, "image declared raw is a qcow2 image (\"QFI\\xfb\" at offset 0)"));
    na_error_clear(&err);

    expect_raw("qcow2", 512, 0, "QFI\xfb\0\0\0\1", 8); /* qcow version 1 */
    expect_raw("QED", 4096, 0, "QED\0", 4);
    expect_raw("VMDK", 4096, 0, "KDMV", 4);
    expect_raw("VMDK", 4096, 0, "COWD", 4);
    static const char descriptor[] = "# Disk DescriptorFile\nversion=1\nCID=fffffffe\n"
                                     "createType=\"monolithicFlat\"\n"
                                     "RW 2048 FLAT \"/etc/shadow\" 0\n";
    expect_raw("VMDK", sizeof(descriptor) - 1, 0, descriptor, sizeof(descriptor) - 1);
    expect_raw("VHDX", 1 << 20, 0, "vhdxfile", 8);
    expect_raw("VHD", 4096, 0, "conectix", 8);    /* dynamic: the footer's copy first */
    expect_raw("VHD", 4096, -512, "conectix", 8); /* fixed: the footer only */
    expect_raw("VHD", 512, -512, "conectix", 8);
    expect_raw("VDI", 4096, 0x40, "\x7f\x10\xda\xbe", 4);
    static const char vdi[] = "<<< Oracle VM VirtualBox Disk Image >>>\n";
    cleanup_free uint8_t *v = na_xcalloc(1, 512);
    memcpy(v, vdi, sizeof(vdi) - 1);
    memcpy(v + 0x40, "\x7f\x10\xda\xbe", 4);
    expect_raw("VDI", 512, 0, v, 512);
    expect_raw("LUKS", 4096, 0, "LUKS\xba\xbe", 6);
    expect_raw("Parallels", 4096, 0, "WithoutFreeSpace", 16);
    expect_raw("Parallels", 4096, 0, "WithouFreSpacExt", 16);
    expect_raw("Bochs", 4096, 0, "Bochs Virtual HD Image", 22);

    /* Near misses are guest data: a signature not where its format puts it, a truncated
     * one, a VHD footer that is not the last sector, and files shorter than a signature. */
    expect_raw(NULL, 4096, 512, "QFI\xfb", 4);
    expect_raw(NULL, 4096, 0, "QFI", 3);
    expect_raw(NULL, 4096, 0, "LUKS\xba", 5);
    expect_raw(NULL, 4096, 0x44, "\x7f\x10\xda\xbe", 4);
    expect_raw(NULL, 4096, -1024, "conectix", 8);
    expect_raw(NULL, 4096, 0, "# Disk Descriptor", 17);
    expect_raw(NULL, 3, 0, "QFI", 3);
    expect_raw(NULL, 0x43, 0x40, "\x7f\x10\xda", 3);
}

/* The pure probe on buffers: a short head or no tail is not read past its end. */
static void
test_probe_buffers(void **state)
{
    (void)state;
    const char *where = NULL;
    uint8_t head[QCOW2_PROBE_HEAD_SIZE] = {0}, tail[QCOW2_PROBE_TAIL_SIZE] = {0};
    assert_null(qcow2_probe_foreign(head, sizeof(head), tail, &where));
    memcpy(head, "QED", 4);
    assert_string_equal(qcow2_probe_foreign(head, 4, NULL, &where), "QED");
    assert_null(qcow2_probe_foreign(head, 3, NULL, &where));
    memcpy(head + 0x40, "\x7f\x10\xda\xbe", 4);
    memset(head, 0, 4);
    assert_null(qcow2_probe_foreign(head, 0x43, NULL, &where));
    assert_string_equal(qcow2_probe_foreign(head, 0x44, NULL, &where), "VDI");
    assert_string_equal(where, "signature 0xbeda107f at offset 0x40");
    memset(head, 0, sizeof(head));
    memcpy(tail, "conectix", 8);
    assert_null(qcow2_probe_foreign(head, sizeof(head), NULL, &where));
    assert_string_equal(qcow2_probe_foreign(head, sizeof(head), tail, &where), "VHD");
}

static void
test_format_parse(void **state)
{
    (void)state;
    enum qcow2_format f;
    struct na_error *err = NULL;
    assert_int_equal(qcow2_format_parse("raw", "image.format", &f, &err), 0);
    assert_int_equal(f, QCOW2_FORMAT_RAW);
    assert_int_equal(qcow2_format_parse("qcow2", "image.format", &f, &err), 0);
    assert_int_equal(f, QCOW2_FORMAT_QCOW2);
    assert_string_equal(qcow2_format_name(f), "qcow2");
    assert_true(qcow2_format_parse("vmdk", "image.format", &f, &err) < 0);
    assert_int_equal(err->code, NA_CODE_INVALID_ARGUMENT);
    assert_string_equal(err->field, "image.format");
    na_error_clear(&err);
}

/* --- overlay writer ---------------------------------------------------------------------- */

static char *
make_tmpdir(void)
{
    char *dir = na_xstrdup("/tmp/test_qcow2.XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void
rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        cleanup_free char *p = na_xasprintf("%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int
count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* qcow2_overlay_create() at a path: the directory's descriptor and the last component. */
static int
overlay_at(const char *path, const char *backing, const char *format, uint64_t size,
           struct na_error **err)
{
    cleanup_free char *dir_copy = na_xstrdup(path);
    cleanup_free char *base_copy = na_xstrdup(path);
    cleanup_close int dirfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "open the directory of `%s`", path);
    return qcow2_overlay_create(dirfd, basename(base_copy), NULL, backing, format, size, err);
}

static void
test_overlay(void **state)
{
    (void)state;
    cleanup_free char *dir = make_tmpdir();
    cleanup_free char *path = na_xasprintf("%s/disk", dir);
    struct na_error *err = NULL;
    uint64_t vsize = 20ull << 30;
    assert_int_equal(overlay_at(path, "/var/lib/nodeagent/images/abc", "qcow2", vsize, &err), 0);
    assert_null(err);
    assert_int_equal(count_entries(dir), 1); /* no temp file left */

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);

    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    struct qcow2_limits l;
    qcow2_limits_init(&l);
    struct qcow2_info info;
    assert_int_equal(qcow2_validate(fd, &l, &info, &err), -ENOTSUP);
    na_error_clear(&err);
    l.allow_backing = true;
    assert_int_equal(qcow2_validate(fd, &l, &info, &err), 0);
    assert_int_equal(info.version, 3);
    assert_int_equal(info.virtual_size, vsize);
    assert_int_equal(info.cluster_size, 65536);
    assert_string_equal(info.backing_file, "/var/lib/nodeagent/images/abc");
    assert_string_equal(info.backing_format, "qcow2");
    assert_false(info.dirty);

    /* Layout: header, refcount table, refcount block, one cluster of L1 (40 entries). */
    uint8_t h[QCOW2_V3_HEADER_SIZE];
    assert_int_equal(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
    assert_int_equal(qcow2_be32(h + QCOW2_OFF_L1_SIZE), 40);
    assert_int_equal(qcow2_be64(h + QCOW2_OFF_L1_TABLE_OFFSET), 3 * CS);
    assert_int_equal(qcow2_be64(h + QCOW2_OFF_REFCOUNT_TABLE_OFFSET), CS);
    assert_int_equal(qcow2_be32(h + QCOW2_OFF_REFCOUNT_TABLE_CLUSTERS), 1);
    assert_int_equal(qcow2_be32(h + QCOW2_OFF_REFCOUNT_ORDER), 4);
    assert_int_equal(qcow2_be32(h + QCOW2_OFF_HEADER_LENGTH), 112);
    assert_int_equal(qcow2_be64(h + QCOW2_OFF_INCOMPATIBLE_FEATURES), 0);
    assert_int_equal(qcow2_be64(h + QCOW2_OFF_COMPATIBLE_FEATURES), 0);
    assert_int_equal(st.st_size, 4 * CS);
    uint8_t rt[8], rb[10];
    assert_int_equal(pread(fd, rt, sizeof(rt), CS), 8);
    assert_int_equal(qcow2_be64(rt), 2 * CS);
    assert_int_equal(pread(fd, rb, sizeof(rb), 2 * CS), 10);
    for (int i = 0; i < 4; i++)
        assert_int_equal(qcow2_be16(rb + 2 * i), 1);
    assert_int_equal(qcow2_be16(rb + 8), 0);

    /* Never replaces an existing file. */
    assert_int_equal(overlay_at(path, "/x", "raw", vsize, &err), -EEXIST);
    assert_int_equal(err->code, NA_CODE_STORAGE);
    na_error_clear(&err);
    assert_int_equal(count_entries(dir), 1);

    rm_tree(dir);
}

/* A symlink under the overlay's name is neither followed nor replaced. */
static void
test_overlay_does_not_follow_a_symlink(void **state)
{
    (void)state;
    cleanup_free char *dir = make_tmpdir();
    cleanup_free char *outside = make_tmpdir();
    cleanup_free char *target = na_xasprintf("%s/target", outside);
    cleanup_close int tfd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    assert_true(tfd >= 0);
    cleanup_free char *link = na_xasprintf("%s/disk", dir);
    assert_int_equal(symlink(target, link), 0);
    cleanup_close int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct qcow2_file_owner owner = {getuid(), getgid(), 0600};
    struct na_error *err = NULL;
    assert_int_equal(qcow2_overlay_create(dirfd, "disk", &owner, "/base", "raw", 1 << 20, &err),
                     -EEXIST);
    na_error_clear(&err);
    struct stat st;
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_size, 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    assert_int_equal(count_entries(dir), 1); /* no temp file left */
    rm_tree(dir);
    rm_tree(outside);
}

/* qemu-img grows the image through the descriptor, without opening the backing file the
 * header names (here one that does not exist, as a guest could write). */
static void
test_grow_through_the_descriptor(void **state)
{
    (void)state;
    cleanup_free char *dir = make_tmpdir();
    cleanup_free char *path = na_xasprintf("%s/disk", dir);
    struct na_error *err = NULL;
    assert_int_equal(overlay_at(path, "/nonexistent/base", "raw", 1 << 20, &err), 0);
    cleanup_close int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    assert_true(fd >= 0);
    assert_int_equal(qcow2_grow(fd, 4 << 20, &err), 0);
    assert_null(err);
    struct qcow2_limits l;
    qcow2_limits_init(&l);
    l.allow_backing = true;
    struct qcow2_info info;
    assert_int_equal(qcow2_validate(fd, &l, &info, &err), 0);
    assert_int_equal(info.virtual_size, 4 << 20);
    assert_string_equal(info.backing_file, "/nonexistent/base");
    rm_tree(dir);
}

static void
test_overlay_sizes(void **state)
{
    (void)state;
    cleanup_free char *dir = make_tmpdir();
    struct na_error *err = NULL;
    struct qcow2_limits l;
    qcow2_limits_init(&l);
    l.allow_backing = true;
    l.max_virtual_size = UINT64_MAX;
    /* One byte, one L1 entry exactly, one past, and the largest QEMU opens (2 PiB). */
    uint64_t sizes[] = {1, 512ull << 20, (512ull << 20) + 1, 1ull << 51};
    uint32_t l1[] = {1, 1, 2, 1u << 22};
    for (size_t i = 0; i < NA_ARRAY_SIZE(sizes); i++) {
        cleanup_free char *path = na_xasprintf("%s/d%zu", dir, i);
        assert_int_equal(overlay_at(path, "/base", "raw", sizes[i], &err), 0);
        cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct qcow2_info info;
        assert_int_equal(qcow2_validate(fd, &l, &info, &err), 0);
        assert_int_equal(info.virtual_size, sizes[i]);
        assert_string_equal(info.backing_format, "raw");
        uint8_t b[4];
        assert_int_equal(pread(fd, b, 4, QCOW2_OFF_L1_SIZE), 4);
        assert_int_equal(qcow2_be32(b), l1[i]);
    }
    cleanup_free char *p = na_xasprintf("%s/bad", dir);
    assert_int_equal(overlay_at(p, "/base", "raw", 0, &err), -EINVAL);
    na_error_clear(&err);
    assert_int_equal(overlay_at(p, "/base", "raw", (1ull << 51) + 1, &err), -EINVAL);
    na_error_clear(&err);
    assert_int_equal(overlay_at(p, "/base", "vmdk", 1 << 20, &err), -EINVAL);
    assert_int_equal(err->code, NA_CODE_INVALID_ARGUMENT);
    na_error_clear(&err);
    assert_int_equal(overlay_at(p, "", "raw", 1 << 20, &err), -EINVAL);
    na_error_clear(&err);
    cleanup_free char *nodir = na_xasprintf("%s/missing/disk", dir);
    assert_int_equal(overlay_at(nodir, "/base", "raw", 1 << 20, &err), -ENOENT);
    na_error_clear(&err);
    assert_int_equal(count_entries(dir), 4);
    rm_tree(dir);
}

/* --- corpus of qemu-img images (tests/system/qcow2_corpus.sh) --------------------------- */

static bool
ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Names: *.raw raw, *.bad.qcow2 and *.bad.raw must be refused, *.backed.qcow2 has a
 * backing file, other *.qcow2 must pass; <name>.vsize holds qemu-img's virtual size. */
static void
check_corpus_file(const char *dir, const char *name, int *failures)
{
    cleanup_free char *path = na_xasprintf("%s/%s", dir, name);
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    struct qcow2_limits l;
    qcow2_limits_init(&l);
    l.allow_backing = ends_with(name, ".backed.qcow2");
    bool bad = ends_with(name, ".bad.qcow2") || ends_with(name, ".bad.raw");
    enum qcow2_format fmt = ends_with(name, ".raw") ? QCOW2_FORMAT_RAW : QCOW2_FORMAT_QCOW2;
    struct qcow2_info info;
    struct na_error *err = NULL;
    int ret = qcow2_validate_format(fd, fmt, &l, &info, &err);
    if (bad) {
        printf("corpus: %-28s %s: %s\n", name, ret < 0 ? "refused (expected)" : "ACCEPTED",
               ret < 0 ? err->msg : "");
        *failures += ret == 0;
        na_error_free(err);
        return;
    }
    if (ret < 0) {
        printf("corpus: %-28s REFUSED: %s\n", name, err->msg);
        na_error_free(err);
        (*failures)++;
        return;
    }
    unsigned long long want = 0;
    cleanup_free char *vpath = na_xasprintf("%s.vsize", path);
    cleanup_fclose FILE *vf = fopen(vpath, "r");
    bool have = vf && fscanf(vf, "%llu", &want) == 1;
    bool match = !have || want == info.virtual_size;
    printf("corpus: %-28s ok format=%s version=%u virtual_size=%llu%s cluster=%u snapshots=%u "
           "compressed=%d scan_complete=%d dirty=%d backing=%s%s%s\n",
           name, qcow2_format_name(info.format), info.version,
           (unsigned long long)info.virtual_size, match ? "" : " MISMATCH", info.cluster_size,
           info.n_snapshots, info.compressed, info.l2_scan_complete, info.dirty,
           info.backing_file[0] ? info.backing_file : "-", info.backing_file[0] ? ":" : "",
           info.backing_format);
    *failures += !match;
}

static void
test_corpus(void **state)
{
    (void)state;
    const char *dir = getenv("NODEAGENT_QCOW2_CORPUS");
    DIR *d = opendir(dir);
    assert_non_null(d);
    int failures = 0, n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!ends_with(de->d_name, ".qcow2") && !ends_with(de->d_name, ".raw"))
            continue;
        check_corpus_file(dir, de->d_name, &failures);
        n++;
    }
    closedir(d);
    printf("corpus: %d images, %d failures\n", n, failures);
    assert_int_equal(failures, 0);

    /* Overlays for the script to check with qemu-img. */
    cleanup_free char *out = na_xasprintf("%s/out", dir);
    mkdir(out, 0700);
    const char *bases[][3] = {{"base-v3.qcow2", "qcow2", "over-qcow2.qcow2"},
                              {"base.raw", "raw", "over-raw.qcow2"}};
    for (size_t i = 0; i < NA_ARRAY_SIZE(bases); i++) {
        cleanup_free char *base = na_xasprintf("%s/%s", dir, bases[i][0]);
        cleanup_free char *path = na_xasprintf("%s/%s", out, bases[i][2]);
        struct na_error *err = NULL;
        unlink(path);
        if (overlay_at(path, base, bases[i][1], 3ull << 30, &err) < 0)
            fail_msg("overlay %s: %s", path, err->msg);
    }
}

int
main(void)
{
    /* The corpus comes from a system test (tests/system/qcow2_corpus.sh), which runs it
     * alone; `make check-unit` runs the rest, none of them skipped. */
    const char *corpus = getenv("NODEAGENT_QCOW2_CORPUS");
    if (corpus && *corpus) {
        const struct CMUnitTest only[] = {cmocka_unit_test(test_corpus)};
        return cmocka_run_group_tests_name("qcow2 corpus", only, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_v3),
        cmocka_unit_test(test_valid_v2),
        cmocka_unit_test(test_valid_extensions),
        cmocka_unit_test(test_valid_with_snapshot),
        cmocka_unit_test(test_snapshot_table_read),
        cmocka_unit_test(test_dirty_accepted),
        cmocka_unit_test(test_compressed_seen),
        cmocka_unit_test(test_l2_budget),
        cmocka_unit_test(test_compression_type),
        cmocka_unit_test(test_too_small),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_bad_version),
        cmocka_unit_test(test_backing_file_refused),
        cmocka_unit_test(test_backing_file_allowed),
        cmocka_unit_test(test_data_file_refused),
        cmocka_unit_test(test_encryption_refused),
        cmocka_unit_test(test_cluster_bits),
        cmocka_unit_test(test_virtual_size),
        cmocka_unit_test(test_l1_table),
        cmocka_unit_test(test_l1_entries),
        cmocka_unit_test(test_l2_entries),
        cmocka_unit_test(test_refcount_table),
        cmocka_unit_test(test_snapshot_table),
        cmocka_unit_test(test_features),
        cmocka_unit_test(test_header_length),
        cmocka_unit_test(test_extension_overrun),
        cmocka_unit_test(test_truncated_header_cluster),
        cmocka_unit_test(test_raw),
        cmocka_unit_test(test_raw_foreign_formats),
        cmocka_unit_test(test_probe_buffers),
        cmocka_unit_test(test_format_parse),
        cmocka_unit_test(test_overlay),
        cmocka_unit_test(test_overlay_does_not_follow_a_symlink),
        cmocka_unit_test(test_grow_through_the_descriptor),
        cmocka_unit_test(test_overlay_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
