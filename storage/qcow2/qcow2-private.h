/* qcow2 on-disk format (QEMU docs/interop/qcow2.txt), shared by the module and its tests.
 * Every integer on disk is big-endian. */
#ifndef NODEAGENT_QCOW2_PRIVATE_H
#define NODEAGENT_QCOW2_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */

/* Header field offsets. */
#define QCOW2_OFF_MAGIC 0
#define QCOW2_OFF_VERSION 4
#define QCOW2_OFF_BACKING_FILE_OFFSET 8
#define QCOW2_OFF_BACKING_FILE_SIZE 16
#define QCOW2_OFF_CLUSTER_BITS 20
#define QCOW2_OFF_SIZE 24
#define QCOW2_OFF_CRYPT_METHOD 32
#define QCOW2_OFF_L1_SIZE 36
#define QCOW2_OFF_L1_TABLE_OFFSET 40
#define QCOW2_OFF_REFCOUNT_TABLE_OFFSET 48
#define QCOW2_OFF_REFCOUNT_TABLE_CLUSTERS 56
#define QCOW2_OFF_NB_SNAPSHOTS 60
#define QCOW2_OFF_SNAPSHOTS_OFFSET 64
#define QCOW2_V2_HEADER_SIZE 72
/* Version 3 only. */
#define QCOW2_OFF_INCOMPATIBLE_FEATURES 72
#define QCOW2_OFF_COMPATIBLE_FEATURES 80
#define QCOW2_OFF_AUTOCLEAR_FEATURES 88
#define QCOW2_OFF_REFCOUNT_ORDER 96
#define QCOW2_OFF_HEADER_LENGTH 100
#define QCOW2_V3_MIN_HEADER_SIZE 104
#define QCOW2_OFF_COMPRESSION_TYPE 104 /* present when header_length > 104 */
#define QCOW2_V3_HEADER_SIZE 112       /* what QEMU writes today: 104 + type + padding */

#define QCOW2_INCOMPAT_DIRTY (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN                                                                       \
    (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_DATA_FILE |                    \
     QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_EXTL2)
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)
#define QCOW2_AUTOCLEAR_BITMAPS (1ull << 0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW (1ull << 1)

#define QCOW2_COMPRESSION_ZLIB 0
#define QCOW2_COMPRESSION_ZSTD 1

/* Header extension types. */
#define QCOW2_EXT_END 0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857u
#define QCOW2_EXT_BITMAPS 0x23852875u
#define QCOW2_EXT_CRYPTO 0x0537be77u
#define QCOW2_EXT_DATA_FILE 0x44415441u

#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_EXTL2_MIN_CLUSTER_BITS 14
#define QCOW2_MAX_BACKING_FILE_SIZE 1023
#define QCOW2_MAX_BACKING_FORMAT_SIZE 15 /* QEMU keeps it in char[16] */

/* QEMU's own ceilings (block/qcow2.h); an image above them does not open anyway. */
#define QCOW2_MAX_L1_SIZE (32u << 20)      /* bytes of L1 table */
#define QCOW2_MAX_REFTABLE_SIZE (8u << 20) /* bytes of refcount table */
#define QCOW2_MAX_SNAPSHOTS 65536u
#define QCOW2_MAX_SNAPSHOTS_SIZE (64u << 20) /* bytes of snapshot table */
#define QCOW2_MAX_SNAPSHOT_EXTRA_DATA 1024u

/* L1, L2 and refcount table entries. */
#define QCOW2_OFLAG_COPIED (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO (1ull << 0)
#define QCOW2_L1E_OFFSET_MASK 0x00fffffffffffe00ull
#define QCOW2_L1E_RESERVED_MASK 0x7f000000000001ffull
#define QCOW2_L2E_OFFSET_MASK 0x00fffffffffffe00ull
#define QCOW2_L2E_RESERVED_MASK 0x3f000000000001feull
#define QCOW2_REFT_OFFSET_MASK 0xfffffffffffffe00ull
#define QCOW2_REFT_RESERVED_MASK 0x00000000000001ffull

/* Snapshot table entry: fixed part, then extra data, id string, name, padding to 8. */
#define QCOW2_SN_OFF_L1_TABLE_OFFSET 0
#define QCOW2_SN_OFF_L1_SIZE 8
#define QCOW2_SN_OFF_ID_STR_SIZE 12
#define QCOW2_SN_OFF_NAME_SIZE 14
#define QCOW2_SN_OFF_EXTRA_DATA_SIZE 36
#define QCOW2_SN_HEADER_SIZE 40
#define QCOW2_SN_V3_MIN_EXTRA_DATA 16

/* Feature name table entry. */
#define QCOW2_FEATURE_NAME_ENTRY_SIZE 48

/* Raw content that is another format (probe.c). */
#define QCOW2_PROBE_HEAD_SIZE 512 /* the first bytes of a file that hold every signature */
#define QCOW2_PROBE_TAIL_SIZE 512 /* the footer: a VHD's is its last 512 bytes */

/* The name of the disk image format ("qcow2", "VMDK", "VHD", ...) whose signature is in
 * head (the first head_size bytes of a file, at most QCOW2_PROBE_HEAD_SIZE are looked at)
 * or tail (the file's last QCOW2_PROBE_TAIL_SIZE bytes; NULL when the file is shorter than
 * that), with *where describing the signature; NULL when none is. */
const char *qcow2_probe_foreign(const uint8_t *head, size_t head_size, const uint8_t *tail,
                                const char **where);

static inline uint16_t
qcow2_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t
qcow2_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t
qcow2_be64(const uint8_t *p)
{
    return ((uint64_t)qcow2_be32(p) << 32) | qcow2_be32(p + 4);
}

static inline void
qcow2_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void
qcow2_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void
qcow2_put_be64(uint8_t *p, uint64_t v)
{
    qcow2_put_be32(p, (uint32_t)(v >> 32));
    qcow2_put_be32(p + 4, (uint32_t)v);
}

/* Publishing through descriptors (publish.c).  qcow2_tmpfile_at opens a new temp file
 * "<name>.part" in dirfd (O_EXCL | O_NOFOLLOW, mode 0600), after removing one an earlier
 * write left, and returns its descriptor and *tmp_name (the caller frees it); writers of one
 * name in one directory take turns (an instance's operations do).  qcow2_publish_at gives
 * it owner (if not NULL) through fd, fsyncs it and renames it to name (replacing, or
 * failing with -EEXIST when !replace). */
struct na_error;
struct qcow2_file_owner;
int qcow2_tmpfile_at(int dirfd, const char *name, char **tmp_name, struct na_error **err);
int qcow2_publish_at(int dirfd, int fd, const char *tmp_name, const char *name,
                     const struct qcow2_file_owner *owner, bool replace, struct na_error **err);

#endif
