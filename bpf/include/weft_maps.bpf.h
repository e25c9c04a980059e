/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * BPF-side map declarations generated from the table in weft_abi.h, so a
 * program source names a map only through WEFT_MAP_<id>(WEFT_DECLARE_MAP).
 * No `pinning` attribute: the agent pins under WEFT_PIN_DIR itself and hands
 * the pinned fds to libbpf (bpf_map__reuse_fd) before load.
 */
#ifndef WEFT_MAPS_BPF_H
#define WEFT_MAPS_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "weft_abi.h"

/* The kernel refuses an LPM trie that asks for preallocation. */
#define WEFT_MAP_FLAGS_LPM_TRIE BPF_F_NO_PREALLOC
#define WEFT_MAP_FLAGS_HASH 0
#define WEFT_MAP_FLAGS_LRU_HASH 0
#define WEFT_MAP_FLAGS_PERCPU_ARRAY 0
#define WEFT_MAP_FLAGS_ARRAY 0

#define WEFT_DECLARE_KV(name, kind, key_t, value_t, max)                                 \
	struct {                                                                         \
		__uint(type, BPF_MAP_TYPE_##kind);                                       \
		__uint(max_entries, max);                                                \
		__uint(map_flags, WEFT_MAP_FLAGS_##kind);                                \
		__type(key, key_t);                                                      \
		__type(value, value_t);                                                  \
	} name SEC(".maps");
#define WEFT_DECLARE_LPM_TRIE(name, k, v, max) WEFT_DECLARE_KV(name, LPM_TRIE, k, v, max)
#define WEFT_DECLARE_HASH(name, k, v, max) WEFT_DECLARE_KV(name, HASH, k, v, max)
#define WEFT_DECLARE_LRU_HASH(name, k, v, max) WEFT_DECLARE_KV(name, LRU_HASH, k, v, max)
#define WEFT_DECLARE_ARRAY(name, k, v, max) WEFT_DECLARE_KV(name, ARRAY, k, v, max)
#define WEFT_DECLARE_PERCPU_ARRAY(name, k, v, max) WEFT_DECLARE_KV(name, PERCPU_ARRAY, k, v, max)
/* A ring buffer takes no key or value type; max_entries is its size in bytes. */
#define WEFT_DECLARE_RINGBUF(name, k, v, max)                                            \
	struct {                                                                         \
		__uint(type, BPF_MAP_TYPE_RINGBUF);                                      \
		__uint(max_entries, max);                                                \
	} name SEC(".maps");

#define WEFT_DECLARE_MAP(id, name, kind, key_t, value_t, max)                            \
	WEFT_DECLARE_##kind(name, key_t, value_t, max)

/*
 * Count one event. A missing slot can only mean a reason beyond
 * WEFT_REASON_COUNT, a bug the codec tests catch, so it is ignored here
 * rather than turned into a second verdict.
 */
#define WEFT_COUNT(metrics_map, hook, reason, len)                                       \
	({                                                                               \
		__u32 __idx = WEFT_METRICS_INDEX(hook, reason);                          \
		struct weft_metrics_value *__m =                                         \
			bpf_map_lookup_elem(&(metrics_map), &__idx);                     \
		if (__m) {                                                               \
			__m->packets += 1;                                               \
			__m->bytes += (len);                                             \
		}                                                                        \
	})

#endif /* WEFT_MAPS_BPF_H */
