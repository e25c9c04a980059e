/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Flow events (weft_abi.h, "flow events"): the per-CPU token bucket and the
 * ring buffer write, shared by the tc and socket programs. Only drops and a
 * connection's first packet ever get here, so none of this is on the path of
 * an established packet.
 */
#ifndef WEFT_FLOW_BPF_H
#define WEFT_FLOW_BPF_H

#include "weft_maps.bpf.h"

WEFT_MAPS_FLOW(WEFT_DECLARE_MAP)

/*
 * The configuration when an event of this kind may be emitted now, NULL when
 * not: events off (rate 0, the zeroed default before the agent writes it), a
 * passed connection while only drops are wanted, or an empty bucket (counted
 * as rate_limited). Per CPU, so no atomics: a tc or sock program is not
 * preempted by another run on the same CPU.
 */
static __always_inline struct weft_flow_stats *weft_flow_admit(int passed)
{
	__u32 zero = 0;
	struct weft_flow_cfg *cfg = bpf_map_lookup_elem(&weft_flow_cfg, &zero);
	struct weft_flow_bucket *bucket;
	struct weft_flow_stats *stats;
	__u64 now, cost, cap, credit;

	if (!cfg || cfg->rate == 0 || (passed && !(cfg->flags & WEFT_FLOW_F_ALLOWED)))
		return NULL;
	bucket = bpf_map_lookup_elem(&weft_flow_rl, &zero);
	stats = bpf_map_lookup_elem(&weft_flow_stats, &zero);
	if (!bucket || !stats)
		return NULL;
	now = bpf_ktime_get_ns();
	cost = 1000000000ull / cfg->rate;
	cap = cost * (cfg->burst ? cfg->burst : 1);
	credit = bucket->credit_ns + (now - bucket->stamp_ns);
	bucket->stamp_ns = now;
	if (credit > cap)
		credit = cap;
	if (credit < cost) {
		bucket->credit_ns = credit;
		stats->rate_limited++;
		return NULL;
	}
	bucket->credit_ns = credit - cost;
	return stats;
}

/* Copies the event into the ring; a full ring is counted, never waited on. */
static __always_inline void weft_flow_emit(struct weft_flow_stats *stats, const struct weft_flow_event *ev)
{
	if (bpf_ringbuf_output(&weft_flow_ring, (void *)ev, sizeof(*ev), 0) == 0)
		stats->emitted++;
	else
		stats->ring_full++;
}

/*
 * Never called. A ring buffer declares no value type, and a struct used only
 * on the stack leaves no trace in BTF; this signature puts struct
 * weft_flow_event in each object's BTF, so the drift checks (the BTF test,
 * the agent's start-up layout check) see the layout the programs write.
 */
__attribute__((used)) void weft_flow_event_layout(struct weft_flow_event *ev)
{
}

#endif /* WEFT_FLOW_BPF_H */
