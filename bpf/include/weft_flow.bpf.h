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
 * This CPU's stats when an event of this kind may be emitted now, NULL when
 * not: events off (interval 0, the zeroed default before the agent writes it), a
 * passed connection while only drops are wanted, or an empty bucket (counted
 * as rate_limited). Per CPU, so no atomics: a tc or sock program is not
 * preempted by another run on the same CPU.
 */
static __always_inline struct weft_flow_stats *weft_flow_admit(int passed, __u64 now)
{
	__u32 zero = 0;
	struct weft_flow_cfg *cfg = bpf_map_lookup_elem(&weft_flow_cfg, &zero);
	struct weft_flow_stats *stats;
	__u64 cost, cap, credit;

	if (!cfg || cfg->interval_ns == 0 || (passed && !(cfg->flags & WEFT_FLOW_F_ALLOWED)))
		return NULL;
	stats = bpf_map_lookup_elem(&weft_flow_stats, &zero);
	if (!stats)
		return NULL;
	cost = cfg->interval_ns;
	cap = cost * (cfg->burst ? cfg->burst : 1);
	credit = stats->credit_ns + (now - stats->stamp_ns);
	stats->stamp_ns = now;
	if (credit > cap)
		credit = cap;
	if (credit < cost) {
		stats->credit_ns = credit;
		stats->rate_limited++;
		return NULL;
	}
	stats->credit_ns = credit - cost;
	return stats;
}

/*
 * Room for one event in the ring, written in place (no copy from the stack);
 * NULL when the ring is full, counted. Every member must be written, pads
 * included, before weft_flow_submit: reserved memory holds an old record.
 */
static __always_inline struct weft_flow_event *weft_flow_reserve(struct weft_flow_stats *stats)
{
	struct weft_flow_event *ev = bpf_ringbuf_reserve(&weft_flow_ring, sizeof(*ev), 0);

	if (!ev)
		stats->ring_full++;
	return ev;
}

/*
 * No wakeup: the agent drains on a timer and never sleeps on the ring's
 * epoll fd, and a wakeup (irq_work) was the largest part of an event's cost.
 */
static __always_inline void weft_flow_submit(struct weft_flow_stats *stats, struct weft_flow_event *ev)
{
	bpf_ringbuf_submit(ev, BPF_RB_NO_WAKEUP);
	stats->emitted++;
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
