// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Socket-level load balancing, attached to a cgroup (v2). A connect() or an
 * unconnected sendmsg() to a service VIP:port is rewritten to a backend
 * before any packet exists; recvmsg() and getpeername() show the VIP again,
 * so the application never learns the backend address.
 *
 * Backend choice: a uniformly random slot of the service's weighted slot
 * table (built by the codec's buildLbTable). The choice is made once per
 * connection and pinned by the socket, so nothing needs the consistency of
 * Maglev; a slot table gives each backend exactly its share of slots.
 * bpf_get_prandom_u32() % slots is biased by at most slots / 2^32 (< 4e-6 at
 * WEFT_LB_TABLE_MAX), far below the 1-point accuracy the weights promise.
 *
 * Whose connections: only those of Weft's workloads, each in a network
 * namespace of its own. A socket of the host's namespace (weft_sock_cfg's
 * cookie, and the initial namespace) goes where it asked unless the operator
 * opted in (--lb-host-traffic): the programs sit on a cgroup that holds host
 * processes too, and a tenant's VIP must not redirect them. Until the agent
 * has written weft_sock_cfg, nothing is rewritten.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#include "weft_flow.bpf.h"
#include "weft_maps.bpf.h"

WEFT_MAP_svc(WEFT_DECLARE_MAP)
WEFT_MAP_lb_slot(WEFT_DECLARE_MAP)
WEFT_MAP_backend(WEFT_DECLARE_MAP)
WEFT_MAP_sock_rev(WEFT_DECLARE_MAP)
WEFT_MAP_metrics(WEFT_DECLARE_MAP)
WEFT_MAP_sock_cfg(WEFT_DECLARE_MAP)
WEFT_MAP_ipcache(WEFT_DECLARE_MAP)

/* cgroup/sock_addr programs: 1 lets the call proceed, 0 fails it with EPERM. */
#define SOCK_PROCEED 1
#define SOCK_REJECT 0

static __always_inline __be16 sock4_user_port(const struct bpf_sock_addr *ctx)
{
	/* user_port is a 4-byte field holding the 2-byte network-order port. */
	volatile __u32 port = ctx->user_port;

	return (__be16)port;
}

/*
 * Whether ctx's socket may be load-balanced: always with the operator's
 * opt-in, otherwise only outside the host's network namespace. No config
 * (the agent has not written it) or an unknown host cookie means no.
 */
static __always_inline int sock4_balanced(struct bpf_sock_addr *ctx)
{
	struct weft_sock_cfg_key key = { .index = WEFT_SOCK_CFG_KEY };
	struct weft_sock_cfg *cfg = bpf_map_lookup_elem(&weft_sock_cfg, &key);
	__u64 netns;

	if (!cfg)
		return 0;
	if (cfg->lb_host_traffic)
		return 1;
	if (cfg->host_netns_cookie == 0)
		return 0;
	netns = bpf_get_netns_cookie(ctx);
	/* NULL: the initial namespace's cookie (sock_addr programs take ctx or NULL). */
	return netns != cfg->host_netns_cookie && netns != bpf_get_netns_cookie(NULL);
}

/*
 * A flow event for a socket-LB decision: the connect()/sendmsg() to a
 * service, translated to `be` or refused (be NULL). The source's identity is
 * not known here (a socket, not a packet); the destination's is the
 * backend's ipcache entry. Rate-limited like every event.
 */
static __always_inline void sock4_flow_note(struct bpf_sock_addr *ctx, const struct weft_svc_key *svc,
					    const struct weft_backend_value *be, __u32 reason)
{
	__u64 now = bpf_ktime_get_ns();
	struct weft_flow_stats *stats = weft_flow_admit(be != NULL, now);
	struct weft_ipcache_key ip_key = { .prefixlen = 32 };
	struct weft_identity *dst = NULL;
	struct weft_flow_event *ev;

	if (!stats)
		return;
	if (be) {
		ip_key.addr = be->addr;
		dst = bpf_map_lookup_elem(&weft_ipcache, &ip_key);
	}
	ev = weft_flow_reserve(stats);
	if (!ev)
		return;
	ev->time_ns = now;
	ev->cookie = bpf_get_socket_cookie(ctx);
	ev->saddr = 0;
	ev->daddr = be ? be->addr : svc->vip;
	ev->sport = 0;
	ev->dport = be ? be->port : svc->port;
	ev->protocol = (__u8)ctx->protocol;
	ev->hook = WEFT_HOOK_SOCK;
	ev->reason = reason;
	ev->_pad0 = 0;
	ev->src_identity = 0;
	ev->src_tenant = 0;
	ev->dst_identity = dst ? dst->identity : 0;
	ev->dst_tenant = dst ? dst->tenant : 0;
	ev->rule_id = 0;
	ev->orig_daddr = svc->vip;
	ev->orig_dport = svc->port;
	ev->_pad1 = 0;
	ev->ifindex = 0;
	ev->len = 0;
	ev->_pad2 = 0;
	weft_flow_submit(stats, ev);
}

/*
 * Pick a backend for ctx's destination when it is a service.
 * Returns 1 translated, 0 not a service, -1 a service without a backend.
 */
static __always_inline int __sock4_xlate_fwd(struct bpf_sock_addr *ctx)
{
	struct weft_svc_key svc_key = {
		.vip = ctx->user_ip4,
		.port = sock4_user_port(ctx),
		.protocol = (__u8)ctx->protocol,
	};
	struct weft_sock_rev_value rev_value = {};
	struct weft_sock_rev_key rev_key = {};
	struct weft_sock_rev_value *rev_old;
	struct weft_lb_slot_key slot_key;
	struct weft_backend_key be_key;
	struct weft_lb_slot_value *slot;
	struct weft_backend_value *be;
	struct weft_svc_value *svc;

	svc = bpf_map_lookup_elem(&weft_svc, &svc_key);
	if (!svc)
		return 0;
	if (svc->slots == 0) {
		sock4_flow_note(ctx, &svc_key, NULL, WEFT_REASON_LB_NO_BACKEND);
		return -1;
	}

	slot_key.table_id = svc->table_id;
	slot_key.slot = bpf_get_prandom_u32() % svc->slots;
	slot = bpf_map_lookup_elem(&weft_lb_slot, &slot_key);
	if (!slot)
		return -1;
	be_key.backend_id = slot->backend_id;
	be = bpf_map_lookup_elem(&weft_backend, &be_key);
	if (!be) {
		sock4_flow_note(ctx, &svc_key, NULL, WEFT_REASON_LB_NO_BACKEND);
		return -1;
	}

	rev_key.cookie = bpf_get_socket_cookie(ctx);
	rev_key.addr = be->addr;
	rev_key.port = be->port;
	rev_value.vip = svc_key.vip;
	rev_value.port = svc_key.port;
	/*
	 * A socket already sending to this backend for this service (a UDP
	 * socket's next datagram) is no new flow: no event, and no update that
	 * would take a free node and lock the bucket. Otherwise a full LRU
	 * evicts the oldest entry instead of failing, so the update cannot fail
	 * for lack of room; without the entry the application would only see
	 * the backend address, so translation goes on regardless.
	 */
	rev_old = bpf_map_lookup_elem(&weft_sock_rev, &rev_key);
	if (!rev_old || rev_old->vip != rev_value.vip || rev_old->port != rev_value.port) {
		bpf_map_update_elem(&weft_sock_rev, &rev_key, &rev_value, BPF_ANY);
		sock4_flow_note(ctx, &svc_key, be, WEFT_REASON_LB_TRANSLATED);
	}

	ctx->user_ip4 = be->addr;
	ctx->user_port = (__u32)be->port;
	return 1;
}

static __always_inline int sock4_fwd(struct bpf_sock_addr *ctx)
{
	int ret;

	if (!sock4_balanced(ctx))
		return SOCK_PROCEED;
	ret = __sock4_xlate_fwd(ctx);

	if (ret == 0)
		return SOCK_PROCEED;
	if (ret < 0) {
		WEFT_COUNT(weft_metrics, WEFT_HOOK_SOCK, WEFT_REASON_LB_NO_BACKEND, 0);
		return SOCK_REJECT;
	}
	WEFT_COUNT(weft_metrics, WEFT_HOOK_SOCK, WEFT_REASON_LB_TRANSLATED, 0);
	return SOCK_PROCEED;
}

/* Show the VIP instead of the backend this socket was sent to. */
static __always_inline int sock4_rev(struct bpf_sock_addr *ctx)
{
	struct weft_sock_rev_key key = {
		.cookie = bpf_get_socket_cookie(ctx),
		.addr = ctx->user_ip4,
		.port = sock4_user_port(ctx),
	};
	struct weft_sock_rev_value *rev = bpf_map_lookup_elem(&weft_sock_rev, &key);

	if (rev) {
		ctx->user_ip4 = rev->vip;
		ctx->user_port = (__u32)rev->port;
		WEFT_COUNT(weft_metrics, WEFT_HOOK_SOCK, WEFT_REASON_LB_REVERSED, 0);
	}
	return SOCK_PROCEED;
}

SEC("cgroup/connect4")
int weft_connect4(struct bpf_sock_addr *ctx)
{
	return sock4_fwd(ctx);
}

SEC("cgroup/sendmsg4")
int weft_sendmsg4(struct bpf_sock_addr *ctx)
{
	return sock4_fwd(ctx);
}

SEC("cgroup/recvmsg4")
int weft_recvmsg4(struct bpf_sock_addr *ctx)
{
	return sock4_rev(ctx);
}

SEC("cgroup/getpeername4")
int weft_getpeername4(struct bpf_sock_addr *ctx)
{
	return sock4_rev(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
