// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The Weft map codec: bpf/include/weft_abi.h compiled for wasm32. Every byte
 * offset comes from the compiler (offsetof/sizeof on the very structs the BPF
 * objects use), never from TypeScript.
 *
 * Calling convention: JS writes host-order u32 "fields" (one per struct
 * member, two for a u64: low word first) into the fields area and bytes into
 * the bytes area, calls a function, and reads the other area back. Batches
 * keep the wasm boundary out of the per-entry cost. Errors are negative
 * WEFT_E_* codes; weft_err_index/field/value say which entry and member.
 */
#include "weft_abi.h"

#define WEFT_BATCH_MAX 4096u
#define WEFT_FIELDS_PER_ENTRY_MAX 12u
#define WEFT_STRUCT_MAX 40u
#define WEFT_FIELDS_LEN (WEFT_BATCH_MAX * WEFT_FIELDS_PER_ENTRY_MAX)
#define WEFT_BYTES_LEN (WEFT_BATCH_MAX * WEFT_STRUCT_MAX * 2u)

#define WEFT_E_RANGE (-1)     /* a member outside its [min, max] */
#define WEFT_E_HOST_BITS (-2) /* prefix address with bits beyond the length */
#define WEFT_E_BATCH (-3)     /* more entries than WEFT_BATCH_MAX */
#define WEFT_E_MAP (-6)       /* unknown map or part */

static __u32 fields[WEFT_FIELDS_LEN];
static __u8 bytes[WEFT_BYTES_LEN];
static __u32 err_index, err_field, err_value;

enum kind { K_PAD, K_U8, K_U16, K_U32, K_BE16, K_BE32, K_U64 };

struct field {
	const char *name;
	__u32 offset, size;
	enum kind kind;
	__u32 min, max; /* inclusive, on the host-order value; unused for pads and u64 */
};

struct layout {
	const char *name;
	__u32 size;
	__u32 nfields;
	const struct field *fields;
};

/*
 * One member list per struct drives three things: the descriptor the JS glue
 * and the BTF test read, a specialised encoder and a specialised decoder.
 * The coders assign struct members by name, so every offset, size and pad
 * comes from the compiler; a generic interpreter over the descriptors was
 * three times slower and the batch path is what the agent runs.
 * X(type, member, kind, min, max) is a value member, P(type, member) a pad.
 */
#define U32_ALL 0xffffffffu
#define MEMBER_SIZE(type, member) ((__u32)sizeof(((type *)0)->member))

#define IPCACHE_KEY(X, P, T)                                                               \
	X(T, prefixlen, K_U32, 0, WEFT_PREFIX_MAX) X(T, addr, K_BE32, 0, U32_ALL)
#define IDENTITY(X, P, T) X(T, identity, K_U32, 1, U32_ALL) X(T, tenant, K_U32, 0, U32_ALL)
#define ENDPOINT_KEY(X, P, T) X(T, addr, K_BE32, 0, U32_ALL)
#define POLICY_KEY(X, P, T)                                                                \
	X(T, local_identity, K_U32, 1, U32_ALL) X(T, remote_identity, K_U32, 0, U32_ALL)   \
	X(T, dport, K_BE16, 0, WEFT_PORT_MAX) X(T, protocol, K_U8, 0, 255)                 \
	X(T, direction, K_U8, WEFT_DIR_INGRESS, WEFT_DIR_EGRESS)
#define POLICY_VALUE(X, P, T)                                                              \
	X(T, rule_id, K_U32, 0, U32_ALL) X(T, action, K_U8, WEFT_ACTION_ALLOW, WEFT_ACTION_MAX) \
	X(T, flags, K_U8, 0, WEFT_POLICY_F_MAX) P(T, _pad)
#define SVC_KEY(X, P, T)                                                                   \
	X(T, vip, K_BE32, 0, U32_ALL) X(T, port, K_BE16, 1, WEFT_PORT_MAX)                 \
	X(T, protocol, K_U8, 6, 17) P(T, _pad)
#define SVC_VALUE(X, P, T) X(T, table_id, K_U32, 0, U32_ALL) X(T, slots, K_U32, 0, WEFT_LB_TABLE_MAX)
#define L7_VALUE(X, P, T) X(T, flags, K_U8, 1, WEFT_L7_F_MAX) P(T, _pad)
#define LB_SLOT_KEY(X, P, T)                                                               \
	X(T, table_id, K_U32, 0, U32_ALL) X(T, slot, K_U32, 0, WEFT_LB_TABLE_MAX - 1)
#define LB_SLOT_VALUE(X, P, T) X(T, backend_id, K_U32, 1, U32_ALL)
#define BACKEND_KEY(X, P, T) X(T, backend_id, K_U32, 1, U32_ALL)
#define BACKEND_VALUE(X, P, T)                                                             \
	X(T, addr, K_BE32, 0, U32_ALL) X(T, port, K_BE16, 1, WEFT_PORT_MAX) P(T, _pad)
#define SOCK_REV_KEY(X, P, T)                                                              \
	X(T, cookie, K_U64, 0, 0) X(T, addr, K_BE32, 0, U32_ALL)                           \
	X(T, port, K_BE16, 0, WEFT_PORT_MAX) P(T, _pad)
#define SOCK_REV_VALUE(X, P, T)                                                            \
	X(T, vip, K_BE32, 0, U32_ALL) X(T, port, K_BE16, 0, WEFT_PORT_MAX) P(T, _pad)
#define CT_KEY(X, P, T)                                                                    \
	X(T, local, K_BE32, 0, U32_ALL) X(T, remote, K_BE32, 0, U32_ALL)                   \
	X(T, local_port, K_BE16, 0, WEFT_PORT_MAX) X(T, remote_port, K_BE16, 0, WEFT_PORT_MAX) \
	X(T, protocol, K_U8, 0, 255) X(T, direction, K_U8, WEFT_DIR_INGRESS, WEFT_DIR_EGRESS) \
	P(T, _pad)
#define CT_VALUE(X, P, T)                                                                  \
	X(T, local_identity, K_U32, 0, U32_ALL) X(T, remote_identity, K_U32, 0, U32_ALL)
#define LOCAL_VETH(X, P, T) X(T, ifindex, K_U32, 1, U32_ALL)
#define SOCK_CFG_KEY(X, P, T) X(T, index, K_U32, WEFT_SOCK_CFG_KEY, WEFT_SOCK_CFG_KEY)
#define SOCK_CFG(X, P, T)                                                                  \
	X(T, host_netns_cookie, K_U64, 0, 0) X(T, lb_host_traffic, K_U32, 0, 1) P(T, _pad)
#define METRICS_VALUE(X, P, T) X(T, packets, K_U64, 0, 0) X(T, bytes, K_U64, 0, 0)
#define FLOW_CFG(X, P, T)                                                                  \
	X(T, interval_ns, K_U64, 0, 0) X(T, burst, K_U32, 0, WEFT_FLOW_BURST_MAX)             \
	X(T, flags, K_U32, 0, WEFT_FLOW_F_ALLOWED)
#define FLOW_STATS(X, P, T)                                                                \
	X(T, emitted, K_U64, 0, 0) X(T, rate_limited, K_U64, 0, 0) X(T, ring_full, K_U64, 0, 0) \
	X(T, stamp_ns, K_U64, 0, 0) X(T, credit_ns, K_U64, 0, 0)
#define FLOW_EVENT(X, P, T)                                                                \
	X(T, time_ns, K_U64, 0, 0) X(T, cookie, K_U64, 0, 0)                               \
	X(T, saddr, K_BE32, 0, U32_ALL) X(T, daddr, K_BE32, 0, U32_ALL)                    \
	X(T, sport, K_BE16, 0, WEFT_PORT_MAX) X(T, dport, K_BE16, 0, WEFT_PORT_MAX)        \
	X(T, protocol, K_U8, 0, 255) X(T, hook, K_U8, 0, WEFT_HOOK_COUNT - 1)              \
	X(T, reason, K_U8, 0, WEFT_REASON_COUNT - 1) P(T, _pad0)                            \
	X(T, src_identity, K_U32, 0, U32_ALL) X(T, src_tenant, K_U32, 0, U32_ALL)          \
	X(T, dst_identity, K_U32, 0, U32_ALL) X(T, dst_tenant, K_U32, 0, U32_ALL)          \
	X(T, rule_id, K_U32, 0, U32_ALL) X(T, orig_daddr, K_BE32, 0, U32_ALL)              \
	X(T, orig_dport, K_BE16, 0, WEFT_PORT_MAX) P(T, _pad1)                              \
	X(T, ifindex, K_U32, 0, U32_ALL) X(T, len, K_U32, 0, U32_ALL) P(T, _pad2)

/* Per-kind conversions between a host-order field and a struct member. */
#define TO_K_U8(in, k) ((__u8)(in)[k])
#define TO_K_U16(in, k) ((__u16)(in)[k])
#define TO_K_U32(in, k) ((in)[k])
#define TO_K_BE16(in, k) (__builtin_bswap16((__u16)(in)[k]))
#define TO_K_BE32(in, k) (__builtin_bswap32((in)[k]))
#define TO_K_U64(in, k) ((__u64)(in)[k] | (__u64)(in)[(k) + 1] << 32)
#define FROM_K_U8(v, out, k) ((out)[(k)++] = (v))
#define FROM_K_U16(v, out, k) ((out)[(k)++] = (v))
#define FROM_K_U32(v, out, k) ((out)[(k)++] = (v))
#define FROM_K_BE16(v, out, k) ((out)[(k)++] = __builtin_bswap16(v))
#define FROM_K_BE32(v, out, k) ((out)[(k)++] = __builtin_bswap32(v))
#define FROM_K_U64(v, out, k) ((out)[(k)++] = (__u32)(v), (out)[(k)++] = (__u32)((v) >> 32))
#define WIDTH_K_U64 2
#define WIDTH_K_U8 1
#define WIDTH_K_U16 1
#define WIDTH_K_U32 1
#define WIDTH_K_BE16 1
#define WIDTH_K_BE32 1
#define RANGED_K_U64 0
#define RANGED_K_U8 1
#define RANGED_K_U16 1
#define RANGED_K_U32 1
#define RANGED_K_BE16 1
#define RANGED_K_BE32 1

#define DESC_X(T, member, kind, min, max)                                                  \
	{ #member, WEFT_OFFSETOF(T, member), MEMBER_SIZE(T, member), kind, min, max },
#define DESC_P(T, member) { #member, WEFT_OFFSETOF(T, member), MEMBER_SIZE(T, member), K_PAD, 0, 0 },

#define ENC_X(T, member, kind, min, max)                                                   \
	if (RANGED_##kind && (in[k] < (__u32)(min) || in[k] > (__u32)(max))) {             \
		err_index = entry, err_field = i, err_value = in[k];                       \
		return WEFT_E_RANGE;                                                       \
	}                                                                                  \
	s.member = TO_##kind(in, k);                                                       \
	k += WIDTH_##kind;                                                                 \
	i++;
#define ENC_P(T, member) i++;

#define DEC_X(T, member, kind, min, max) FROM_##kind(s.member, out, k);
#define DEC_P(T, member)

#define DEFINE_CODER(tag, T, MEMBERS, check_fn)                                            \
	static const struct field tag##_f[] = { MEMBERS(DESC_X, DESC_P, T) };              \
	__attribute__((unused)) /* not every layout is encoded on its own */              \
	static int tag##_enc(const __u32 *in, __u8 *out, __u32 entry)                      \
	{                                                                                  \
		T s;                                                                       \
		__u32 k = 0, i = 0;                                                        \
		__builtin_memset(&s, 0, sizeof(s));                                        \
		MEMBERS(ENC_X, ENC_P, T)                                                   \
		(void)k, (void)i;                                                          \
		if (check_fn) {                                                            \
			int (*check)(const __u32 *) = check_fn;                            \
			int err = check(in);                                               \
			if (err) {                                                         \
				err_index = entry, err_field = U32_ALL, err_value = 0;     \
				return err;                                                \
			}                                                                  \
		}                                                                          \
		__builtin_memcpy(out, &s, sizeof(s));                                      \
		return 0;                                                                  \
	}                                                                                  \
	static void tag##_dec(const __u8 *in, __u32 *out)                                  \
	{                                                                                  \
		T s;                                                                       \
		__u32 k = 0;                                                               \
		__builtin_memcpy(&s, in, sizeof(s));                                       \
		MEMBERS(DEC_X, DEC_P, T)                                                   \
		(void)k;                                                                   \
	}

/* An LPM key with host bits set would be a second, unreachable entry. */
static int ipcache_key_check(const __u32 *in)
{
	__u32 len = in[0], addr = in[1];
	__u32 host_mask = len == 0 ? U32_ALL : (len >= 32 ? 0 : U32_ALL >> len);

	return (addr & host_mask) ? WEFT_E_HOST_BITS : 0;
}

#define NO_CHECK ((int (*)(const __u32 *))0)

/* The metrics map's key is a plain __u32 index, not a struct. */
typedef struct {
	__u32 index;
} metrics_key_t;
#define METRICS_KEY(X, P, T) X(T, index, K_U32, 0, WEFT_METRICS_MAX - 1)

#define X_LAYOUTS(X)                                                                       \
	X(ipcache_key, struct weft_ipcache_key, IPCACHE_KEY, ipcache_key_check)            \
	X(identity, struct weft_identity, IDENTITY, NO_CHECK)                              \
	X(endpoint_key, struct weft_endpoint_key, ENDPOINT_KEY, NO_CHECK)                  \
	X(policy_key, struct weft_policy_key, POLICY_KEY, NO_CHECK)                        \
	X(policy_value, struct weft_policy_value, POLICY_VALUE, NO_CHECK)                  \
	X(svc_key, struct weft_svc_key, SVC_KEY, NO_CHECK)                                 \
	X(svc_value, struct weft_svc_value, SVC_VALUE, NO_CHECK)                           \
	X(l7_value, struct weft_l7_value, L7_VALUE, NO_CHECK)                              \
	X(lb_slot_key, struct weft_lb_slot_key, LB_SLOT_KEY, NO_CHECK)                     \
	X(lb_slot_value, struct weft_lb_slot_value, LB_SLOT_VALUE, NO_CHECK)               \
	X(backend_key, struct weft_backend_key, BACKEND_KEY, NO_CHECK)                     \
	X(backend_value, struct weft_backend_value, BACKEND_VALUE, NO_CHECK)               \
	X(sock_rev_key, struct weft_sock_rev_key, SOCK_REV_KEY, NO_CHECK)                  \
	X(sock_rev_value, struct weft_sock_rev_value, SOCK_REV_VALUE, NO_CHECK)            \
	X(ct_key, struct weft_ct_key, CT_KEY, NO_CHECK)                                    \
	X(ct_value, struct weft_ct_value, CT_VALUE, NO_CHECK)                              \
	X(metrics_key, metrics_key_t, METRICS_KEY, NO_CHECK)                               \
	X(metrics_value, struct weft_metrics_value, METRICS_VALUE, NO_CHECK)                \
	X(local_veth, struct weft_local_veth, LOCAL_VETH, NO_CHECK)                          \
	X(sock_cfg_key, struct weft_sock_cfg_key, SOCK_CFG_KEY, NO_CHECK)                  \
	X(sock_cfg, struct weft_sock_cfg, SOCK_CFG, NO_CHECK)                              \
	X(flow_cfg, struct weft_flow_cfg, FLOW_CFG, NO_CHECK)                              \
	X(flow_stats, struct weft_flow_stats, FLOW_STATS, NO_CHECK)                        \
	X(flow_event, struct weft_flow_event, FLOW_EVENT, NO_CHECK)

X_LAYOUTS(DEFINE_CODER)

_Static_assert(sizeof(metrics_key_t) == sizeof(__u32), "metrics key is one __u32");

/* Names as the BPF objects' BTF spells them; the metrics key is the bare __u32. */
#define LAYOUT_NAME(tag, T) (sizeof(#T) > 7 && __builtin_memcmp(#T, "struct ", 7) == 0 ? #T : "__u32")
#define AS_LAYOUT(tag, T, MEMBERS, check)                                                  \
	{ LAYOUT_NAME(tag, T), sizeof(T), sizeof(tag##_f) / sizeof(tag##_f[0]), tag##_f },
static const struct layout layouts[] = { X_LAYOUTS(AS_LAYOUT) };
#define NLAYOUTS (sizeof(layouts) / sizeof(layouts[0]))

/* A map without a key or value (the ring buffer) names "void": no layout. */
#define NO_LAYOUT 0xffffffffu

static __u32 layout_index(const char *name)
{
	if (name[0] == 'v' && name[1] == 'o' && name[2] == 'i' && name[3] == 'd' && name[4] == 0)
		return NO_LAYOUT;
	for (__u32 i = 0; i < NLAYOUTS; i++) {
		const char *a = layouts[i].name, *b = name;

		while (*a && *a == *b)
			a++, b++;
		if (*a == *b)
			return i;
	}
	__builtin_trap(); /* the map table names a struct with no layout */
}

/* ---- the map table, from weft_abi.h ------------------------------------- */

struct map_spec {
	const char *id, *name, *kind, *key, *value;
	__u32 max_entries;
};
#define AS_MAP(id, name, kind, key_t, value_t, max) { #id, #name, #kind, #key_t, #value_t, max },
static const struct map_spec maps[] = { WEFT_MAPS(AS_MAP) };
#define NMAPS (sizeof(maps) / sizeof(maps[0]))

/* ---- encoding ------------------------------------------------------------- */

/* Fields per entry of each struct, a compile-time constant per coder. */
#define WSUM_X(T, member, kind, min, max) +WIDTH_##kind
#define WSUM_P(T, member)
#define AS_WIDTH(tag, T, MEMBERS, check) enum { tag##_width = 0 MEMBERS(WSUM_X, WSUM_P, T) };
X_LAYOUTS(AS_WIDTH)

/*
 * The coders of each map, checked against the map table's key and value
 * types, so a map whose struct changes cannot keep a stale coder.
 */
#define MAP_CODERS(X)                                                                      \
	X(ipcache, ipcache_key, identity) X(endpoint, endpoint_key, identity)               \
	X(policy, policy_key, policy_value) X(svc, svc_key, svc_value)                      \
	X(lb_slot, lb_slot_key, lb_slot_value) X(backend, backend_key, backend_value)       \
	X(sock_rev, sock_rev_key, sock_rev_value) X(ct, ct_key, ct_value)                  \
	X(metrics, metrics_key, metrics_value) X(local_veth, endpoint_key, local_veth)      \
	X(sock_cfg, sock_cfg_key, sock_cfg) X(audit, policy_key, policy_value)              \
	X(steer, policy_key, policy_value) X(l7, svc_key, l7_value)                        \
	X(flow_cfg, metrics_key, flow_cfg) X(flow_stats, metrics_key, flow_stats)

#define AS_TYPE(tag, T, MEMBERS, check) typedef T tag##_type;
X_LAYOUTS(AS_TYPE)
#define KEY_OF(id, name, kind, key_t, value_t, max) key_t
#define VALUE_OF(id, name, kind, key_t, value_t, max) value_t
#define CHECK_CODER(id, k, v)                                                              \
	_Static_assert(sizeof(k##_type) == sizeof(WEFT_MAP_##id(KEY_OF)), #id " key coder");  \
	_Static_assert(__builtin_types_compatible_p(v##_type, WEFT_MAP_##id(VALUE_OF)),       \
		       #id " value coder");                                                \
	_Static_assert(k##_width + v##_width <= WEFT_FIELDS_PER_ENTRY_MAX, #id " fields fit");  \
	_Static_assert(sizeof(k##_type) <= WEFT_STRUCT_MAX && sizeof(v##_type) <= WEFT_STRUCT_MAX, \
		       #id " structs fit the bytes area");
MAP_CODERS(CHECK_CODER)

#define AS_ENUM(id, name, kind, key_t, value_t, max) MAP_##id,
enum { WEFT_MAPS(AS_ENUM) MAP_COUNT };

/*
 * Batch loops, instantiated per map with its coders known at compile time so
 * they inline. Encoding reads the fields area (per entry: key fields, then
 * value fields) and writes the bytes area: n keys back to back, then n values.
 */
#define DEFINE_BATCH(id, k, v)                                                             \
	static int id##_encode(__u32 parts, __u32 n)                                       \
	{                                                                                  \
		const __u32 kf = parts & 1 ? k##_width : 0, vf = parts & 2 ? v##_width : 0; \
		const __u32 ks = parts & 1 ? sizeof(k##_type) : 0;                         \
		const __u32 vs = parts & 2 ? sizeof(v##_type) : 0;                         \
		int err;                                                                   \
		for (__u32 i = 0; i < n; i++) {                                            \
			const __u32 *in = fields + i * (kf + vf);                          \
			if ((parts & 1) && (err = k##_enc(in, bytes + i * ks, i)))         \
				return err;                                                \
			if ((parts & 2) && (err = v##_enc(in + kf, bytes + n * ks + i * vs, i))) { \
				err_field += parts & 1 ? sizeof(k##_f) / sizeof(k##_f[0]) : 0; \
				return err;                                                \
			}                                                                  \
		}                                                                          \
		return 0;                                                                  \
	}                                                                                  \
	static void id##_decode(__u32 parts, __u32 n)                                      \
	{                                                                                  \
		const __u32 kf = parts & 1 ? k##_width : 0, vf = parts & 2 ? v##_width : 0; \
		const __u32 ks = parts & 1 ? sizeof(k##_type) : 0;                         \
		const __u32 vs = parts & 2 ? sizeof(v##_type) : 0;                         \
		for (__u32 i = 0; i < n; i++) {                                            \
			__u32 *out = fields + i * (kf + vf);                               \
			if (parts & 1)                                                     \
				k##_dec(bytes + i * ks, out);                              \
			if (parts & 2)                                                     \
				v##_dec(bytes + n * ks + i * vs, out + kf);                \
		}                                                                          \
	}
MAP_CODERS(DEFINE_BATCH)

/* parts: 1 = keys, 2 = values, 3 = both. Returns 0 or a WEFT_E_* code. */
static int batch_args(__u32 map, __u32 parts, __u32 n)
{
	if (map >= MAP_COUNT || parts == 0 || parts > 3)
		return WEFT_E_MAP;
	return n > WEFT_BATCH_MAX ? WEFT_E_BATCH : 0;
}

__attribute__((export_name("weft_encode_batch"))) int weft_encode_batch(__u32 map, __u32 parts, __u32 n)
{
	int err = batch_args(map, parts, n);

	if (err)
		return err;
	/* Constant `parts` per call site lets each loop specialise. */
	switch (map) {
#define ENCODE_CASE(id, k, v)                                                              \
	case MAP_##id:                                                                     \
		return parts == 3 ? id##_encode(3, n) : parts == 1 ? id##_encode(1, n) : id##_encode(2, n);
		MAP_CODERS(ENCODE_CASE)
	}
	return WEFT_E_MAP;
}

/* The inverse of weft_encode_batch; bytes in, fields out. Never fails on data. */
__attribute__((export_name("weft_decode_batch"))) int weft_decode_batch(__u32 map, __u32 parts, __u32 n)
{
	int err = batch_args(map, parts, n);

	if (err)
		return err;
	switch (map) {
#define DECODE_CASE(id, k, v)                                                              \
	case MAP_##id:                                                                     \
		id##_decode(parts, n);                                                     \
		return 0;
		MAP_CODERS(DECODE_CASE)
	}
	return WEFT_E_MAP;
}

/*
 * Flow events, as the ring buffer hands them over: n records back to back in
 * the bytes area, decoded into the fields area (flow_event_width each).
 */
#define EVENTS_MAX                                                                         \
	(WEFT_BYTES_LEN / sizeof(struct weft_flow_event) < WEFT_FIELDS_LEN / flow_event_width     \
		 ? WEFT_BYTES_LEN / sizeof(struct weft_flow_event)                          \
		 : WEFT_FIELDS_LEN / flow_event_width)

__attribute__((export_name("weft_decode_events"))) int weft_decode_events(__u32 n)
{
	if (n > EVENTS_MAX)
		return WEFT_E_BATCH;
	for (__u32 i = 0; i < n; i++)
		flow_event_dec(bytes + i * sizeof(struct weft_flow_event), fields + i * flow_event_width);
	return 0;
}

/*
 * The inverse, for events the agent makes itself (the transport's stream
 * outcomes, WEFT_HOOK_TRANSPORT): fields in, records out, ranges checked.
 */
__attribute__((export_name("weft_encode_events"))) int weft_encode_events(__u32 n)
{
	int err;

	if (n > EVENTS_MAX)
		return WEFT_E_BATCH;
	for (__u32 i = 0; i < n; i++)
		if ((err = flow_event_enc(fields + i * flow_event_width, bytes + i * sizeof(struct weft_flow_event), i)))
			return err;
	return 0;
}

/* ---- introspection: areas, errors, layouts, maps, constants -------------- */

#define EXPORT_U32(name, expr)                                                           \
	__attribute__((export_name(#name))) __u32 name(void) { return (expr); }
#define EXPORT_PTR(name, expr)                                                           \
	__attribute__((export_name(#name))) const void *name(void) { return (expr); }

EXPORT_PTR(weft_fields, fields)
EXPORT_PTR(weft_bytes, bytes)
EXPORT_U32(weft_fields_len, WEFT_FIELDS_LEN)
EXPORT_U32(weft_bytes_len, WEFT_BYTES_LEN)
EXPORT_U32(weft_batch_max, WEFT_BATCH_MAX)
EXPORT_U32(weft_events_max, EVENTS_MAX)
EXPORT_U32(weft_err_index, err_index)
EXPORT_U32(weft_err_field, err_field)
EXPORT_U32(weft_err_value, err_value)
EXPORT_U32(weft_layout_count, NLAYOUTS)
EXPORT_U32(weft_map_count, NMAPS)

__attribute__((export_name("weft_layout_name"))) const char *weft_layout_name(__u32 i) { return layouts[i].name; }
__attribute__((export_name("weft_layout_size"))) __u32 weft_layout_size(__u32 i) { return layouts[i].size; }
__attribute__((export_name("weft_layout_nfields"))) __u32 weft_layout_nfields(__u32 i) { return layouts[i].nfields; }
__attribute__((export_name("weft_field_name"))) const char *weft_field_name(__u32 i, __u32 j) { return layouts[i].fields[j].name; }
__attribute__((export_name("weft_field_offset"))) __u32 weft_field_offset(__u32 i, __u32 j) { return layouts[i].fields[j].offset; }
__attribute__((export_name("weft_field_size"))) __u32 weft_field_size(__u32 i, __u32 j) { return layouts[i].fields[j].size; }
__attribute__((export_name("weft_field_kind"))) __u32 weft_field_kind(__u32 i, __u32 j) { return layouts[i].fields[j].kind; }
__attribute__((export_name("weft_field_min"))) __u32 weft_field_min(__u32 i, __u32 j) { return layouts[i].fields[j].min; }
__attribute__((export_name("weft_field_max"))) __u32 weft_field_max(__u32 i, __u32 j) { return layouts[i].fields[j].max; }

__attribute__((export_name("weft_map_id"))) const char *weft_map_id(__u32 i) { return maps[i].id; }
__attribute__((export_name("weft_map_name"))) const char *weft_map_name(__u32 i) { return maps[i].name; }
__attribute__((export_name("weft_map_kind"))) const char *weft_map_kind(__u32 i) { return maps[i].kind; }
__attribute__((export_name("weft_map_key"))) __u32 weft_map_key(__u32 i) { return layout_index(maps[i].key); }
__attribute__((export_name("weft_map_value"))) __u32 weft_map_value(__u32 i) { return layout_index(maps[i].value); }
__attribute__((export_name("weft_map_max_entries"))) __u32 weft_map_max_entries(__u32 i) { return maps[i].max_entries; }

/* Constants JS needs, by name, so no number in weft_abi.h is typed twice. */
#define WEFT_CONSTANTS(X)                                                                 \
	X(IDENTITY_ANY) X(IDENTITY_HOST) X(IDENTITY_WORLD) X(IDENTITY_UNMANAGED)          \
	X(IDENTITY_HEALTH) X(IDENTITY_PROXY) X(IDENTITY_RESERVED_MAX) X(IDENTITY_FIRST) X(TENANT_NONE)      \
	X(DIR_INGRESS) X(DIR_EGRESS) X(HOOK_INGRESS) X(HOOK_EGRESS) X(HOOK_SOCK)          \
	X(HOOK_TRANSPORT) X(HOOK_L7) X(HOOK_COUNT) X(ACTION_ALLOW) X(ACTION_DENY) X(ACTION_DEFAULT_DENY)               \
	X(VERDICT_PASS) X(VERDICT_DROP) X(REASON_POLICY_ALLOW) X(REASON_POLICY_DENY)      \
	X(REASON_DEFAULT_DENY) X(REASON_UNSELECTED) X(REASON_CROSS_TENANT)                \
	X(REASON_UNKNOWN_ENDPOINT) X(REASON_NOT_IP) X(REASON_IPV6) X(REASON_MALFORMED)    \
	X(REASON_INVALID_ENTRY) X(REASON_LB_TRANSLATED) X(REASON_LB_NO_BACKEND)           \
	X(REASON_LB_REVERSED) X(REASON_CT_REPLY) X(REASON_AUDIT) X(REASON_MTLS_REQUIRED)  \
	X(REASON_TRANSPORT_DOWN) X(REASON_STEERED) X(REASON_TRANSPORT_CARRIED)           \
	X(REASON_TRANSPORT_REFUSED) X(REASON_L7_STEERED) X(REASON_PROXY_DOWN)            \
	X(REASON_HTTP_FORWARDED) X(REASON_HTTP_REFUSED) X(REASON_COUNT) X(POLICY_F_MTLS)  \
	X(L7_F_HTTP) X(L7_PROXY_PORT) X(MARK_PROXY)                                       \
	X(TRANSPORT_OUTBOUND_ADDR) X(TRANSPORT_OUTBOUND_PORT) X(TRANSPORT_INBOUND_PORT)   \
	X(MARK_TRANSPORT) X(MARK_TO_TRANSPORT) X(TRANSPORT_TABLE) X(TRANSPORT_RULE_PRIORITY) \
	X(PREFIX_MAX) X(PORT_MAX) X(LB_WEIGHT_MAX) X(LB_TABLE_MAX) X(LB_BACKENDS_MAX)     \
	X(METRICS_MAX) X(FLOW_RING_BYTES) X(FLOW_INTERVAL_MIN) X(FLOW_BURST_MAX) X(FLOW_F_ALLOWED)

struct constant {
	const char *name;
	__u32 value;
};
#define AS_CONSTANT(n) { #n, WEFT_##n },
static const struct constant constants[] = { WEFT_CONSTANTS(AS_CONSTANT) };

EXPORT_U32(weft_constant_count, sizeof(constants) / sizeof(constants[0]))
__attribute__((export_name("weft_constant_name"))) const char *weft_constant_name(__u32 i) { return constants[i].name; }
__attribute__((export_name("weft_constant_value"))) __u32 weft_constant_value(__u32 i) { return constants[i].value; }

__attribute__((export_name("weft_reason_verdict"))) __u32 weft_reason_verdict(__u32 r) { return WEFT_REASON_VERDICT(r); }
__attribute__((export_name("weft_metrics_index"))) __u32 weft_metrics_index(__u32 hook, __u32 reason)
{
	return WEFT_METRICS_INDEX(hook, reason);
}
