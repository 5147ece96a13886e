/* `instances UUID`: the guest's last figures (the "stats" object of GET /v1/instances/UUID,
 * agent/observed/guest_stats.c), one line per part.  A figure the agent did not have is "-". */
#include "tools/nodectl/nodectl.h"

#include <inttypes.h>

/* A JSON number as text: integers as they are, reals with three decimals. */
static void
figure(char *buf, size_t size, json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_integer(v))
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, size, "%.3f", json_real_value(v));
    else
        snprintf(buf, size, "-");
}

static void
print_line(const char *head, json_t *obj, const char *const *keys, size_t n)
{
    printf("  %s:", head);
    for (size_t i = 0; i < n; i++) {
        char v[48];
        figure(v, sizeof(v), obj, keys[i]);
        printf(" %s=%s", keys[i], v);
    }
    putchar('\n');
}

void
nodectl_print_guest_stats(json_t *stats)
{
    char when[40] = "-";
    json_t *ms = json_object_get(stats, "collected_ms");
    if (json_is_integer(ms))
        nodectl_format_time(json_integer_value(ms), when, sizeof(when));
    printf("stats (collected %s):\n", when);
    static const char *const cpu[] = {"cpu_seconds", "cpu_user_seconds", "cpu_system_seconds"};
    print_line("cpu", stats, cpu, NA_ARRAY_SIZE(cpu));
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(stats, "vcpu_seconds"), i, v)
    {
        if (json_is_number(v))
            printf("  vcpu %zu: seconds=%.3f\n", i, json_number_value(v));
    }
    static const char *const mem[] = {"actual_balloon_bytes", "unused_bytes", "available_bytes",
                                      "resident_bytes"};
    print_line("memory", json_object_get(stats, "memory"), mem, NA_ARRAY_SIZE(mem));
    static const char *const disk[] = {"read_bytes",  "read_ops",  "read_seconds",
                                       "write_bytes", "write_ops", "write_seconds"};
    json_array_foreach(json_object_get(stats, "disks"), i, v)
    {
        char head[64];
        snprintf(head, sizeof(head), "disk %s",
                 json_string_value(json_object_get(v, "drive")) ?: "?");
        print_line(head, v, disk, NA_ARRAY_SIZE(disk));
    }
    static const char *const nic[] = {"rx_bytes", "rx_packets", "rx_errors", "rx_dropped",
                                      "tx_bytes", "tx_packets", "tx_errors", "tx_dropped"};
    json_array_foreach(json_object_get(stats, "nics"), i, v)
    {
        char head[64];
        snprintf(head, sizeof(head), "nic %s",
                 json_string_value(json_object_get(v, "interface")) ?: "?");
        print_line(head, v, nic, NA_ARRAY_SIZE(nic));
    }
}
