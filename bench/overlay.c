/* bench/overlay: qcow2 overlay creation by storage/qcow2 against `qemu-img create`, in one run.
 *
 * On each base image given (bench/run.sh makes a qcow2 and a raw one) it creates --count
 * overlays of 10 GiB with qcow2_overlay_create() and as many with
 *   qemu-img create -f qcow2 -o compat=1.1 -b BASE -F FMT OVERLAY 10G
 * started with posix_spawn (an argv array, no shell) and waited for, which is what the agent
 * would have to do without storage/qcow2.  The two tools alternate one creation at a time and
 * which goes first flips every round, so that machine noise (page cache, journal commits,
 * neighbours on the host) falls on both alike.  Each creation is timed alone with
 * CLOCK_MONOTONIC, around the call or from posix_spawn to waitpid; the unlink after it is not
 * timed.  A few untimed rounds first warm the page cache for qemu-img and its libraries, as a
 * busy compute node would have them.
 *
 * Before anything is timed, the first overlay of each tool on each base is checked with
 * `qemu-img info --output=json`: format, compat, virtual size, backing file and backing format
 * must be the ones asked for, or the benchmark fails.  A fast wrong overlay is worth nothing,
 * and the check also shows that both tools made the same thing.
 *
 * Output: one Markdown section on stdout for docs/benchmarks.md.  Exit status 1 on failure,
 * 2 on bad usage. */
#include "common/common.h"
#include "storage/qcow2/qcow2.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

#define OVERLAY_SIZE (10ull << 30)
#define OVERLAY_SIZE_ARG "10G"
#define WARMUP_ROUNDS 5
#define TARGET_RATIO 10.0 /* issue 3 */
#define MAX_BASES 4

enum tool { TOOL_OURS, TOOL_QEMU_IMG, N_TOOLS };

static const char *const tool_names[N_TOOLS] = {"storage/qcow2", "qemu-img create"};
static const char *const tool_tags[N_TOOLS] = {"ours", "qemu"};

struct base {
    const char *path;
    const char *format; /* "qcow2" or "raw" */
    uint64_t virtual_size;
    uint64_t *ns[N_TOOLS]; /* one per timed creation */
};

struct bench {
    const char *dir;
    const char *qemu_img; /* looked up in PATH */
    int count;
    int devnull; /* stdout of `qemu-img create` */
    struct base bases[MAX_BASES];
    size_t n_bases;
};

struct stats {
    double median, p90, mean, min, max; /* milliseconds */
};

static void
usage(FILE *out)
{
    fprintf(out, "usage: overlay --dir DIR --base FMT:PATH... [--count N] [--qemu-img PATH]\n"
                 "\n"
                 "Times qcow2_overlay_create() against `qemu-img create` and prints a Markdown\n"
                 "section on stdout.\n"
                 "\n"
                 "  --dir DIR        where overlays are created (and deleted); must exist\n"
                 "  --base FMT:PATH  a base image, FMT qcow2 or raw, PATH absolute (repeatable)\n"
                 "  --count N        overlays per tool and base (default 200)\n"
                 "  --qemu-img PATH  the qemu-img to run (default: qemu-img from PATH)\n"
                 "  -h, --help       this text\n");
}

static int
parse_base(char *arg, struct base *out)
{
    char *colon = strchr(arg, ':');
    if (!colon)
        return -EINVAL;
    *colon = '\0';
    const char *path = colon + 1;
    if ((strcmp(arg, "qcow2") != 0 && strcmp(arg, "raw") != 0) || path[0] != '/')
        return -EINVAL;
    *out = (struct base){.path = path, .format = arg};
    return 0;
}

/* Returns 0, 1 for --help, or -EINVAL after printing why. */
static int
parse_opts(int argc, char **argv, struct bench *b)
{
    static const struct option longopts[] = {
        {"dir", required_argument, NULL, 'd'},   {"base", required_argument, NULL, 'b'},
        {"count", required_argument, NULL, 'n'}, {"qemu-img", required_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},        {0},
    };
    *b = (struct bench){.count = 200, .qemu_img = "qemu-img", .devnull = -1};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            b->dir = optarg;
            break;
        case 'b':
            if (b->n_bases == MAX_BASES || parse_base(optarg, &b->bases[b->n_bases]) < 0) {
                fprintf(stderr, "overlay: bad --base (FMT:/PATH, at most %d)\n", MAX_BASES);
                return -EINVAL;
            }
            b->n_bases++;
            break;
        case 'n': {
            char *end = NULL;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 1 || v > 100000) {
                fprintf(stderr, "overlay: bad --count `%s` (1..100000)\n", optarg);
                return -EINVAL;
            }
            b->count = (int)v;
            break;
        }
        case 'q':
            b->qemu_img = optarg;
            break;
        case 'h':
            return 1;
        default:
            return -EINVAL;
        }
    }
    if (optind < argc || !b->dir || b->n_bases == 0) {
        fprintf(stderr, "overlay: --dir and at least one --base are required\n");
        return -EINVAL;
    }
    return 0;
}

/* Runs argv with stdout on out_fd and stderr inherited; 0 when it exits with status 0. */
static int
spawn_wait(char *const argv[], int out_fd, struct na_error **err)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return na_error_set(err, NA_CODE_INTERNAL, rc, "spawn %s", argv[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return na_error_set(err, NA_CODE_INTERNAL, errno, "wait for %s", argv[0]);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return na_error_set(err, NA_CODE_INTERNAL, 0, "`%s %s` failed (wait status %d)", argv[0],
                            argv[1], status);
    return 0;
}

/* Runs argv and returns its stdout, NUL-terminated, in *out. */
static int
spawn_capture(char *const argv[], char **out, struct na_error **err)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return na_error_set(err, NA_CODE_INTERNAL, errno, "pipe");
    cleanup_close int rd = p[0];
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0)
        return na_error_set(err, NA_CODE_INTERNAL, rc, "spawn %s", argv[0]);

    size_t size = 0, cap = 4096;
    cleanup_free char *buf = na_xmalloc(cap);
    for (;;) {
        if (cap - size < 1024)
            buf = na_xrealloc(buf, cap *= 2);
        ssize_t n = read(rd, buf + size, cap - size - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size += (size_t)n;
    }
    buf[size] = '\0';
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return na_error_set(err, NA_CODE_INTERNAL, errno, "wait for %s", argv[0]);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return na_error_set(err, NA_CODE_INTERNAL, 0, "`%s %s` failed (wait status %d)", argv[0],
                            argv[1], status);
    *out = na_steal(&buf);
    return 0;
}

/* Creates `path` on `base` with `tool`; *ns is the wall time of the creation alone. */

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

static int
create_overlay(const struct bench *b, const struct base *base, enum tool tool, const char *path,
               uint64_t *ns, struct na_error **err)
{
    int ret;
    uint64_t t0;
    if (tool == TOOL_OURS) {
        t0 = na_mono_ns();
        ret = overlay_at(path, base->path, base->format, OVERLAY_SIZE, err);
    } else {
        char *const argv[] = {
            (char *)b->qemu_img,
            "create",
            "-f",
            "qcow2",
            "-o",
            "compat=1.1",
            "-b",
            (char *)base->path,
            "-F",
            (char *)base->format,
            (char *)path,
            OVERLAY_SIZE_ARG,
            NULL,
        };
        t0 = na_mono_ns();
        ret = spawn_wait(argv, b->devnull, err);
    }
    *ns = na_mono_ns() - t0;
    if (ret < 0)
        return na_error_wrap(err, "%s: create %s", tool_names[tool], path);
    return 0;
}

static const char *
json_str(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "(absent)";
}

/* What qemu-img says of the overlay `path` must be what was asked for. */
static int
check_overlay(const struct bench *b, const struct base *base, enum tool tool, const char *path,
              struct na_error **err)
{
    char *const argv[] = {(char *)b->qemu_img, "info", "--output=json", (char *)path, NULL};
    cleanup_free char *out = NULL;
    if (spawn_capture(argv, &out, err) < 0)
        return -1;
    json_error_t jerr;
    json_auto_t *info = json_loads(out, 0, &jerr);
    if (!info)
        return na_error_set(err, NA_CODE_INTERNAL, 0, "qemu-img info %s: bad JSON: %s", path,
                            jerr.text);

    const char *format = json_str(info, "format");
    json_t *vsize = json_object_get(info, "virtual-size");
    const char *backing = json_str(info, "backing-filename");
    const char *backing_format = json_str(info, "backing-filename-format");
    json_t *data = json_object_get(json_object_get(info, "format-specific"), "data");
    const char *compat = json_str(data, "compat");

    const char *what = NULL;
    char got[1100], want[1100];
    if (strcmp(format, "qcow2") != 0) {
        what = "format";
        snprintf(got, sizeof(got), "%s", format);
        snprintf(want, sizeof(want), "qcow2");
    } else if (strcmp(compat, "1.1") != 0) {
        what = "compat";
        snprintf(got, sizeof(got), "%s", compat);
        snprintf(want, sizeof(want), "1.1");
    } else if (!json_is_integer(vsize) || (uint64_t)json_integer_value(vsize) != OVERLAY_SIZE) {
        what = "virtual-size";
        snprintf(got, sizeof(got), "%" JSON_INTEGER_FORMAT, json_integer_value(vsize));
        snprintf(want, sizeof(want), "%llu", OVERLAY_SIZE);
    } else if (strcmp(backing, base->path) != 0) {
        what = "backing-filename";
        snprintf(got, sizeof(got), "%s", backing);
        snprintf(want, sizeof(want), "%s", base->path);
    } else if (strcmp(backing_format, base->format) != 0) {
        what = "backing-filename-format";
        snprintf(got, sizeof(got), "%s", backing_format);
        snprintf(want, sizeof(want), "%s", base->format);
    }
    if (what)
        return na_error_set(err, NA_CODE_INTERNAL, 0,
                            "%s made a wrong overlay: qemu-img info %s says %s is `%s`, not `%s`",
                            tool_names[tool], path, what, got, want);
    return 0;
}

static void
remove_file(const char *path)
{
    if (unlink(path) < 0)
        fprintf(stderr, "overlay: warning: unlink %s: %s\n", path, strerror(errno));
}

/* One creation with `tool` on every base; the sample goes to slot i, or nowhere when i < 0. */
static int
round_step(struct bench *b, enum tool tool, int i, struct na_error **err)
{
    for (size_t k = 0; k < b->n_bases; k++) {
        struct base *base = &b->bases[k];
        cleanup_free char *path =
            na_xasprintf("%s/%s-%s-%d.qcow2", b->dir, tool_tags[tool], base->format, i);
        uint64_t ns;
        int ret = create_overlay(b, base, tool, path, &ns, err);
        if (ret < 0)
            return ret;
        if (i >= 0)
            base->ns[tool][i] = ns;
        remove_file(path);
    }
    return 0;
}

/* The base must be an image our validator accepts; its size is reported. */
static int
check_base(struct base *base, struct na_error **err)
{
    cleanup_close int fd = open(base->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "open base %s", base->path);
    enum qcow2_format format;
    struct qcow2_info info;
    int ret = qcow2_format_parse(base->format, "base", &format, err);
    if (ret == 0)
        ret = qcow2_validate_format(fd, format, NULL, &info, err);
    if (ret < 0)
        return na_error_wrap(err, "base %s", base->path);
    base->virtual_size = info.virtual_size;
    return 0;
}

static int
run_bench(struct bench *b, struct na_error **err)
{
    for (size_t k = 0; k < b->n_bases; k++) {
        struct base *base = &b->bases[k];
        if (check_base(base, err) < 0)
            return -1;
        for (int t = 0; t < N_TOOLS; t++) {
            cleanup_free char *path =
                na_xasprintf("%s/check-%s-%s.qcow2", b->dir, tool_tags[t], base->format);
            uint64_t ns;
            int ret = create_overlay(b, base, (enum tool)t, path, &ns, err);
            if (ret < 0)
                return ret;
            ret = check_overlay(b, base, (enum tool)t, path, err);
            remove_file(path);
            if (ret < 0)
                return ret;
        }
    }
    for (int i = -WARMUP_ROUNDS; i < b->count; i++) {
        /* ABBA: the tool that goes first alternates, and so does what ran just before each. */
        enum tool first = (i & 1) ? TOOL_QEMU_IMG : TOOL_OURS;
        enum tool second = first == TOOL_OURS ? TOOL_QEMU_IMG : TOOL_OURS;
        int ret = round_step(b, first, i, err);
        if (ret == 0)
            ret = round_step(b, second, i, err);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Sorts ns[] in place. */
static void
stats_compute(uint64_t *ns, int n, struct stats *s)
{
    qsort(ns, (size_t)n, sizeof(*ns), cmp_u64);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += (double)ns[i];
    double mid = n % 2 ? (double)ns[n / 2] : ((double)ns[n / 2 - 1] + (double)ns[n / 2]) / 2;
    int p90 = (9 * n + 9) / 10 - 1; /* nearest rank: ceil(0.9 n) */
    *s = (struct stats){
        .median = mid / 1e6,
        .p90 = (double)ns[p90] / 1e6,
        .mean = sum / n / 1e6,
        .min = (double)ns[0] / 1e6,
        .max = (double)ns[n - 1] / 1e6,
    };
}

static void
print_report(const struct bench *b)
{
    struct stats st[MAX_BASES][N_TOOLS];
    double ratio[MAX_BASES];
    bool met = true;
    for (size_t k = 0; k < b->n_bases; k++) {
        for (int t = 0; t < N_TOOLS; t++)
            stats_compute(b->bases[k].ns[t], b->count, &st[k][t]);
        ratio[k] = st[k][TOOL_QEMU_IMG].median / st[k][TOOL_OURS].median;
        met = met && ratio[k] >= TARGET_RATIO;
    }

    printf("## Overlay creation: storage/qcow2 against qemu-img create\n"
           "\n"
           "`bench/overlay` created %d qcow2 v3 overlays of 10 GiB per tool on each base image\n"
           "(sizes below), all in one directory, alternating the two tools one creation at a\n"
           "time (which goes first flips every round), after %d untimed warm-up rounds.  Ours\n"
           "is `qcow2_overlay_create()` called in-process (temp file, fsync, rename, fsync of\n"
           "the directory); the peer is\n"
           "`qemu-img create -f qcow2 -o compat=1.1 -b BASE -F FMT OVERLAY 10G`, started with\n"
           "posix_spawn and waited for, as the agent would have to run it.  Times are the wall\n"
           "time (CLOCK_MONOTONIC) of each creation alone, in milliseconds; unlinking is not\n"
           "timed.\n"
           "\n"
           "Correctness: before timing, the first overlay of each tool on each base passed\n"
           "`qemu-img info --output=json` (format qcow2, compat 1.1, virtual size %llu, backing\n"
           "file and backing format as given).\n"
           "\n"
           "| base (virtual size) | tool | median | p90 | mean | min | max |\n"
           "|---------------------|------|-------:|----:|-----:|----:|----:|\n",
           b->count, WARMUP_ROUNDS, OVERLAY_SIZE);
    for (size_t k = 0; k < b->n_bases; k++)
        for (int t = 0; t < N_TOOLS; t++)
            printf("| %s (%.1f GiB) | %s | %.3f | %.3f | %.3f | %.3f | %.3f |\n",
                   b->bases[k].format, (double)b->bases[k].virtual_size / (1 << 30), tool_names[t],
                   st[k][t].median, st[k][t].p90, st[k][t].mean, st[k][t].min, st[k][t].max);
    printf("\n"
           "| base | qemu-img median / ours |\n"
           "|------|-----------------------:|\n");
    for (size_t k = 0; k < b->n_bases; k++)
        printf("| %s | %.1fx |\n", b->bases[k].format, ratio[k]);
    printf("\n**Target** (issue 3): storage/qcow2 at least %.0fx faster than qemu-img create\n"
           "(ratio of medians), on every base.  **This run: %s** (",
           TARGET_RATIO, met ? "met" : "NOT met");
    for (size_t k = 0; k < b->n_bases; k++)
        printf("%s%.1fx on the %s base", k ? ", " : "", ratio[k], b->bases[k].format);
    printf(").\n");
}

int
main(int argc, char **argv)
{
    struct bench b;
    int rc = parse_opts(argc, argv, &b);
    if (rc != 0) {
        usage(rc > 0 ? stdout : stderr);
        return rc > 0 ? 0 : 2;
    }
    b.devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (b.devnull < 0) {
        fprintf(stderr, "overlay: open /dev/null: %s\n", strerror(errno));
        return 1;
    }
    for (size_t k = 0; k < b.n_bases; k++)
        for (int t = 0; t < N_TOOLS; t++)
            b.bases[k].ns[t] = na_xcalloc((size_t)b.count, sizeof(uint64_t));

    cleanup_error struct na_error *err = NULL;
    rc = run_bench(&b, &err);
    if (rc == 0)
        print_report(&b);
    else
        fprintf(stderr, "overlay: FAILED: %s\n", err ? err->msg : "unknown error");

    for (size_t k = 0; k < b.n_bases; k++)
        for (int t = 0; t < N_TOOLS; t++)
            free(b.bases[k].ns[t]);
    close(b.devnull);
    return rc == 0 ? 0 : 1;
}
