/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Parsing an Ethernet/IPv4 frame into the flow policy and conntrack see.
 * Shared by weft_policy.bpf.c and the datapath-micro bench's baseline
 * (bench/datapath-micro/weft_bench_base.bpf.c), so the baseline pays exactly
 * the parse the real programs pay.
 */
#ifndef WEFT_PARSE_BPF_H
#define WEFT_PARSE_BPF_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "weft_abi.h"

#define IP_OFFSET_MASK 0x1fff
#define TCP_FLAGS_OFFSET 13
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10
#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8

struct weft_flow {
	__be32 local;
	__be32 remote;
	__be16 dport;      /* the port policy matches; 0 without ports */
	__be16 local_port; /* conntrack ports, see struct weft_ct_key */
	__be16 remote_port;
	__u8 protocol;
	__u8 opens;     /* [R8] this packet may open a flow */
	__u8 may_reply; /* [R9] this packet may be a reply */
	__u8 ttl;       /* [R10] */
};

/*
 * Parse an Ethernet/IPv4 frame into a flow seen from the workload.
 * Returns 0, or -WEFT_REASON_* for a frame that never reaches policy.
 * A non-first fragment has no L4 header: its ports are 0, so only entries
 * with any-port match it, and it neither opens nor answers a flow.
 */
static __always_inline int __weft_parse(struct __sk_buff *skb, __u8 dir, struct weft_flow *flow)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u8 *l4;

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
	flow->ttl = ip->ttl;
	flow->dport = 0;
	flow->local_port = 0;
	flow->remote_port = 0;
	flow->opens = 0;
	flow->may_reply = 0;
	if (ip->frag_off & bpf_htons(IP_OFFSET_MASK))
		return 0;

	l4 = (void *)ip + ip->ihl * 4;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP ||
	    ip->protocol == IPPROTO_SCTP) {
		/* TCP, UDP and SCTP all start with sport, dport. */
		__be16 *ports = (void *)l4;

		if ((void *)(ports + 2) > data_end)
			return -WEFT_REASON_MALFORMED; /* [R2] */
		flow->dport = ports[1];
		flow->local_port = dir == WEFT_DIR_EGRESS ? ports[0] : ports[1];
		flow->remote_port = dir == WEFT_DIR_EGRESS ? ports[1] : ports[0];
		flow->opens = 1;
		flow->may_reply = 1;
		if (ip->protocol == IPPROTO_TCP) {
			__u8 flags;

			if ((void *)(l4 + TCP_FLAGS_OFFSET + 1) > data_end)
				return -WEFT_REASON_MALFORMED; /* [R2] */
			flags = l4[TCP_FLAGS_OFFSET] & (TCP_FLAG_SYN | TCP_FLAG_ACK);
			/* Only a bare SYN opens; a bare SYN is never a reply. */
			flow->opens = flags == TCP_FLAG_SYN;
			flow->may_reply = !flow->opens;
		}
	} else if (ip->protocol == IPPROTO_ICMP) {
		/* type, code, checksum, echo id, sequence */
		if ((void *)(l4 + 8) > data_end)
			return -WEFT_REASON_MALFORMED; /* [R2] */
		if (l4[0] == ICMP_ECHO || l4[0] == ICMP_ECHOREPLY) {
			flow->local_port = *(__be16 *)(l4 + 4);
			flow->remote_port = flow->local_port;
			flow->opens = l4[0] == ICMP_ECHO;
			flow->may_reply = l4[0] == ICMP_ECHOREPLY;
		}
	}
	return 0;
}

#endif /* WEFT_PARSE_BPF_H */
