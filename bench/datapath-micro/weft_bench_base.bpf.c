// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Benchmark baseline for npm run bench:datapath-micro, never attached and not
 * part of the datapath the agent loads: the irreducible work of any identity
 * policy (parse, one ipcache lookup, one exact policy lookup, pass). The
 * local identity comes in skb->mark, set through the test run's context, so
 * the baseline needs no endpoint lookup. The bench loads this object with the
 * maps of weft_policy.o (shared through pins), so both read the same entries.
 * Built by scripts/build-abi.sh into bench/datapath-micro/dist/.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "weft_maps.bpf.h"
#include "weft_parse.bpf.h"

WEFT_MAP_ipcache(WEFT_DECLARE_MAP)
WEFT_MAP_policy(WEFT_DECLARE_MAP)

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
