/* The OpenFlow meters of the ports' bandwidth limits, computed from the bound ports (pure:
 * no OVS).  Rates are in kbit/s (1000 bits) as OpenFlow counts them, rounded down so that a
 * meter never lets through more than the limit; a burst of 0 is a tenth of a second at the
 * average. */
#include "net/ovs/ovs-private.h"

#include <inttypes.h>
#include <stdlib.h>

/* KiB (1024 bytes) to kbit (1000 bits), rounded down, at least 1. */
static uint32_t
kib_to_kbit(uint32_t kib)
{
    uint64_t kbit = (uint64_t)kib * 8192 / 1000;
    return kbit ? (uint32_t)kbit : 1;
}

static void
push(struct ovs_meters *m, size_t *cap, uint32_t id, uint32_t kib_sec, uint32_t burst_kib)
{
    if (!kib_sec)
        return;
    if (m->n == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        m->items = na_xrealloc(m->items, *cap * sizeof(*m->items));
    }
    uint32_t rate = kib_to_kbit(kib_sec);
    uint32_t burst = burst_kib ? kib_to_kbit(burst_kib) : (rate / 10 ? rate / 10 : 1);
    m->items[m->n++] = (struct ovs_meter){
        id, na_xasprintf("meter=%" PRIu32 ",kbps,burst,band=type=drop,rate=%" PRIu32
                         ",burst_size=%" PRIu32,
                         id, rate, burst)};
}

static int
cmp_meter(const void *a, const void *b)
{
    uint32_t x = ((const struct ovs_meter *)a)->id, y = ((const struct ovs_meter *)b)->id;
    return x < y ? -1 : x > y;
}

void
ovs_meters_compute(const struct ovs_bound_port *ports, size_t n_ports, struct ovs_meters *out)
{
    *out = (struct ovs_meters){0};
    size_t cap = 0;
    for (size_t i = 0; i < n_ports; i++) {
        if (ports[i].ofport <= 0)
            continue;
        const struct ovs_net_bandwidth *bw = &ports[i].port->bandwidth;
        push(out, &cap, ovs_meter_id(ports[i].ofport, false), bw->outbound_kib_sec,
             bw->outbound_burst_kib);
        push(out, &cap, ovs_meter_id(ports[i].ofport, true), bw->inbound_kib_sec,
             bw->inbound_burst_kib);
    }
    if (out->n)
        qsort(out->items, out->n, sizeof(*out->items), cmp_meter);
}

const struct ovs_meter *
ovs_meters_find(const struct ovs_meters *meters, uint32_t id)
{
    struct ovs_meter key = {id, NULL};
    return meters->n ? bsearch(&key, meters->items, meters->n, sizeof(key), cmp_meter) : NULL;
}

void
ovs_meters_clear(struct ovs_meters *meters)
{
    for (size_t i = 0; i < meters->n; i++)
        free(meters->items[i].text);
    free(meters->items);
    *meters = (struct ovs_meters){0};
}
