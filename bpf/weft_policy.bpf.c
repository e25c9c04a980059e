// SPDX-License-Identifier: Apache-2.0
/*
 * Policy for one workload, attached with tc (clsact) to its host-side veth:
 * weft_from_wl on the veth's ingress hook (packets the workload sends, policy
 * direction egress), weft_to_wl on its egress hook (packets to the workload,
 * policy direction ingress).
 *
 * Decision order, one row per branch tag below:
 *   [R1] not IPv4: ARP and other non-IP pass, IPv6 drops (no v6 policy yet)
 *   [R2] truncated headers drop
 *   [R3] the workload's own address is not a local endpoint: drop (spoofing
 *        or a veth the agent has not configured yet)
 *   [R4] peer -> identity through weft_ipcache; no entry = world, no tenant
 *   [R5] both sides have a tenant and they differ: drop, before any policy,
 *        so no policy entry can ever join two tenants
 *   [R6] policy: the MOST SPECIFIC entry wins, probed from (peer, port,
 *        proto) down to (any, any, any). Deny precedence is an invariant of
 *        the written entries (the codec's normalizePolicy), not of the probe
 *        order, so an exact allow costs one lookup.
 *   [R7] no entry at all: no policy selects this workload in this direction,
 *        pass (the Kubernetes default). A selected workload carries a
 *        DEFAULT_DENY marker at (local, any, any, any) and never gets here.
 *
 * This first version is stateless: replies need their own allow entries.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "weft_maps.bpf.h"

WEFT_MAP_ipcache(WEFT_DECLARE_MAP)
WEFT_MAP_endpoint(WEFT_DECLARE_MAP)
WEFT_MAP_policy(WEFT_DECLARE_MAP)
WEFT_MAP_metrics(WEFT_DECLARE_MAP)

#define IP_OFFSET_MASK 0x1fff

struct weft_flow {
	__be32 local;
	__be32 remote;
	__be16 dport;
	__u8 protocol;
};

/*
 * Parse an Ethernet/IPv4 frame into a flow seen from the workload.
 * Returns 0, or -WEFT_REASON_* for a frame that never reaches policy.
 * A non-first fragment has no L4 header: its port is 0, so only entries
 * with any-port match it.
 */
static __always_inline int __weft_parse(struct __sk_buff *skb, __u8 dir, struct weft_flow *flow)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;

	if ((void *)(eth + 1) > data_end)
		return -WEFT_REASON_MALFORMED; /* [R2] */
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return -WEFT_REASON_IPV6; /* [R1] */
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return -WEFT_REASON_NOT_IP; /* [R1] */

	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl < 5 || ip->version != 4)
		return -WEFT_REASON_MALFORMED; /* [R2] */

	flow->local = dir == WEFT_DIR_EGRESS ? ip->saddr : ip->daddr;
	flow->remote = dir == WEFT_DIR_EGRESS ? ip->daddr : ip->saddr;
	flow->protocol = ip->protocol;
	flow->dport = 0;

	if ((ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP ||
	     ip->protocol == IPPROTO_SCTP) &&
	    !(ip->frag_off & bpf_htons(IP_OFFSET_MASK))) {
		/* TCP, UDP and SCTP all start with sport, dport. */
		__be16 *ports = (void *)ip + ip->ihl * 4;

		if ((void *)(ports + 2) > data_end)
			return -WEFT_REASON_MALFORMED; /* [R2] */
		flow->dport = ports[1];
	}
	return 0;
}

/*
 * Most specific policy hit for a flow. Probe order is lexicographic in
 * (peer, port, protocol), specific before wildcard, which extends the
 * "fieldwise at least as specific" order that normalizePolicy relies on.
 * Returns the entry or NULL when none matches.
 */
static __always_inline struct weft_policy_value *
__weft_policy_lookup(__u32 local_id, __u32 remote_id, const struct weft_flow *flow, __u8 dir)
{
	struct weft_policy_key key = {
		.local_identity = local_id,
		.direction = dir,
	};
	struct weft_policy_value *hit;

#pragma unroll
	for (int level = 0; level < 8; level++) {
		int any_peer = level & 4, any_port = level & 2, any_proto = level & 1;

		/* A wildcard level equal to a level already probed would repeat it. */
		if ((any_port && flow->dport == 0) || (any_proto && flow->protocol == 0))
			continue;
		key.remote_identity = any_peer ? WEFT_IDENTITY_ANY : remote_id;
		key.dport = any_port ? 0 : flow->dport;
		key.protocol = any_proto ? 0 : flow->protocol;
		hit = bpf_map_lookup_elem(&weft_policy, &key);
		if (hit)
			return hit;
	}
	return NULL;
}

/* Returns the reason for the packet's verdict (always positive). */
static __always_inline __u32 weft_policy_decide(struct __sk_buff *skb, __u8 dir)
{
	struct weft_endpoint_key ep_key;
	struct weft_ipcache_key ipc_key;
	struct weft_identity *self, *peer;
	struct weft_policy_value *hit;
	struct weft_flow flow;
	__u32 peer_id = WEFT_IDENTITY_WORLD, peer_tenant = WEFT_TENANT_NONE;
	int err;

	err = __weft_parse(skb, dir, &flow);
	if (err < 0)
		return -err;

	ep_key.addr = flow.local;
	self = bpf_map_lookup_elem(&weft_endpoint, &ep_key);
	if (!self)
		return WEFT_REASON_UNKNOWN_ENDPOINT; /* [R3] */

	ipc_key.prefixlen = 32;
	ipc_key.addr = flow.remote;
	peer = bpf_map_lookup_elem(&weft_ipcache, &ipc_key);
	if (peer) { /* [R4] */
		peer_id = peer->identity;
		peer_tenant = peer->tenant;
	}

	if (self->tenant != WEFT_TENANT_NONE && peer_tenant != WEFT_TENANT_NONE &&
	    self->tenant != peer_tenant)
		return WEFT_REASON_CROSS_TENANT; /* [R5] */

	hit = __weft_policy_lookup(self->identity, peer_id, &flow, dir);
	if (!hit)
		return WEFT_REASON_UNSELECTED; /* [R7] */
	switch (hit->action) { /* [R6] */
	case WEFT_ACTION_ALLOW:
		return WEFT_REASON_POLICY_ALLOW;
	case WEFT_ACTION_DENY:
		return WEFT_REASON_POLICY_DENY;
	case WEFT_ACTION_DEFAULT_DENY:
		return WEFT_REASON_DEFAULT_DENY;
	default:
		return WEFT_REASON_INVALID_ENTRY;
	}
}

static __always_inline int weft_policy_run(struct __sk_buff *skb, __u8 dir)
{
	__u32 reason = weft_policy_decide(skb, dir);

	WEFT_COUNT(weft_metrics, dir, reason, skb->len);
	return WEFT_REASON_VERDICT(reason) == WEFT_VERDICT_PASS ? TC_ACT_OK : TC_ACT_SHOT;
}

SEC("tc")
int weft_to_wl(struct __sk_buff *skb)
{
	return weft_policy_run(skb, WEFT_DIR_INGRESS);
}

SEC("tc")
int weft_from_wl(struct __sk_buff *skb)
{
	return weft_policy_run(skb, WEFT_DIR_EGRESS);
}

/*
 * Benchmark baseline, never attached: the irreducible work of any identity
 * policy (parse, one ipcache lookup, one exact policy lookup, pass). The
 * local identity comes in skb->mark, set through the test run's context, so
 * the baseline needs no endpoint lookup.
 */

SEC("tc")
int weft_bench_base(struct __sk_buff *skb)
{
	struct weft_policy_key key = {};
	struct weft_ipcache_key ipc_key;
	struct weft_identity *peer;
	struct weft_flow flow;

	if (__weft_parse(skb, WEFT_DIR_INGRESS, &flow) < 0)
		return TC_ACT_SHOT;
	ipc_key.prefixlen = 32;
	ipc_key.addr = flow.remote;
	peer = bpf_map_lookup_elem(&weft_ipcache, &ipc_key);
	key.local_identity = skb->mark;
	key.remote_identity = peer ? peer->identity : WEFT_IDENTITY_WORLD;
	key.dport = flow.dport;
	key.protocol = flow.protocol;
	key.direction = WEFT_DIR_INGRESS;
	return bpf_map_lookup_elem(&weft_policy, &key) ? TC_ACT_OK : TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
