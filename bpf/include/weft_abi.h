/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The Weft datapath ABI: every map's key and value, the constants both sides
 * agree on, and the one table of map names. Compiled into the BPF objects
 * (clang -target bpf) and into the wasm codec (clang --target=wasm32), so the
 * TypeScript side never writes a byte offset: it asks the codec.
 *
 * Rules for this file (bpf/README.md says why):
 *  - fixed-width __u8/__u16/__u32/__u64 only, every hole spelled as _pad;
 *  - a _Static_assert on every sizeof and on every key member's offsetof;
 *  - addresses and ports in network byte order (__be32/__be16) where the
 *    kernel hands them to the program in network order, so the datapath
 *    never swaps bytes on the hot path;
 *  - zero means "wildcard" or "none" wherever a field can be wildcarded.
 */
#ifndef WEFT_ABI_H
#define WEFT_ABI_H

#include "weft_types.h"

/* ---- identities and tenants --------------------------------------------- */

/*
 * Security identities are u32. 0 is never an identity: in policy keys it is
 * the wildcard. 1..255 are reserved (as in Cilium) and belong to no tenant;
 * allocation starts at WEFT_IDENTITY_FIRST.
 */
#define WEFT_IDENTITY_ANY 0u
#define WEFT_IDENTITY_HOST 1u
#define WEFT_IDENTITY_WORLD 2u
#define WEFT_IDENTITY_UNMANAGED 3u
#define WEFT_IDENTITY_HEALTH 4u
/*
 * A node's L7 proxy (issue 21) as the caller of a service's backends: the
 * proxy connects from its node's proxy address (the first address of the
 * node's pod block, on the node's lo), written into every node's ipcache
 * with this identity and no tenant; the compiler allows it on the ports of
 * the backends of L7 services, whose callers the proxy itself checks.
 */
#define WEFT_IDENTITY_PROXY 5u
#define WEFT_IDENTITY_RESERVED_MAX 255u
#define WEFT_IDENTITY_FIRST 256u

/* Tenant 0 is "no tenant": reserved identities and outside addresses. */
#define WEFT_TENANT_NONE 0u

/* ---- directions, hooks, verdicts, reasons ------------------------------- */

/* Seen from the workload: ingress is traffic into it, egress out of it. */
#define WEFT_DIR_INGRESS 0u
#define WEFT_DIR_EGRESS 1u

/*
 * The hook that counted a verdict: the two policy directions, then socket LB,
 * then the node's transport (nodeagent/src/transport), whose stream outcomes
 * the agent turns into flow events; no BPF program counts under it.
 */
#define WEFT_HOOK_INGRESS WEFT_DIR_INGRESS
#define WEFT_HOOK_EGRESS WEFT_DIR_EGRESS
#define WEFT_HOOK_SOCK 2u
#define WEFT_HOOK_TRANSPORT 3u
#define WEFT_HOOK_L7 4u /* the node's L7 proxy: one record per request, turned into flow events by the agent */
#define WEFT_HOOK_COUNT 5u

/* Policy entry actions. 0 is invalid so an all-zero value never allows. */
#define WEFT_ACTION_ALLOW 1u
#define WEFT_ACTION_DENY 2u
/*
 * Marker written by the compiler at (local, ANY, ANY, ANY, dir) for a
 * workload that some policy selects in that direction: "no rule allowed it".
 * It is the least specific key, so any rule hit shadows it, and it never
 * takes part in deny precedence (normalizePolicy leaves it alone).
 */
#define WEFT_ACTION_DEFAULT_DENY 3u
#define WEFT_ACTION_MAX 3u

#define WEFT_VERDICT_PASS 0u
#define WEFT_VERDICT_DROP 1u

/*
 * Reasons, each with exactly one verdict (WEFT_REASON_VERDICT below), so a
 * metrics slot is indexed by (hook, reason) and its verdict is implied.
 */
#define WEFT_REASON_POLICY_ALLOW 1u     /* pass: a rule allowed it */
#define WEFT_REASON_POLICY_DENY 2u      /* drop: a deny rule matched */
#define WEFT_REASON_DEFAULT_DENY 3u     /* drop: selected, no rule allowed it */
#define WEFT_REASON_UNSELECTED 4u       /* pass: no policy selects the workload */
#define WEFT_REASON_CROSS_TENANT 5u     /* drop: peer belongs to another tenant */
#define WEFT_REASON_UNKNOWN_ENDPOINT 6u /* drop: local address is no workload here */
#define WEFT_REASON_NOT_IP 7u           /* pass: ARP and other non-IP frames */
#define WEFT_REASON_IPV6 8u             /* drop: no IPv6 policy yet, so no bypass */
#define WEFT_REASON_MALFORMED 9u        /* drop: truncated or bad header */
#define WEFT_REASON_INVALID_ENTRY 10u   /* drop: policy value with unknown action */
#define WEFT_REASON_LB_TRANSLATED 11u   /* pass: socket LB picked a backend */
#define WEFT_REASON_LB_NO_BACKEND 12u   /* drop: service has no usable backend */
#define WEFT_REASON_LB_REVERSED 13u     /* pass: backend address shown as the VIP */
#define WEFT_REASON_CT_REPLY 14u        /* pass: reply of a flow the policy allows (weft_ct) */
#define WEFT_REASON_AUDIT 15u           /* pass: a rule in audit mode would have dropped it */
#define WEFT_REASON_MTLS_REQUIRED 16u   /* drop: plaintext from another node where a rule asks for the transport */
#define WEFT_REASON_TRANSPORT_DOWN 17u  /* drop: steered to the node's transport, which holds no socket for it */
#define WEFT_REASON_STEERED 18u         /* pass: handed to the node's transport (weft_steer) */
#define WEFT_REASON_TRANSPORT_CARRIED 19u /* pass: a stream the transport carried (WEFT_HOOK_TRANSPORT) */
#define WEFT_REASON_TRANSPORT_REFUSED 20u /* drop: a stream or handshake the transport refused */
#define WEFT_REASON_L7_STEERED 21u     /* pass: handed to the node's L7 proxy (weft_l7), or its reply to the caller */
#define WEFT_REASON_PROXY_DOWN 22u     /* drop: an L7 service's connection with no proxy socket to take it */
#define WEFT_REASON_HTTP_FORWARDED 23u /* pass: a request the L7 proxy answered from a backend (WEFT_HOOK_L7) */
#define WEFT_REASON_HTTP_REFUSED 24u   /* drop: a request the L7 proxy refused: authorization, rate limit, no route */
#define WEFT_REASON_COUNT 25u

#define WEFT_REASON_VERDICT(r)                                                          \
	(((r) == WEFT_REASON_POLICY_ALLOW || (r) == WEFT_REASON_UNSELECTED ||           \
	  (r) == WEFT_REASON_NOT_IP || (r) == WEFT_REASON_LB_TRANSLATED ||              \
	  (r) == WEFT_REASON_LB_REVERSED || (r) == WEFT_REASON_CT_REPLY ||              \
	  (r) == WEFT_REASON_AUDIT || (r) == WEFT_REASON_STEERED ||                     \
	  (r) == WEFT_REASON_TRANSPORT_CARRIED || (r) == WEFT_REASON_L7_STEERED ||      \
	  (r) == WEFT_REASON_HTTP_FORWARDED)                                            \
		 ? WEFT_VERDICT_PASS                                                    \
		 : WEFT_VERDICT_DROP)

#define WEFT_METRICS_INDEX(hook, reason) ((hook) * WEFT_REASON_COUNT + (reason))

/* ---- limits ------------------------------------------------------------- */

#define WEFT_IPCACHE_MAX 65536u
#define WEFT_ENDPOINT_MAX 4096u
#define WEFT_POLICY_MAX 65536u
#define WEFT_SVC_MAX 4096u
#define WEFT_BACKEND_MAX 16384u
/* Room for every service's table twice: a table is replaced, not rewritten. */
#define WEFT_LB_SLOT_MAX 262144u
#define WEFT_SOCK_REV_MAX 65536u
#define WEFT_CT_MAX 131072u
#define WEFT_METRICS_MAX (WEFT_HOOK_COUNT * WEFT_REASON_COUNT)
/* 1 MiB of 72-byte events plus their 8-byte headers: about 13,000 events. */
#define WEFT_FLOW_RING_BYTES (1u << 20)
/* The shortest interval between two events of one CPU: 1 us, a million a second. */
#define WEFT_FLOW_INTERVAL_MIN 1000u
#define WEFT_FLOW_BURST_MAX 100000u

#define WEFT_PREFIX_MAX 32u
#define WEFT_PORT_MAX 65535u
#define WEFT_LB_WEIGHT_MAX 1000000u
#define WEFT_LB_TABLE_MAX 16384u
#define WEFT_LB_BACKENDS_MAX 1024u

/* ---- ipcache: LPM trie, peer address -> identity ------------------------- */

struct weft_ipcache_key {
	__u32 prefixlen; /* LPM trie header, host order, 0..32 */
	__be32 addr;     /* host bits beyond prefixlen are zero */
};
_Static_assert(sizeof(struct weft_ipcache_key) == 8, "weft_ipcache_key size");
_Static_assert(WEFT_OFFSETOF(struct weft_ipcache_key, prefixlen) == 0, "trie prefixlen first");
_Static_assert(WEFT_OFFSETOF(struct weft_ipcache_key, addr) == 4, "weft_ipcache_key.addr");

/* Value of both weft_ipcache and weft_endpoint. */
struct weft_identity {
	__u32 identity;
	__u32 tenant; /* WEFT_TENANT_NONE for reserved identities */
};
_Static_assert(sizeof(struct weft_identity) == 8, "weft_identity size");

/* ---- endpoint: hash, local workload address -> its identity -------------- */

struct weft_endpoint_key {
	__be32 addr;
};
_Static_assert(sizeof(struct weft_endpoint_key) == 4, "weft_endpoint_key size");
_Static_assert(WEFT_OFFSETOF(struct weft_endpoint_key, addr) == 0, "weft_endpoint_key.addr");

/* ---- local_veth: hash, local workload address -> its host-side veth ------- */

/*
 * Written by the agent, not the API: the host-side veth the agent put the tc
 * programs on for each workload address (the API does not know interfaces).
 * An entry lets a packet between two workloads of this node skip the host's
 * IP forwarding: the sending side's program also takes the receiving
 * workload's ingress decision and hands the packet straight to the receiving
 * veth's peer (bpf_redirect_peer). No entry, or an empty map (the agent's
 * --no-host-routing), means the packet is routed by the host as before.
 */
struct weft_local_veth {
	__u32 ifindex; /* host-side veth; its peer sits in the workload's namespace */
};
_Static_assert(sizeof(struct weft_local_veth) == 4, "weft_local_veth size");

/* ---- sock_cfg: hash, one entry, the socket LB's settings ---------------- */

/*
 * Written by the agent at start-up (key WEFT_SOCK_CFG_KEY), read by the
 * socket-LB programs. A connect()/sendmsg() from the host's network namespace
 * (host_netns_cookie: the agent's own, which the agent reads with
 * SO_NETNS_COOKIE; the initial namespace counts as the host's too) is left
 * alone unless lb_host_traffic is 1: a tenant's VIP must not redirect
 * processes outside Weft's workloads, which live in namespaces of their own.
 * Fail safe: no entry, or host_netns_cookie 0 (not yet known), rewrites no
 * connection at all.
 */
#define WEFT_SOCK_CFG_KEY 0u
#define WEFT_SOCK_CFG_MAX 1u

struct weft_sock_cfg_key {
	__u32 index; /* always WEFT_SOCK_CFG_KEY */
};
_Static_assert(sizeof(struct weft_sock_cfg_key) == 4, "weft_sock_cfg_key size");
_Static_assert(WEFT_OFFSETOF(struct weft_sock_cfg_key, index) == 0, "weft_sock_cfg_key.index");

struct weft_sock_cfg {
	__u64 host_netns_cookie; /* bpf_get_netns_cookie() of the host's namespace; 0 = unknown */
	__u32 lb_host_traffic;   /* 1: balance the host's connections too (--lb-host-traffic) */
	__u32 _pad;
};
_Static_assert(sizeof(struct weft_sock_cfg) == 16, "weft_sock_cfg size");

/* ---- policy: hash, most specific hit wins --------------------------------- */

struct weft_policy_key {
	__u32 local_identity;  /* the workload the tc program guards; never 0 */
	__u32 remote_identity; /* 0 = any peer */
	__be16 dport;          /* destination port; 0 = any port */
	__u8 protocol;         /* IPPROTO_*; 0 = any protocol */
	__u8 direction;        /* WEFT_DIR_*; never a wildcard */
};
_Static_assert(sizeof(struct weft_policy_key) == 12, "weft_policy_key size");
_Static_assert(WEFT_OFFSETOF(struct weft_policy_key, local_identity) == 0, "policy local");
_Static_assert(WEFT_OFFSETOF(struct weft_policy_key, remote_identity) == 4, "policy remote");
_Static_assert(WEFT_OFFSETOF(struct weft_policy_key, dport) == 8, "policy dport");
_Static_assert(WEFT_OFFSETOF(struct weft_policy_key, protocol) == 10, "policy protocol");
_Static_assert(WEFT_OFFSETOF(struct weft_policy_key, direction) == 11, "policy direction");

/* weft_policy_value.flags */
#define WEFT_POLICY_F_MTLS 1u /* the rule asks for the transport between nodes (issue 18) */
#define WEFT_POLICY_F_MAX 1u

struct weft_policy_value {
	__u32 rule_id; /* the API's rule, for flow logs and metrics */
	__u8 action;   /* WEFT_ACTION_* */
	__u8 flags;    /* WEFT_POLICY_F_*; 0 for weft_audit entries */
	__u8 _pad[2];
};
_Static_assert(sizeof(struct weft_policy_value) == 8, "weft_policy_value size");

/* ---- steer: hash, which connections the node's transport carries --------- */

/*
 * Same key and value as weft_policy, written by the compiler, read by
 * weft_from_wl for TCP between a workload of this node (local_identity) and
 * one on another node (remote_identity; 0 = any peer):
 *   direction EGRESS:  connections this workload opens to the peer on dport
 *                      go to the transport's outbound listener;
 *   direction INGRESS: connections the peer opens to this workload on dport
 *                      arrive through the transport, so what the workload
 *                      sends back goes to the transport's delivery socket.
 * An entry with action ALLOW steers; as in weft_policy, (local, 0, 0, 0, dir)
 * holds a DEFAULT_DENY marker wherever local has an entry in dir ("not
 * steered" when nothing more specific matches), so a workload with no
 * steering costs one lookup per direction. protocol is IPPROTO_TCP or 0.
 */

/*
 * The transport (nodeagent/src/transport) in the node's namespace: the
 * outbound listener steered connections are assigned to (bpf_sk_assign), the
 * inbound port peers' transports connect to, and the packet marks:
 *  - WEFT_MARK_TRANSPORT: SO_MARK on every transport socket, so a packet to
 *    a workload that the transport delivers is told from one the host
 *    forwarded from the fabric (the mark never crosses the wire);
 *  - WEFT_MARK_TO_TRANSPORT: set by tc on a steered packet; the agent's
 *    `ip rule fwmark WEFT_MARK_TO_TRANSPORT lookup WEFT_TRANSPORT_TABLE` with
 *    `local 0.0.0.0/0 dev lo` in that table delivers it to the local socket
 *    instead of forwarding it.
 */
#define WEFT_TRANSPORT_OUTBOUND_ADDR 0x7f000001u /* 127.0.0.1, host order */
#define WEFT_TRANSPORT_OUTBOUND_PORT 15001u
#define WEFT_TRANSPORT_INBOUND_PORT 15008u
#define WEFT_MARK_TRANSPORT 0x00100000u
#define WEFT_MARK_TO_TRANSPORT 0x00200000u
#define WEFT_TRANSPORT_TABLE 15008u
#define WEFT_TRANSPORT_RULE_PRIORITY 90u

/* ---- l7: hash, the service frontends the node's L7 proxy takes ---------- */

/*
 * Key: a service frontend (struct weft_svc_key), TCP only. A frontend with
 * an entry here has none in weft_svc: the socket LB leaves its VIP alone,
 * and weft_from_wl hands the connection's packets (bpf_sk_assign) to the L7
 * proxy's transparent listener (WEFT_L7_PROXY_PORT on 127.0.0.1), or to the
 * proxy's socket of the packet's own tuple, marked WEFT_MARK_TO_TRANSPORT
 * for the agent's local-delivery route; no socket: proxy-down, dropped.
 * The proxy sets WEFT_MARK_PROXY (SO_MARK) on its sockets toward callers,
 * so weft_to_wl passes its replies (source VIP:port with an entry here).
 */
struct weft_l7_value {
	__u8 flags; /* WEFT_L7_F_* */
	__u8 _pad[3];
};
_Static_assert(sizeof(struct weft_l7_value) == 4, "weft_l7_value size");

#define WEFT_L7_F_HTTP 1u /* the proxy reads HTTP/1.1 or h2c at this frontend */
#define WEFT_L7_F_MAX 1u
#define WEFT_L7_PROXY_PORT 15006u
#define WEFT_MARK_PROXY 0x00400000u

/*
 * The proxy's listener for weft_l7_lookup, the sk_lookup program on the
 * node's network namespace ([R19]): a BPF_MAP_TYPE_SOCKMAP of one slot, key
 * __u32 0, value the listening socket. The agent writes it with the
 * socket's fd (it takes HAProxy's listener with pidfd_getfd) and reads it
 * back as the socket's cookie, hence the 8-byte value. Not in WEFT_MAPS:
 * the codec never encodes it. The agent's loader pins it beside the others
 * (nodeagent/src/loader: L7_LISTEN_MAP, checked against the object's
 * declaration at load). The kernel empties the slot when the socket closes,
 * so a proxy that is gone is an empty slot.
 */
#define WEFT_L7_LISTEN_SLOT 0u
#define WEFT_L7_LISTEN_MAX 1u

/* ---- services: hash, frontend -> lookup table ---------------------------- */

struct weft_svc_key {
	__be32 vip;
	__be16 port;
	__u8 protocol; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 _pad;
};
_Static_assert(sizeof(struct weft_svc_key) == 8, "weft_svc_key size");
_Static_assert(WEFT_OFFSETOF(struct weft_svc_key, vip) == 0, "svc vip");
_Static_assert(WEFT_OFFSETOF(struct weft_svc_key, port) == 4, "svc port");
_Static_assert(WEFT_OFFSETOF(struct weft_svc_key, protocol) == 6, "svc protocol");
_Static_assert(WEFT_OFFSETOF(struct weft_svc_key, _pad) == 7, "svc pad");

/*
 * A service points at a whole table by id: the agent writes a new table under
 * a fresh id and then flips this one value, so a connect() sees the old table
 * or the new one, never a mix (Cilium rewrites slots in place and needs a
 * write order to hide the mix).
 */
struct weft_svc_value {
	__u32 table_id;
	__u32 slots; /* table length; 0 = no backend, connect() is refused */
};
_Static_assert(sizeof(struct weft_svc_value) == 8, "weft_svc_value size");

/* ---- lookup-table slots: hash, (table, slot) -> backend ------------------- */

struct weft_lb_slot_key {
	__u32 table_id;
	__u32 slot;
};
_Static_assert(sizeof(struct weft_lb_slot_key) == 8, "weft_lb_slot_key size");
_Static_assert(WEFT_OFFSETOF(struct weft_lb_slot_key, table_id) == 0, "slot table_id");
_Static_assert(WEFT_OFFSETOF(struct weft_lb_slot_key, slot) == 4, "slot slot");

struct weft_lb_slot_value {
	__u32 backend_id;
};
_Static_assert(sizeof(struct weft_lb_slot_value) == 4, "weft_lb_slot_value size");

/* ---- backends: hash, id -> address --------------------------------------- */

struct weft_backend_key {
	__u32 backend_id; /* never 0 */
};
_Static_assert(sizeof(struct weft_backend_key) == 4, "weft_backend_key size");
_Static_assert(WEFT_OFFSETOF(struct weft_backend_key, backend_id) == 0, "backend id");

struct weft_backend_value {
	__be32 addr;
	__be16 port;
	__u16 _pad;
};
_Static_assert(sizeof(struct weft_backend_value) == 8, "weft_backend_value size");

/* ---- socket reverse translation: LRU, socket + backend -> VIP ------------ */

struct weft_sock_rev_key {
	__u64 cookie; /* bpf_get_socket_cookie() */
	__be32 addr;  /* backend address the socket talks to */
	__be16 port;
	__u16 _pad;
};
_Static_assert(sizeof(struct weft_sock_rev_key) == 16, "weft_sock_rev_key size");
_Static_assert(WEFT_OFFSETOF(struct weft_sock_rev_key, cookie) == 0, "rev cookie");
_Static_assert(WEFT_OFFSETOF(struct weft_sock_rev_key, addr) == 8, "rev addr");
_Static_assert(WEFT_OFFSETOF(struct weft_sock_rev_key, port) == 12, "rev port");
_Static_assert(WEFT_OFFSETOF(struct weft_sock_rev_key, _pad) == 14, "rev pad");

struct weft_sock_rev_value {
	__be32 vip;
	__be16 port;
	__u16 _pad;
};
_Static_assert(sizeof(struct weft_sock_rev_value) == 8, "weft_sock_rev_value size");

/* ---- connection tracking: LRU, reply tuple -> the flow it answers -------- */

/*
 * Written by the tc program only, never by the agent. When a packet that
 * opens a flow passes policy (TCP SYN without ACK, any UDP datagram, ICMP
 * echo request), the entry its replies will look up is inserted: the same
 * workload and peer, the ports as the replies carry them, and the opposite
 * direction. Keyed from the workload's side rather than by (saddr, daddr),
 * so a reply computes the key with the same parse as any packet and the two
 * workloads of a same-node flow get two distinct entries, one per veth.
 */
struct weft_ct_key {
	__be32 local;       /* the guarded workload's address */
	__be32 remote;      /* the peer's address */
	__be16 local_port;  /* workload-side port; ICMP echo: the echo id; else 0 */
	__be16 remote_port; /* peer-side port; ICMP echo: the echo id; else 0 */
	__u8 protocol;
	__u8 direction; /* WEFT_DIR_* of the replies this entry recognises */
	__u16 _pad;
};
_Static_assert(sizeof(struct weft_ct_key) == 16, "weft_ct_key size");
_Static_assert(WEFT_OFFSETOF(struct weft_ct_key, local) == 0, "ct local");
_Static_assert(WEFT_OFFSETOF(struct weft_ct_key, remote) == 4, "ct remote");
_Static_assert(WEFT_OFFSETOF(struct weft_ct_key, local_port) == 8, "ct local_port");
_Static_assert(WEFT_OFFSETOF(struct weft_ct_key, remote_port) == 10, "ct remote_port");
_Static_assert(WEFT_OFFSETOF(struct weft_ct_key, protocol) == 12, "ct protocol");
_Static_assert(WEFT_OFFSETOF(struct weft_ct_key, direction) == 13, "ct direction");
_Static_assert(WEFT_OFFSETOF(struct weft_ct_key, _pad) == 14, "ct pad");

/*
 * The identities at open time: an address reused by another workload (or a
 * peer whose identity changed) does not inherit the old flow's replies.
 */
struct weft_ct_value {
	__u32 local_identity;
	__u32 remote_identity;
};
_Static_assert(sizeof(struct weft_ct_value) == 8, "weft_ct_value size");

/* ---- audit: hash, the policy as it would be with audit-mode rules enforced */

/*
 * Same key and value as weft_policy, written by the compiler only for the
 * (local identity, direction) pairs that some audit-mode policy or rule
 * touches: there it holds the whole policy (enforced and audit rules
 * together, normalised the same way). weft_policy alone decides; a new
 * connection weft_policy passes is probed here too, and a drop here turns
 * its verdict into WEFT_REASON_AUDIT (still passed) naming the rule that
 * would have dropped it. A pair with no entry at its selection key costs
 * one lookup, and only on a connection's first packet.
 */

/* ---- flow events: a ring buffer of new connections' verdicts and drops --- */

/*
 * One record per dropped packet, per new connection a tc program passes
 * (the packet that created its weft_ct entry) and per socket-LB decision
 * (translated or refused). Established packets emit nothing: counters cover
 * them. Emission is rate-limited per CPU (weft_flow_cfg, a token bucket kept
 * in weft_flow_stats); what the bucket or a full ring refuses is counted in
 * weft_flow_stats, never silent.
 *
 * Addresses and ports are as on the wire: source and destination of the
 * packet (tc), or of the connect()/sendmsg() (sock: saddr is 0 unless the
 * socket was bound, daddr the chosen backend, orig_* the service address
 * asked for). The verdict follows from the reason (WEFT_REASON_VERDICT).
 */
struct weft_flow_event {
	__u64 time_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 cookie;  /* socket cookie (sock hook); 0 from tc */
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 protocol;
	__u8 hook;   /* WEFT_HOOK_* */
	__u8 reason; /* WEFT_REASON_* */
	__u8 _pad0;
	__u32 src_identity; /* 0 = unknown (the sock hook's source) */
	__u32 src_tenant;
	__u32 dst_identity;
	__u32 dst_tenant;
	__u32 rule_id; /* the weft_policy (or weft_audit) entry's rule; 0 = none */
	__be32 orig_daddr;
	__be16 orig_dport;
	__u16 _pad1;
	__u32 ifindex; /* the interface the tc program ran on; 0 for sock */
	__u32 len;     /* packet length; 0 for sock */
	__u32 _pad2;
};
_Static_assert(sizeof(struct weft_flow_event) == 72, "weft_flow_event size");
_Static_assert(WEFT_OFFSETOF(struct weft_flow_event, saddr) == 16, "event saddr");
_Static_assert(WEFT_OFFSETOF(struct weft_flow_event, protocol) == 28, "event protocol");
_Static_assert(WEFT_OFFSETOF(struct weft_flow_event, src_identity) == 32, "event src_identity");
_Static_assert(WEFT_OFFSETOF(struct weft_flow_event, rule_id) == 48, "event rule_id");
_Static_assert(WEFT_OFFSETOF(struct weft_flow_event, ifindex) == 60, "event ifindex");

/* weft_flow_cfg: array, one entry (index 0), written by the agent. */
#define WEFT_FLOW_F_ALLOWED 1u /* also emit passed new connections, not only drops and audits */

/*
 * The rate as the interval between events rather than events per second:
 * the agent divides once, the datapath never (a 64-bit division was a tenth
 * of an event's cost).
 */
struct weft_flow_cfg {
	__u64 interval_ns; /* 1e9 / events per second per CPU; 0 = no events at all (the zeroed default) */
	__u32 burst;       /* most events at once per CPU, >= 1 when interval_ns > 0 */
	__u32 flags;       /* WEFT_FLOW_F_* */
};
_Static_assert(sizeof(struct weft_flow_cfg) == 16, "weft_flow_cfg size");

/*
 * weft_flow_stats: per-CPU array, one entry. The counters the agent reads,
 * and this CPU's token bucket (one lookup for both on the event path).
 */
struct weft_flow_stats {
	__u64 emitted;
	__u64 rate_limited; /* refused by the bucket: lost */
	__u64 ring_full;    /* the ring had no room: lost */
	__u64 stamp_ns;     /* the bucket's last refill */
	__u64 credit_ns;    /* an event costs interval_ns; at most burst events' worth */
};
_Static_assert(sizeof(struct weft_flow_stats) == 40, "weft_flow_stats size");

/* ---- metrics: per-CPU array indexed by WEFT_METRICS_INDEX(hook, reason) -- */

struct weft_metrics_value {
	__u64 packets; /* packets, or connect()/sendmsg() calls for WEFT_HOOK_SOCK */
	__u64 bytes;
};
_Static_assert(sizeof(struct weft_metrics_value) == 16, "weft_metrics_value size");

/* ---- the one table of maps ------------------------------------------------ */

/*
 * X(id, name, kind, key type, value type, max entries), one macro per map
 * so an object declares only the maps it uses. `name` is the map's
 * C identifier in the BPF objects, hence its kernel name and pin file name;
 * the codec exports the same table, so loader, agent and tests never spell a
 * name twice. Names are lower snake case, at most 15 characters.
 */
#define WEFT_MAP_ipcache(X)                                                              \
	X(ipcache, weft_ipcache, LPM_TRIE, struct weft_ipcache_key, struct weft_identity,   \
	  WEFT_IPCACHE_MAX)
#define WEFT_MAP_endpoint(X)                                                             \
	X(endpoint, weft_endpoint, HASH, struct weft_endpoint_key, struct weft_identity,    \
	  WEFT_ENDPOINT_MAX)
#define WEFT_MAP_local_veth(X)                                                           \
	X(local_veth, weft_local_veth, HASH, struct weft_endpoint_key,                      \
	  struct weft_local_veth, WEFT_ENDPOINT_MAX)
#define WEFT_MAP_policy(X)                                                               \
	X(policy, weft_policy, HASH, struct weft_policy_key, struct weft_policy_value,      \
	  WEFT_POLICY_MAX)
#define WEFT_MAP_svc(X)                                                                  \
	X(svc, weft_svc, HASH, struct weft_svc_key, struct weft_svc_value, WEFT_SVC_MAX)
#define WEFT_MAP_lb_slot(X)                                                              \
	X(lb_slot, weft_lb_slot, HASH, struct weft_lb_slot_key, struct weft_lb_slot_value,  \
	  WEFT_LB_SLOT_MAX)
#define WEFT_MAP_backend(X)                                                              \
	X(backend, weft_backend, HASH, struct weft_backend_key, struct weft_backend_value,  \
	  WEFT_BACKEND_MAX)
#define WEFT_MAP_sock_rev(X)                                                             \
	X(sock_rev, weft_sock_rev, LRU_HASH, struct weft_sock_rev_key,                      \
	  struct weft_sock_rev_value, WEFT_SOCK_REV_MAX)
#define WEFT_MAP_ct(X)                                                                   \
	X(ct, weft_ct, LRU_HASH, struct weft_ct_key, struct weft_ct_value, WEFT_CT_MAX)
#define WEFT_MAP_sock_cfg(X)                                                             \
	X(sock_cfg, weft_sock_cfg, HASH, struct weft_sock_cfg_key, struct weft_sock_cfg,    \
	  WEFT_SOCK_CFG_MAX)
#define WEFT_MAP_metrics(X)                                                              \
	X(metrics, weft_metrics, PERCPU_ARRAY, __u32, struct weft_metrics_value,            \
	  WEFT_METRICS_MAX)

#define WEFT_MAP_audit(X)                                                                \
	X(audit, weft_audit, HASH, struct weft_policy_key, struct weft_policy_value,        \
	  WEFT_POLICY_MAX)
#define WEFT_MAP_steer(X)                                                                \
	X(steer, weft_steer, HASH, struct weft_policy_key, struct weft_policy_value,        \
	  WEFT_POLICY_MAX)
#define WEFT_MAP_l7(X) X(l7, weft_l7, HASH, struct weft_svc_key, struct weft_l7_value, WEFT_SVC_MAX)
/* A ring buffer has no key or value; its size is max_entries, in bytes. */
#define WEFT_MAP_flow_ring(X)                                                            \
	X(flow_ring, weft_flow_ring, RINGBUF, void, void, WEFT_FLOW_RING_BYTES)
#define WEFT_MAP_flow_cfg(X)                                                             \
	X(flow_cfg, weft_flow_cfg, ARRAY, __u32, struct weft_flow_cfg, 1)
#define WEFT_MAP_flow_stats(X)                                                           \
	X(flow_stats, weft_flow_stats, PERCPU_ARRAY, __u32, struct weft_flow_stats, 1)

/* Every map flow events need, for an object that emits them. */
#define WEFT_MAPS_FLOW(X) WEFT_MAP_flow_ring(X) WEFT_MAP_flow_cfg(X) WEFT_MAP_flow_stats(X)

#define WEFT_MAPS(X)                                                                     \
	WEFT_MAP_ipcache(X) WEFT_MAP_endpoint(X) WEFT_MAP_policy(X) WEFT_MAP_svc(X)         \
	WEFT_MAP_lb_slot(X) WEFT_MAP_backend(X) WEFT_MAP_sock_rev(X) WEFT_MAP_ct(X)         \
	WEFT_MAP_metrics(X) WEFT_MAP_local_veth(X) WEFT_MAP_sock_cfg(X) WEFT_MAP_audit(X)   \
	WEFT_MAP_steer(X) WEFT_MAP_l7(X) WEFT_MAPS_FLOW(X)

#define WEFT_PIN_DIR "/sys/fs/bpf/weft"

#endif /* WEFT_ABI_H */
