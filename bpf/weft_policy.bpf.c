// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Policy for one workload, attached through tcx links to its host-side veth:
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
 *        (a peer [R10] delivers to: its weft_endpoint entry, the same identity)
 *   [R5] both sides have a tenant and they differ: drop, before any policy,
 *        so no policy entry can ever join two tenants
 *   [R6] policy: the MOST SPECIFIC entry wins, probed from (peer, port,
 *        proto) down to (any, any, any). Deny precedence is an invariant of
 *        the written entries (the codec's normalizePolicy), not of the probe
 *        order, so an exact allow costs one lookup.
 *   [R7] no entry at all: no policy selects this workload in this direction,
 *        pass (the Kubernetes default). A selected workload carries a
 *        DEFAULT_DENY marker (or a rule) at (local, any, any, any) and never
 *        gets here; an entry missing there means none exists for (local,
 *        direction), which normalizePolicy guarantees.
 *   [R8] a packet policy passes that opens a flow (TCP SYN without ACK, a
 *        UDP datagram, an ICMP echo request) inserts its replies' tuple into
 *        weft_ct.
 *   [R9] a packet policy drops is passed as a reply ("ct-reply") when its
 *        tuple is in weft_ct with the same two identities AND the policy
 *        still allows the flow it answers (the opening packet's probe, run
 *        again). So a policy change to deny stops new and established flows
 *        alike, in both directions, at once; conntrack only answers "is this
 *        a reply?", never "was this allowed once?". Replies are checked after
 *        tenants ([R5]), so conntrack never joins two tenants either.
 *
 *   [R10] host routing: a packet weft_from_wl sees whose destination is
 *        another workload of this node with an entry in weft_local_veth
 *        (written by the agent: the veth it verified and put these programs
 *        on) gets both decisions right here, the sender's egress and the
 *        receiver's ingress ([R5]-[R9] from its side, counted on the
 *        ingress hook), then goes straight to that veth's peer in the
 *        receiver's namespace (bpf_redirect_peer), skipping the host's IP
 *        forwarding and the receiving veth's weft_to_wl: each packet still
 *        gets exactly one egress and one ingress decision. The TTL drops by
 *        one as a routed hop's would; a packet with TTL <= 1, or without an
 *        entry, is routed by the host as before (the kernel answers TTL
 *        expiry). As with Cilium's BPF host routing, the host's netfilter
 *        FORWARD chain and forwarding sysctls do not see such packets; the
 *        agent's --host-routing off keeps the map empty.
 *
 *   [R11] cross-node fast path, sending side: a packet weft_from_wl passes
 *        whose peer is a workload of a tenant (an ipcache entry with a
 *        tenant: never the host, the world or a CIDR peer, whose traffic may
 *        need the host's NAT) and that no local veth takes ([R10]) is
 *        forwarded by the program itself when the sender's own veth is in
 *        weft_local_veth (host routing on, the veth verified by the agent):
 *        bpf_fib_lookup with the host's routes and forwarding sysctls, TTL
 *        down by one, bpf_redirect_neigh to the egress device. Anything the
 *        lookup does not answer with a forwarding route (a local address,
 *        forwarding off, too big for the MTU, a blackhole) is left to the
 *        host, as is a TTL <= 1.
 *   [R12] cross-node fast path, receiving side: weft_from_uplink on the
 *        ingress of the node's fabric-facing device (the agent's --uplink)
 *        takes a packet for a workload of this node with a weft_local_veth
 *        entry, decides it exactly as weft_to_wl would on the workload's
 *        veth ([R3]-[R9], counted on the ingress hook, the same conntrack
 *        entry) and delivers it with bpf_redirect_peer into the workload's
 *        namespace, skipping the host's forwarding and weft_to_wl: still
 *        one ingress decision per packet. Everything else on the uplink
 *        (other addresses, IPv6, ARP, malformed frames, TTL <= 1, frames
 *        not addressed to this host) passes to the host untouched and
 *        uncounted: weft_to_wl still guards what the host forwards.
 *
 *   [R13] flow events (weft_flow.bpf.h): every drop, and the packet that
 *        opened a flow ([R8] inserted a new weft_ct entry), emit one event,
 *        rate-limited per CPU. A retransmitted SYN finds its entry and
 *        emits nothing; neither does an established packet.
 *   [R14] audit: a flow [R8] opens is probed once more in weft_audit (the
 *        policy with audit-mode rules enforced, written only where such rules
 *        exist); a drop there makes the verdict WEFT_REASON_AUDIT: passed,
 *        and reported with the rule that would have dropped it.
 *
 *   [R15] transport enforcement, receiving side (issue 18): a packet that
 *        policy passes through a hit flagged WEFT_POLICY_F_MTLS (for a
 *        ct-reply, the opener's hit) is dropped as mtls-required unless the
 *        node's transport delivered it: in weft_to_wl, skb->mark carries
 *        WEFT_MARK_TRANSPORT (SO_MARK of every transport socket), it comes
 *        from a proxy address by a socket of this host bound to its source
 *        (skb->sk: the node's own L7 proxy), or the peer
 *        is a workload of this node (weft_endpoint); in weft_from_uplink,
 *        never (nothing from the fabric came through the transport).
 *   [R16] steering, sending side: weft_from_wl, once the egress decision
 *        passes a TCP packet to a tenant's workload on another node, probes
 *        weft_steer (same key, value and marker rule as weft_policy) with
 *        (self, peer, peer's port, egress): connections the workload opens;
 *        then, for anything but a bare SYN, (self, peer, own port, ingress):
 *        its side of connections the peer opened through the transport. A
 *        steered packet must come from the veth weft_local_veth names for
 *        its source (else unknown-endpoint: a neighbour borrowing the
 *        address would borrow its SVID), and is assigned (bpf_sk_assign) to
 *        the transport socket of its own tuple, or for an egress SYN to the
 *        outbound listener, and marked WEFT_MARK_TO_TRANSPORT for the
 *        agent's routing rule: steered. No socket: transport-down, dropped,
 *        never sent in plaintext; unless conntrack shows the flow was opened
 *        the other way (a plaintext connection whose ports happen to match).
 *        Counted once per packet, with steering's reason.
 *
 *   [R17] L7 steering, sending side (issue 21): weft_from_wl, for a TCP
 *        packet whose destination is no tenant's workload (a VIP never is:
 *        the VIP has no ipcache entry, or only a CIDR peer's) and whose
 *        (daddr, dport, TCP) is a frontend in weft_l7, skips the egress
 *        decision (the proxy decides each request with the callers' policy)
 *        and hands the packet to the node's L7 proxy: it must come from the
 *        veth weft_local_veth names for its source (else unknown-endpoint,
 *        as in [R16]), and is assigned to the socket of its own tuple, or,
 *        for a bare SYN, left to the kernel's own lookup ([R19]) once that
 *        lookup is seen to end at the proxy's transparent listener at
 *        127.0.0.1:WEFT_L7_PROXY_PORT; marked WEFT_MARK_TO_TRANSPORT for the
 *        agent's local-delivery route: l7-steered, an event for a SYN that
 *        opens a connection (not a retransmitted one). No socket, or a
 *        lookup that would not end at the proxy: proxy-down, dropped, never
 *        forwarded.
 *   [R18] the proxy's replies: weft_to_wl passes a TCP packet that opens
 *        nothing and whose source (saddr, sport, TCP) is a frontend in
 *        weft_l7 when this node's proxy sent it: skb->mark carries
 *        WEFT_MARK_PROXY (SO_MARK the proxy sets on each connection it
 *        accepts), or skb->sk is a socket of this node bound to that very
 *        frontend (the proxy's listener answers the handshake, and the
 *        kernel may acknowledge the first request, before the proxy accepts
 *        the connection and sets its mark; only a transparent socket, or
 *        one bound under ip_nonlocal_bind, can hold a VIP, and never the
 *        connection a caller opened, which the proxy holds). l7-steered on
 *        the ingress hook, no event. Anything else from a frontend
 *        (forwarded from the fabric or another workload, a bare SYN: the
 *        proxy never opens a connection to a caller) is decided by policy
 *        as any other packet.
 *   [R19] the node's socket lookup (weft_l7_lookup, sk_lookup on the node's
 *        network namespace): a TCP connection to a frontend in weft_l7 from
 *        a workload of this node, arriving on the veth weft_local_veth
 *        names for it (what [R17] delivers, nothing else), gets the proxy's
 *        listener from weft_l7_listen; none there: dropped, never handed to
 *        another listener of the node. Everything else passes untouched.
 *        The kernel runs it after its established and TIME_WAIT lookup, so
 *        a SYN on a tuple the proxy holds in TIME_WAIT recycles it as for
 *        any local socket; bpf_sk_assign from tc would skip that lookup,
 *        and the kernel drops such a SYN (its request socket collides with
 *        the TIME_WAIT one).
 *
 * Only replies pay for conntrack: an allowed packet that opens nothing (an
 * established TCP segment) costs no more than it did without it.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "weft_flow.bpf.h"
#include "weft_maps.bpf.h"
#include "weft_parse.bpf.h"

#ifndef AF_INET
#define AF_INET 2 /* linux/socket.h, which BPF programs cannot include */
#endif

WEFT_MAP_ipcache(WEFT_DECLARE_MAP)
WEFT_MAP_endpoint(WEFT_DECLARE_MAP)
WEFT_MAP_policy(WEFT_DECLARE_MAP)
WEFT_MAP_ct(WEFT_DECLARE_MAP)
WEFT_MAP_metrics(WEFT_DECLARE_MAP)
WEFT_MAP_local_veth(WEFT_DECLARE_MAP)
WEFT_MAP_audit(WEFT_DECLARE_MAP)
WEFT_MAP_steer(WEFT_DECLARE_MAP)
WEFT_MAP_l7(WEFT_DECLARE_MAP)

/* [R19] The proxy's listening socket (weft_abi.h, WEFT_L7_LISTEN_SLOT). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, WEFT_L7_LISTEN_MAX);
	__type(key, __u32);
	__type(value, __u64);
} weft_l7_listen SEC(".maps");

/* What weft_decide found besides the reason: for flow events, audit and [R15]. */
struct weft_decision {
	__u32 rule_id; /* the policy entry's rule; 0 = none (unselected, default deny) */
	__u8 opened;   /* [R8] this packet inserted a new weft_ct entry */
	__u8 flags;    /* WEFT_POLICY_F_* of the hit that passed it (of the opener's hit for a ct-reply) */
};

/*
 * Most specific policy hit for a flow. The order of specificity is
 * lexicographic in (peer, port, protocol), specific before wildcard, which
 * extends the "fieldwise at least as specific" order that normalizePolicy
 * relies on. Returns the entry or NULL when none matches.
 *
 * Probe order: the exact key first (an exact allow costs one lookup), then
 * the direction's selection key (any, any, any), then the levels between.
 * normalizePolicy guarantees every (local, direction) with any entry has an
 * entry at the selection key, so a miss there means no entry can match: the
 * direction is unselected [R7] after two lookups instead of eight, which is
 * what every packet of a workload no policy selects pays.
 */
static __always_inline struct weft_policy_value *
__weft_policy_lookup(void *map, __u32 local_id, __u32 remote_id, const struct weft_flow *flow, __u8 dir)
{
	struct weft_policy_key key = {
		.local_identity = local_id,
		.direction = dir,
		.remote_identity = remote_id,
		.dport = flow->dport,
		.protocol = flow->protocol,
	};
	struct weft_policy_value *hit, *selection;

	hit = bpf_map_lookup_elem(map, &key);
	if (hit)
		return hit;
	key.remote_identity = WEFT_IDENTITY_ANY;
	key.dport = 0;
	key.protocol = 0;
	selection = bpf_map_lookup_elem(map, &key);
	if (!selection)
		return NULL;

#pragma unroll
	for (int level = 1; level < 7; level++) {
		int any_peer = level & 4, any_port = level & 2, any_proto = level & 1;

		/* A wildcard level equal to a level already probed would repeat it. */
		if ((any_port && flow->dport == 0) || (any_proto && flow->protocol == 0))
			continue;
		/* So would one that lands on the selection key. */
		if (any_peer && (any_port || flow->dport == 0) && (any_proto || flow->protocol == 0))
			continue;
		key.remote_identity = any_peer ? WEFT_IDENTITY_ANY : remote_id;
		key.dport = any_port ? 0 : flow->dport;
		key.protocol = any_proto ? 0 : flow->protocol;
		hit = bpf_map_lookup_elem(map, &key);
		if (hit)
			return hit;
	}
	return selection;
}

/* The reason a policy hit (or its absence) gives, always positive. */
static __always_inline __u32 __weft_policy_reason(const struct weft_policy_value *hit)
{
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

static __always_inline void __weft_ct_key(struct weft_ct_key *key, const struct weft_flow *flow, __u8 dir)
{
	key->local = flow->local;
	key->remote = flow->remote;
	key->local_port = flow->local_port;
	key->remote_port = flow->remote_port;
	key->protocol = flow->protocol;
	key->direction = dir;
	key->_pad = 0;
}

/* [R8] Record the tuple the replies of this passing packet will carry; 1 when the entry is new. */
static __always_inline int weft_ct_open(const struct weft_flow *flow, __u8 dir, __u32 local_id,
					 __u32 remote_id)
{
	struct weft_ct_value value = { .local_identity = local_id, .remote_identity = remote_id };
	struct weft_ct_value *old;
	struct weft_ct_key key;

	__weft_ct_key(&key, flow, dir == WEFT_DIR_EGRESS ? WEFT_DIR_INGRESS : WEFT_DIR_EGRESS);
	/*
	 * Ports come round again (a client's ephemeral range, a DNS resolver):
	 * a tuple already held with the same identities is left as it is, its
	 * LRU age refreshed by the lookup, instead of an update that takes a
	 * free node, locks the bucket and frees the old one (the largest cost
	 * Weft added to a new connection in the datapath bench's profile).
	 */
	old = bpf_map_lookup_elem(&weft_ct, &key);
	if (old && old->local_identity == local_id && old->remote_identity == remote_id)
		return 0;
	/* A full LRU evicts the coldest flow; failure only costs that flow its replies. */
	bpf_map_update_elem(&weft_ct, &key, &value, BPF_ANY);
	return 1;
}

/*
 * [R9] True when this dropped packet is a reply of a flow the policy still
 * allows: its tuple is in weft_ct under the same identities, and the probe
 * the opening packet took (other direction, the port the opener targeted)
 * still ends in allow or in no entry at all.
 */
static __always_inline int weft_ct_is_reply(const struct weft_flow *flow, __u8 dir, __u32 local_id,
					    __u32 remote_id, __u8 *opener_flags)
{
	struct weft_policy_value *hit;
	struct weft_ct_value *ct;
	struct weft_ct_key key;
	struct weft_flow opener;
	__u8 odir = dir == WEFT_DIR_EGRESS ? WEFT_DIR_INGRESS : WEFT_DIR_EGRESS;
	__u32 reason;

	__weft_ct_key(&key, flow, dir);
	ct = bpf_map_lookup_elem(&weft_ct, &key);
	if (!ct || ct->local_identity != local_id || ct->remote_identity != remote_id)
		return 0;
	opener = *flow;
	/* The opener's destination port: the workload's for an inbound flow. */
	if (flow->dport != 0)
		opener.dport = odir == WEFT_DIR_INGRESS ? flow->local_port : flow->remote_port;
	hit = __weft_policy_lookup(&weft_policy, local_id, remote_id, &opener, odir);
	reason = __weft_policy_reason(hit);
	*opener_flags = hit ? hit->flags : 0;
	return reason == WEFT_REASON_POLICY_ALLOW || reason == WEFT_REASON_UNSELECTED;
}

/* [R4] The identity of a peer address: its ipcache entry, or world. */
static __always_inline struct weft_identity weft_peer(__be32 addr)
{
	struct weft_ipcache_key key = { .prefixlen = 32, .addr = addr };
	struct weft_identity *hit = bpf_map_lookup_elem(&weft_ipcache, &key);
	struct weft_identity world = { .identity = WEFT_IDENTITY_WORLD, .tenant = WEFT_TENANT_NONE };

	return hit ? *hit : world;
}

/* [R14] A new flow's reason when weft_audit would drop it, else `reason` unchanged. */
static __always_inline __u32 weft_audit_reason(const struct weft_flow *flow, __u8 dir, __u32 local_id,
					       __u32 remote_id, __u32 reason, struct weft_decision *d)
{
	struct weft_policy_value *hit = __weft_policy_lookup(&weft_audit, local_id, remote_id, flow, dir);
	__u32 would = __weft_policy_reason(hit);

	if (!hit || WEFT_REASON_VERDICT(would) == WEFT_VERDICT_PASS)
		return reason;
	d->rule_id = hit->rule_id;
	return WEFT_REASON_AUDIT;
}

/*
 * [R5]-[R9], [R14] for the workload `self` guards, its flow parsed from its
 * side, against `peer`. Returns the reason for the verdict (always positive)
 * and fills `d`.
 */
static __always_inline __u32 weft_decide(const struct weft_flow *flow, __u8 dir,
					 const struct weft_identity *self, const struct weft_identity *peer,
					 struct weft_decision *d)
{
	struct weft_policy_value *hit;
	__u32 reason;

	d->rule_id = 0;
	d->opened = 0;
	d->flags = 0;
	if (self->tenant != WEFT_TENANT_NONE && peer->tenant != WEFT_TENANT_NONE &&
	    self->tenant != peer->tenant)
		return WEFT_REASON_CROSS_TENANT; /* [R5] */

	hit = __weft_policy_lookup(&weft_policy, self->identity, peer->identity, flow, dir);
	reason = __weft_policy_reason(hit);
	if (hit)
		d->rule_id = hit->rule_id;
	if (WEFT_REASON_VERDICT(reason) == WEFT_VERDICT_PASS) {
		d->flags = hit ? hit->flags : 0;
		if (flow->opens && weft_ct_open(flow, dir, self->identity, peer->identity)) { /* [R8] */
			d->opened = 1;
			reason = weft_audit_reason(flow, dir, self->identity, peer->identity, reason, d);
		}
		return reason;
	}
	/* Only a policy decision is overridden, never an invalid entry. */
	if ((reason == WEFT_REASON_DEFAULT_DENY || reason == WEFT_REASON_POLICY_DENY) &&
	    flow->may_reply && weft_ct_is_reply(flow, dir, self->identity, peer->identity, &d->flags))
		return WEFT_REASON_CT_REPLY; /* [R9] */
	return reason;
}

/* Parse, and find the workload behind this veth. Returns 0, or the reason (positive) to stop with. */
static __always_inline __u32 weft_self(struct __sk_buff *skb, __u8 dir, struct weft_flow *flow,
				       struct weft_identity **self)
{
	struct weft_endpoint_key ep_key;
	int err;

	err = __weft_parse(skb, dir, flow);
	if (err < 0)
		return -err;
	ep_key.addr = flow->local;
	*self = bpf_map_lookup_elem(&weft_endpoint, &ep_key);
	return *self ? 0 : WEFT_REASON_UNKNOWN_ENDPOINT; /* [R3] */
}

static __always_inline int weft_verdict(__u32 reason)
{
	return WEFT_REASON_VERDICT(reason) == WEFT_VERDICT_PASS ? TC_ACT_OK : TC_ACT_SHOT;
}

/*
 * [R13] One event for a drop or for a flow's opening packet; nothing for
 * anything else. `self` and `peer` may be NULL when the packet stopped
 * before they were known; the flow is seen from the workload's side, the
 * event from the wire's.
 */
static __always_inline void weft_flow_note(struct __sk_buff *skb, __u8 dir, const struct weft_flow *flow,
					   const struct weft_identity *self, const struct weft_identity *peer,
					   __u32 reason, const struct weft_decision *d)
{
	int passed = WEFT_REASON_VERDICT(reason) == WEFT_VERDICT_PASS;
	const struct weft_identity *src = dir == WEFT_DIR_INGRESS ? peer : self;
	const struct weft_identity *dst = dir == WEFT_DIR_INGRESS ? self : peer;
	struct weft_flow_stats *stats;
	struct weft_flow_event *ev;
	__u64 now;

	if (passed && !(d && d->opened))
		return;
	now = bpf_ktime_get_ns();
	stats = weft_flow_admit(passed && reason != WEFT_REASON_AUDIT, now);
	if (!stats)
		return;
	ev = weft_flow_reserve(stats);
	if (!ev)
		return;
	ev->time_ns = now;
	ev->cookie = 0;
	if (dir == WEFT_DIR_INGRESS) {
		ev->saddr = flow->remote;
		ev->daddr = flow->local;
		ev->sport = flow->remote_port;
		ev->dport = flow->local_port;
	} else {
		ev->saddr = flow->local;
		ev->daddr = flow->remote;
		ev->sport = flow->local_port;
		ev->dport = flow->remote_port;
	}
	ev->protocol = flow->protocol;
	ev->hook = dir;
	ev->reason = reason;
	ev->_pad0 = 0;
	ev->src_identity = src ? src->identity : 0;
	ev->src_tenant = src ? src->tenant : 0;
	ev->dst_identity = dst ? dst->identity : 0;
	ev->dst_tenant = dst ? dst->tenant : 0;
	ev->rule_id = d ? d->rule_id : 0;
	ev->orig_daddr = 0;
	ev->orig_dport = 0;
	ev->_pad1 = 0;
	ev->ifindex = skb->ifindex;
	ev->len = skb->len;
	ev->_pad2 = 0;
	weft_flow_submit(stats, ev);
}

/*
 * [R10]-[R12] The TTL down by one, as a routed hop's. Through helpers rather
 * than a direct write: a direct write makes the verifier unclone every skb
 * this program sees, and TCP sends clones. Returns 0 or a negative error (no
 * memory to unclone the header: the host's forwarding would drop it too).
 */
static __always_inline int weft_ttl_dec(struct __sk_buff *skb, __u8 ttl)
{
	__u8 new_ttl = ttl - 1;

	if (bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), bpf_htons(ttl << 8),
				bpf_htons(new_ttl << 8), 2) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, ttl), &new_ttl, 1, 0) < 0)
		return -1;
	return 0;
}

/*
 * [R10] The receiving workload's ingress decision for a packet `src` sent to
 * `dst`, another workload of this node behind the veth `veth`, then delivery
 * into dst's namespace. Returns the tc verdict.
 */
static __always_inline int weft_deliver_local(struct __sk_buff *skb, const struct weft_flow *out,
					      const struct weft_identity *src, const struct weft_identity *dst,
					      __u32 veth)
{
	struct weft_decision d;
	struct weft_flow in;
	__u32 reason;

	/* The same packet from the receiving side: addresses and ports swap, dport stays. */
	in = *out;
	in.local = out->remote;
	in.remote = out->local;
	in.local_port = out->remote_port;
	in.remote_port = out->local_port;
	reason = weft_decide(&in, WEFT_DIR_INGRESS, dst, src, &d);
	WEFT_COUNT(weft_metrics, WEFT_DIR_INGRESS, reason, skb->len);
	weft_flow_note(skb, WEFT_DIR_INGRESS, &in, dst, src, reason, &d);
	if (WEFT_REASON_VERDICT(reason) != WEFT_VERDICT_PASS)
		return TC_ACT_SHOT;
	if (weft_ttl_dec(skb, out->ttl) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect_peer(veth, 0);
}

/*
 * [R11] Forward a passed packet from a local workload to a workload on
 * another node through the egress device the host's routes name, without
 * the host's IP forwarding. Returns the tc verdict: TC_ACT_OK leaves the
 * packet to the host.
 */
static __always_inline int weft_forward_remote(struct __sk_buff *skb, const struct weft_flow *flow)
{
	struct weft_endpoint_key self_key = { .addr = flow->local };
	struct bpf_fib_lookup fib = {};
	struct bpf_redir_neigh nh = {};
	long rc;

	/* Host routing off (the map kept empty), or a veth the agent did not verify. */
	if (!bpf_map_lookup_elem(&weft_local_veth, &self_key))
		return TC_ACT_OK;
	fib.family = AF_INET;
	fib.l4_protocol = flow->protocol;
	fib.sport = flow->dport ? flow->local_port : 0;
	fib.dport = flow->dport;
	fib.tot_len = 0; /* 0: the kernel checks this skb (GSO included) against the egress MTU */
	fib.ipv4_src = flow->local;
	fib.ipv4_dst = flow->remote;
	fib.ifindex = skb->ingress_ifindex;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return TC_ACT_OK;
	if (fib.ifindex == skb->ingress_ifindex)
		return TC_ACT_OK;
	if (weft_ttl_dec(skb, flow->ttl) < 0)
		return TC_ACT_SHOT;
	/* The lookup left the next hop in ipv4_dst: the gateway, or the destination on link. */
	nh.nh_family = AF_INET;
	nh.ipv4_nh = fib.ipv4_dst;
	return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
}

/*
 * [R15]/[R16] A weft_steer hit: the most specific entry, as in weft_policy,
 * when it steers (ALLOW). The selection marker is probed first: a workload
 * with no steering in this direction, almost every one, pays one lookup.
 */
static __always_inline int weft_steered(__u32 local_id, __u32 remote_id, const struct weft_flow *flow, __u8 dir)
{
	struct weft_policy_key marker = { .local_identity = local_id, .direction = dir };
	struct weft_policy_value *hit;

	if (!bpf_map_lookup_elem(&weft_steer, &marker))
		return 0;
	hit = __weft_policy_lookup(&weft_steer, local_id, remote_id, flow, dir);
	return hit && hit->action == WEFT_ACTION_ALLOW;
}

/*
 * [R15] Whether a packet that policy passes toward the workload must have come
 * through the node's transport: the hit that passed it asks for mtls (for a
 * ct-reply, the opener's hit: a forged reply into a connection an mtls rule
 * let the workload open). Only the transport's own sockets carry
 * WEFT_MARK_TRANSPORT, and the mark never crosses the wire, so nothing the
 * uplink receives has it. A workload of this node reaches another directly,
 * never through the transport; so does this node's own L7 proxy (from a proxy
 * address, by a socket of this host bound to the packet's source: skb->sk,
 * NULL for anything the host forwards), whose allow entries carry the flag
 * for other nodes' proxies (issue 21).
 * Costs nothing unless the hit is flagged.
 */
static __always_inline int weft_needs_transport(const struct __sk_buff *skb, const struct weft_flow *flow,
						const struct weft_decision *d, __u32 peer_identity, int from_uplink)
{
	struct weft_endpoint_key peer_key = { .addr = flow->remote };
	struct bpf_sock *sk = skb->sk;

	if (!(d->flags & WEFT_POLICY_F_MTLS))
		return 0;
	if (from_uplink)
		return 1;
	if (skb->mark & WEFT_MARK_TRANSPORT)
		return 0;
	/*
	 * The node's own L7 proxy: from a proxy address (IDENTITY_PROXY, never a
	 * workload's), by this host's own socket bound to the packet's source
	 * address and port. Any other host process stays held to the rule.
	 * bpf_sock: src_port in host order, the flow's in network order.
	 * (BPF_PROG_TEST_RUN's stand-in socket takes the packet's addresses but
	 * no port, so it never passes for one.)
	 */
	if (peer_identity == WEFT_IDENTITY_PROXY && sk && sk->family == AF_INET && sk->src_ip4 == flow->remote &&
	    sk->src_port == bpf_ntohs(flow->remote_port))
		return 0;
	return !bpf_map_lookup_elem(&weft_endpoint, &peer_key);
}

/* [R16] weft_ct holds this flow's tuple for replies travelling `reply_dir`: it was opened the other way. */
static __always_inline int weft_ct_opened(const struct weft_flow *flow, __u8 reply_dir, __u32 local_id,
					  __u32 remote_id)
{
	struct weft_ct_value *ct;
	struct weft_ct_key key;

	__weft_ct_key(&key, flow, reply_dir);
	ct = bpf_map_lookup_elem(&weft_ct, &key);
	return ct && ct->local_identity == local_id && ct->remote_identity == remote_id;
}

/*
 * [R16]/[R17] Hands `sk` (a lookup's reference, released here) to the packet
 * and marks the packet for the agent's local-delivery route. Returns 0 on
 * success.
 */
static __always_inline long weft_assign(struct __sk_buff *skb, struct bpf_sock *sk)
{
	long err = bpf_sk_assign(skb, sk, 0);

	bpf_sk_release(sk);
	if (err == 0)
		skb->mark |= WEFT_MARK_TO_TRANSPORT;
	return err;
}

/*
 * [R16]/[R17] The node's socket that takes a TCP packet `flow` describes:
 * the socket of its own tuple, or, when `listener_port` is not 0, the
 * listener at listener_addr:listener_port (host order), as Cilium's proxy.h
 * finds its proxy's. Returns a reference for weft_assign, or NULL.
 *
 * A tuple in TIME_WAIT (the proxy closed first, as it does when a client
 * asks Connection: close) keeps its TIME_WAIT socket, even for a new SYN:
 * handed to the listener, that SYN would be dropped by the kernel (its
 * request socket collides with the TIME_WAIT one), and the client would
 * retry into the same wall for up to 60 s. The TIME_WAIT socket answers it
 * as the kernel's own path does when no listener is found for the VIP: an
 * ACK, the client's RST retires it (RFC 1337 off, the default), and the
 * client's next SYN, a second later, reaches the listener. The L7 proxy's
 * SYNs no longer come here ([R19]: the kernel's lookup recycles the
 * TIME_WAIT socket at once); the transport's still do.
 */
static __always_inline struct bpf_sock *weft_sk_take(struct __sk_buff *skb, const struct weft_flow *flow,
						     __u32 listener_addr, __u16 listener_port)
{
	struct bpf_sock_tuple tuple = {};
	struct bpf_sock *sk;

	tuple.ipv4.saddr = flow->local;
	tuple.ipv4.daddr = flow->remote;
	tuple.ipv4.sport = flow->local_port;
	tuple.ipv4.dport = flow->remote_port;
	sk = bpf_skc_lookup_tcp(skb, &tuple, sizeof(tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		/* A listener of the node on the peer's port is not this flow's socket. */
		if (sk->state != BPF_TCP_LISTEN)
			return sk;
		bpf_sk_release(sk);
	}
	if (listener_port == 0)
		return NULL;
	__builtin_memset(&tuple, 0, sizeof(tuple));
	tuple.ipv4.daddr = bpf_htonl(listener_addr);
	tuple.ipv4.dport = bpf_htons(listener_port);
	sk = bpf_skc_lookup_tcp(skb, &tuple, sizeof(tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (sk && sk->state != BPF_TCP_LISTEN) {
		bpf_sk_release(sk);
		return NULL;
	}
	return sk;
}

/*
 * [R16]/[R17] Whether the packet arrived on the veth weft_local_veth names
 * for its source: a neighbour sending another local workload's address must
 * not borrow its SVID, nor its place among the proxy's callers.
 */
static __always_inline int weft_on_own_veth(const struct __sk_buff *skb, const struct weft_flow *flow)
{
	struct weft_endpoint_key self_key = { .addr = flow->local };
	struct weft_local_veth *veth = bpf_map_lookup_elem(&weft_local_veth, &self_key);

	return veth && veth->ifindex == skb->ifindex;
}

/*
 * [R16] Steering, for a TCP packet weft_from_wl passed toward a workload on
 * another node. Returns 0 when weft_steer does not take the packet, else the
 * reason: STEERED (assigned to a transport socket), TRANSPORT_DOWN or
 * UNKNOWN_ENDPOINT (drops).
 */
static __always_inline __u32 weft_steer_to_transport(struct __sk_buff *skb, const struct weft_flow *flow,
						     __u32 self_id, __u32 peer_id)
{
	struct weft_endpoint_key peer_key = { .addr = flow->remote };
	struct bpf_sock *sk;
	struct weft_flow theirs;
	int egress, to_listener;

	/* Connections the workload opens: flow->dport is the peer's port. */
	egress = weft_steered(self_id, peer_id, flow, WEFT_DIR_EGRESS);
	if (!egress) {
		/* Its side of connections the peer opened through the transport; never a bare SYN. */
		if (flow->opens)
			return 0;
		theirs = *flow;
		theirs.dport = flow->local_port;
		if (!weft_steered(self_id, peer_id, &theirs, WEFT_DIR_INGRESS))
			return 0;
	}
	/* A workload of this node is never steered, whether or not host routing found it ([R10]). */
	if (bpf_map_lookup_elem(&weft_endpoint, &peer_key))
		return 0;
	if (!weft_on_own_veth(skb, flow))
		return WEFT_REASON_UNKNOWN_ENDPOINT;

	/* A new connection goes to the transport's outbound listener. */
	to_listener = egress && flow->opens;
	sk = weft_sk_take(skb, flow, WEFT_TRANSPORT_OUTBOUND_ADDR, to_listener ? WEFT_TRANSPORT_OUTBOUND_PORT : 0);
	if (sk)
		return weft_assign(skb, sk) == 0 ? WEFT_REASON_STEERED : WEFT_REASON_TRANSPORT_DOWN;
	/*
	 * No socket. A flow conntrack shows was opened the other way (a plaintext
	 * connection whose ports happen to match the steered one) is not the
	 * transport's; anything else fails closed, never out in plaintext.
	 */
	if (!to_listener && weft_ct_opened(flow, egress ? WEFT_DIR_EGRESS : WEFT_DIR_INGRESS, self_id, peer_id))
		return 0;
	return WEFT_REASON_TRANSPORT_DOWN;
}

/* [R17] 127.0.0.1, host order: weft_abi.h puts the proxy's listener there and names only its port. */
#define WEFT_L7_PROXY_ADDR 0x7f000001u

/* [R17]/[R18] Whether (addr, port) is a TCP frontend the node's L7 proxy takes. */
static __always_inline int weft_l7_frontend(__be32 addr, __be16 port)
{
	struct weft_svc_key key = { .vip = addr, .port = port, .protocol = IPPROTO_TCP };

	return bpf_map_lookup_elem(&weft_l7, &key) != NULL;
}

/*
 * [R17]/[R19] What the kernel's own lookup does with a bare SYN to an L7
 * frontend, asked through the same lookup (bpf_skc_lookup_tcp runs the
 * node's sk_lookup programs as the receive path does): -1 when it would not
 * end at the proxy's listener (the proxy is down, or weft_l7_lookup is not
 * attached and some other listener of the node, or none, would answer), 1
 * when the SYN opens a connection (the listener, or a TIME_WAIT socket the
 * SYN recycles), 0 for a retransmitted SYN (its request socket).
 */
static __always_inline int weft_l7_syn(struct __sk_buff *skb, const struct weft_flow *flow)
{
	struct bpf_sock_tuple tuple = {};
	struct bpf_sock *sk;
	int verdict;

	/* The listener a new SYN gets: no connection has source port 0, so only listeners answer. */
	tuple.ipv4.saddr = flow->local;
	tuple.ipv4.daddr = flow->remote;
	tuple.ipv4.dport = flow->remote_port;
	sk = bpf_skc_lookup_tcp(skb, &tuple, sizeof(tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return -1;
	/* bpf_sock: src_ip4 in network order, src_port in host order. */
	verdict = sk->state == BPF_TCP_LISTEN && sk->src_ip4 == bpf_htonl(WEFT_L7_PROXY_ADDR) &&
		  sk->src_port == WEFT_L7_PROXY_PORT;
	bpf_sk_release(sk);
	if (!verdict)
		return -1;
	/* The SYN's own tuple: a request socket means this SYN was sent before. */
	tuple.ipv4.sport = flow->local_port;
	sk = bpf_skc_lookup_tcp(skb, &tuple, sizeof(tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 1;
	verdict = sk->state == BPF_TCP_LISTEN || sk->state == BPF_TCP_TIME_WAIT;
	bpf_sk_release(sk);
	return verdict;
}

/*
 * [R17] L7 steering, for a TCP packet from a workload to an address that is
 * no tenant's workload. Returns 0 when weft_l7 does not name its destination,
 * else the reason: L7_STEERED (to a proxy socket), PROXY_DOWN or
 * UNKNOWN_ENDPOINT (drops). `d->opened` tells a SYN that opens a connection.
 */
static __always_inline __u32 weft_steer_to_proxy(struct __sk_buff *skb, const struct weft_flow *flow,
						 struct weft_decision *d)
{
	struct bpf_sock *sk;
	int opens;

	*d = (struct weft_decision){ .rule_id = 0 }; /* no rule: the proxy decides */
	if (!weft_l7_frontend(flow->remote, flow->remote_port))
		return 0;
	if (!weft_on_own_veth(skb, flow))
		return WEFT_REASON_UNKNOWN_ENDPOINT;
	if (flow->opens) {
		/*
		 * [R19] Not assigned: the kernel's lookup takes it, TIME_WAIT
		 * first, then weft_l7_lookup hands it the proxy's listener.
		 */
		opens = weft_l7_syn(skb, flow);
		if (opens < 0)
			return WEFT_REASON_PROXY_DOWN; /* never forwarded to a VIP nothing else answers */
		skb->mark |= WEFT_MARK_TO_TRANSPORT;
		d->opened = opens;
		return WEFT_REASON_L7_STEERED;
	}
	sk = weft_sk_take(skb, flow, 0, 0);
	if (!sk || weft_assign(skb, sk) != 0)
		return WEFT_REASON_PROXY_DOWN;
	return WEFT_REASON_L7_STEERED;
}

/*
 * [R18] Whether a TCP packet toward the workload is its node's proxy
 * answering at an L7 frontend. The mark first: everything else the workload
 * receives pays one test of skb->mark and one of skb->sk (NULL for a packet
 * the host forwards), and a lookup only when a socket of this node sent it.
 */
static __always_inline int weft_from_proxy(const struct __sk_buff *skb, const struct weft_flow *flow)
{
	struct bpf_sock *sk;

	if (flow->protocol != IPPROTO_TCP || flow->opens)
		return 0;
	if (!(skb->mark & WEFT_MARK_PROXY)) {
		sk = skb->sk;
		if (!sk)
			return 0;
		/* bpf_sock: src_port in host order; the flow's ports in network order. */
		if (sk->family != AF_INET || sk->src_ip4 != flow->remote || sk->src_port != bpf_ntohs(flow->remote_port))
			return 0;
	}
	return weft_l7_frontend(flow->remote, flow->remote_port);
}

SEC("tc")
int weft_to_wl(struct __sk_buff *skb)
{
	struct weft_identity *self = NULL, peer;
	struct weft_decision d;
	struct weft_flow flow = {};
	__u32 reason = weft_self(skb, WEFT_DIR_INGRESS, &flow, &self);

	if (reason != 0) {
		WEFT_COUNT(weft_metrics, WEFT_DIR_INGRESS, reason, skb->len);
		weft_flow_note(skb, WEFT_DIR_INGRESS, &flow, NULL, NULL, reason, NULL);
		return weft_verdict(reason);
	}
	if (weft_from_proxy(skb, &flow)) { /* [R18] */
		WEFT_COUNT(weft_metrics, WEFT_DIR_INGRESS, WEFT_REASON_L7_STEERED, skb->len);
		return TC_ACT_OK;
	}
	peer = weft_peer(flow.remote);
	reason = weft_decide(&flow, WEFT_DIR_INGRESS, self, &peer, &d);
	if (WEFT_REASON_VERDICT(reason) == WEFT_VERDICT_PASS && weft_needs_transport(skb, &flow, &d, peer.identity, 0))
		reason = WEFT_REASON_MTLS_REQUIRED; /* [R15] */
	WEFT_COUNT(weft_metrics, WEFT_DIR_INGRESS, reason, skb->len);
	weft_flow_note(skb, WEFT_DIR_INGRESS, &flow, self, &peer, reason, &d);
	return weft_verdict(reason);
}

SEC("tc")
int weft_from_wl(struct __sk_buff *skb)
{
	struct weft_identity *self = NULL, *local_peer = NULL, peer;
	struct weft_endpoint_key key;
	struct weft_local_veth *veth;
	struct weft_decision d;
	struct weft_flow flow = {};
	__u32 veth_ifindex = 0, steer = 0;
	__u32 reason = weft_self(skb, WEFT_DIR_EGRESS, &flow, &self);

	if (reason != 0) {
		WEFT_COUNT(weft_metrics, WEFT_DIR_EGRESS, reason, skb->len);
		weft_flow_note(skb, WEFT_DIR_EGRESS, &flow, NULL, NULL, reason, NULL);
		return weft_verdict(reason);
	}
	/*
	 * [R10] A peer behind a veth of this node is a workload here: its
	 * endpoint entry is the identity its ipcache /32 carries (the API
	 * writes both from the same row), one hash lookup instead of the trie.
	 */
	key.addr = flow.remote;
	if (flow.ttl > 1) {
		veth = bpf_map_lookup_elem(&weft_local_veth, &key);
		if (veth) {
			veth_ifindex = veth->ifindex;
			local_peer = bpf_map_lookup_elem(&weft_endpoint, &key);
		}
	}
	peer = local_peer ? *local_peer : weft_peer(flow.remote);
	/*
	 * [R17] A frontend of the node's L7 proxy, which decides each request
	 * with the policy of the service's backends: no egress decision here.
	 * Only TCP to what is no tenant's workload pays the lookup.
	 */
	if (!local_peer && peer.tenant == WEFT_TENANT_NONE && flow.protocol == IPPROTO_TCP) {
		reason = weft_steer_to_proxy(skb, &flow, &d);
		if (reason != 0) {
			peer.identity = WEFT_IDENTITY_PROXY; /* what takes the connection; the VIP is nobody */
			peer.tenant = WEFT_TENANT_NONE;
			WEFT_COUNT(weft_metrics, WEFT_DIR_EGRESS, reason, skb->len);
			weft_flow_note(skb, WEFT_DIR_EGRESS, &flow, self, &peer, reason, &d);
			return weft_verdict(reason); /* to the proxy's socket, through the host's stack */
		}
	}
	reason = weft_decide(&flow, WEFT_DIR_EGRESS, self, &peer, &d);
	/*
	 * [R16] Steering, for TCP to a tenant's workload that is not one of this
	 * node's (not the world, the host or a CIDR peer). The packet is counted
	 * once, with steering's outcome; an audit verdict keeps its own reason.
	 */
	if (WEFT_REASON_VERDICT(reason) == WEFT_VERDICT_PASS && !local_peer && flow.protocol == IPPROTO_TCP &&
	    peer.tenant != WEFT_TENANT_NONE) {
		steer = weft_steer_to_transport(skb, &flow, self->identity, peer.identity);
		if (steer != 0 && (reason != WEFT_REASON_AUDIT || steer != WEFT_REASON_STEERED))
			reason = steer;
	}
	WEFT_COUNT(weft_metrics, WEFT_DIR_EGRESS, reason, skb->len);
	weft_flow_note(skb, WEFT_DIR_EGRESS, &flow, self, &peer, reason, &d);
	if (WEFT_REASON_VERDICT(reason) != WEFT_VERDICT_PASS)
		return weft_verdict(reason);
	if (steer == WEFT_REASON_STEERED)
		return TC_ACT_OK; /* to the transport's socket, through the host's stack */
	if (local_peer)
		return weft_deliver_local(skb, &flow, self, local_peer, veth_ifindex);
	if (flow.ttl > 1 && peer.tenant != WEFT_TENANT_NONE)
		return weft_forward_remote(skb, &flow); /* [R11] */
	return TC_ACT_OK;
}

/*
 * [R12] On the ingress of the node's uplink. Only a frame addressed to this
 * host, for a workload of this node with a weft_local_veth entry, is
 * decided here; everything else goes to the host untouched.
 */
SEC("tc")
int weft_from_uplink(struct __sk_buff *skb)
{
	struct weft_identity *self, peer;
	struct weft_endpoint_key key;
	struct weft_local_veth *veth;
	struct weft_decision d;
	struct weft_flow flow;
	__u32 reason;

	if (skb->pkt_type != PACKET_HOST || __weft_parse(skb, WEFT_DIR_INGRESS, &flow) < 0 || flow.ttl <= 1)
		return TC_ACT_OK;
	key.addr = flow.local;
	veth = bpf_map_lookup_elem(&weft_local_veth, &key);
	if (!veth)
		return TC_ACT_OK;
	self = bpf_map_lookup_elem(&weft_endpoint, &key);
	if (!self)
		return TC_ACT_OK; /* the host routes it; weft_to_wl drops it as unknown-endpoint [R3] */
	peer = weft_peer(flow.remote);
	reason = weft_decide(&flow, WEFT_DIR_INGRESS, self, &peer, &d);
	if (WEFT_REASON_VERDICT(reason) == WEFT_VERDICT_PASS && weft_needs_transport(skb, &flow, &d, peer.identity, 1))
		reason = WEFT_REASON_MTLS_REQUIRED; /* [R15] */
	WEFT_COUNT(weft_metrics, WEFT_DIR_INGRESS, reason, skb->len);
	weft_flow_note(skb, WEFT_DIR_INGRESS, &flow, self, &peer, reason, &d);
	if (WEFT_REASON_VERDICT(reason) != WEFT_VERDICT_PASS)
		return TC_ACT_SHOT;
	if (weft_ttl_dec(skb, flow.ttl) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect_peer(veth->ifindex, 0);
}

/*
 * [R19] On the node's network namespace (sk_lookup): the kernel asks it for
 * a listener after its established and TIME_WAIT lookup found nothing (or a
 * TIME_WAIT socket a new SYN retires). Acts only on a TCP connection to a
 * frontend in weft_l7 that a workload of this node sent from its own veth:
 * what [R17] delivers locally. Host processes, the fabric and every other
 * destination pass untouched (SK_PASS without a socket), so a tenant's VIP
 * that happens to be one of the node's own addresses takes nothing from the
 * node's own services.
 */
SEC("sk_lookup")
int weft_l7_lookup(struct bpf_sk_lookup *ctx)
{
	struct weft_endpoint_key caller = { .addr = ctx->remote_ip4 };
	struct weft_local_veth *veth;
	struct bpf_sock *sk;
	__u32 slot = WEFT_L7_LISTEN_SLOT;
	long err;

	if (ctx->family != AF_INET || ctx->protocol != IPPROTO_TCP || ctx->local_port > 0xffff)
		return SK_PASS;
	if (!weft_l7_frontend(ctx->local_ip4, bpf_htons((__u16)ctx->local_port)))
		return SK_PASS;
	veth = bpf_map_lookup_elem(&weft_local_veth, &caller);
	if (!veth || veth->ifindex != ctx->ingress_ifindex)
		return SK_PASS;
	sk = bpf_map_lookup_elem(&weft_l7_listen, &slot);
	if (!sk)
		return SK_DROP; /* no proxy: never another listener of the node */
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	return err == 0 ? SK_PASS : SK_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
