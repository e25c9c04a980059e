// SPDX-License-Identifier: Apache-2.0
// Glue for weft_codec_bg.wasm, written by hand (no wasm-bindgen: the codec is
// C). It turns plain objects into the codec's host-order "fields", lets the
// wasm lay them out as the structs in bpf/include/weft_abi.h, and back.
// The .d.ts beside this file documents the API; test/abi/codec-declarations.test.ts
// fails when the two disagree.
import { readFileSync } from "node:fs";

const wasmModule = new WebAssembly.Module(readFileSync(new URL("./weft_codec_bg.wasm", import.meta.url)));
const wasm = new WebAssembly.Instance(wasmModule, {}).exports;
const memory = wasm.memory;

const BATCH_MAX = wasm.weft_batch_max();
const KEYS = 1;
const VALUES = 2;
const BOTH = 3;

// The codec never grows its memory (no allocator), so these views stay valid.
const fieldsArea = new Uint32Array(memory.buffer, wasm.weft_fields(), wasm.weft_fields_len());
const bytesArea = new Uint8Array(memory.buffer, wasm.weft_bytes(), wasm.weft_bytes_len());

function cString(ptr) {
  const heap = new Uint8Array(memory.buffer);
  let end = ptr;
  while (heap[end] !== 0) end++;
  return new TextDecoder().decode(heap.subarray(ptr, end));
}

// ---- constants, layouts and maps, read from the wasm -------------------------

export const constants = Object.freeze(
  Object.fromEntries(
    Array.from({ length: wasm.weft_constant_count() }, (_, i) => [
      cString(wasm.weft_constant_name(i)),
      wasm.weft_constant_value(i),
    ]),
  ),
);

const FIELD_KINDS = ["pad", "u8", "u16", "u32", "be16", "be32", "u64"];

const layoutList = Array.from({ length: wasm.weft_layout_count() }, (_, i) => {
  const fields = Array.from({ length: wasm.weft_layout_nfields(i) }, (_, j) => ({
    name: cString(wasm.weft_field_name(i, j)),
    offset: wasm.weft_field_offset(i, j),
    size: wasm.weft_field_size(i, j),
    kind: FIELD_KINDS[wasm.weft_field_kind(i, j)],
    min: wasm.weft_field_min(i, j),
    max: wasm.weft_field_max(i, j),
  }));
  return Object.freeze({ name: cString(wasm.weft_layout_name(i)), size: wasm.weft_layout_size(i), fields });
});

export const layouts = Object.freeze(Object.fromEntries(layoutList.map((l) => [l.name, l])));

export const maps = Object.freeze(
  Object.fromEntries(
    Array.from({ length: wasm.weft_map_count() }, (_, i) => {
      // A ring buffer has neither (NO_LAYOUT): no struct, size 0, as the kernel reports it.
      const key = layoutList[wasm.weft_map_key(i)];
      const value = layoutList[wasm.weft_map_value(i)];
      const spec = Object.freeze({
        index: i,
        id: cString(wasm.weft_map_id(i)),
        name: cString(wasm.weft_map_name(i)),
        kind: cString(wasm.weft_map_kind(i)).toLowerCase(),
        keyStruct: key?.name ?? null,
        valueStruct: value?.name ?? null,
        keySize: key?.size ?? 0,
        valueSize: value?.size ?? 0,
        maxEntries: wasm.weft_map_max_entries(i),
      });
      return [spec.id, spec];
    }),
  ),
);

/** Kernel map names by id, e.g. mapNames.policy === "weft_policy". */
export const mapNames = Object.freeze(Object.fromEntries(Object.values(maps).map((m) => [m.id, m.name])));

// ---- scalar conversions ------------------------------------------------------

const C = constants;
export const protocols = Object.freeze({ icmp: 1, tcp: 6, udp: 17, sctp: 132 });

const reasonNames = Object.keys(C)
  .filter((n) => n.startsWith("REASON_") && n !== "REASON_COUNT")
  .map((n) => [n.slice("REASON_".length).toLowerCase().replaceAll("_", "-"), C[n]]);
/** Reason name -> code, e.g. reasons["cross-tenant"]. */
export const reasons = Object.freeze(Object.fromEntries(reasonNames));
const reasonByCode = new Map(reasonNames.map(([name, code]) => [code, name]));

const directionCode = { ingress: C.DIR_INGRESS, egress: C.DIR_EGRESS };
const directionName = new Map(Object.entries(directionCode).map(([n, c]) => [c, n]));
const actionCode = { allow: C.ACTION_ALLOW, deny: C.ACTION_DENY, "default-deny": C.ACTION_DEFAULT_DENY };
const actionName = new Map(Object.entries(actionCode).map(([n, c]) => [c, n]));
const hookCode = { ingress: C.HOOK_INGRESS, egress: C.HOOK_EGRESS, sock: C.HOOK_SOCK, transport: C.HOOK_TRANSPORT, l7: C.HOOK_L7 };
const hookName = new Map(Object.entries(hookCode).map(([n, c]) => [c, n]));

function fail(what, why) {
  throw new Error(`invalid ${what}: ${why}`);
}

// Uint32Array stores would wrap -1 or 2**32+5 silently; this refuses them.
function u32(v, what) {
  if (v >>> 0 !== v) fail(what, `${String(v)} is not an integer in 0..4294967295`);
  return v;
}

function lookup(table, v, what) {
  const code = table[v];
  if (code === undefined || !Object.hasOwn(table, v)) {
    fail(what, `${JSON.stringify(v)} is not one of ${Object.keys(table).join(", ")}`);
  }
  return code;
}

function nameOf(table, code, what) {
  const name = table.get(code);
  if (name === undefined) throw new Error(`cannot decode ${what}: unknown code ${code}`);
  return name;
}

/**
 * "198.18.0.1" -> 0xc6120001 (host order). Throws on anything else: four
 * decimal octets 0-255 without sign, space or leading zero. Scanned by hand:
 * a regex match per address was most of what encoding a flow event cost,
 * and the agent encodes one per proxied request.
 */
export function parseIPv4(text, what = "address") {
  const n = typeof text === "string" && text.length >= 7 && text.length <= 15 ? scanIPv4(text) : -1;
  if (n < 0) fail(what, `${JSON.stringify(text)} is not a dotted-quad IPv4 address`);
  return n;
}

/** The address `text` writes, or -1. */
function scanIPv4(text) {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || dots === 3) return -1;
      value = value * 256 + octet;
      octet = digits = 0;
      dots++;
    } else if (c >= 0x30 && c <= 0x39) {
      // A second digit after a 0 is a leading zero.
      if (digits > 0 && octet === 0) return -1;
      octet = octet * 10 + (c - 0x30);
      if (++digits > 3 || octet > 255) return -1;
    } else return -1;
  }
  return dots === 3 && digits > 0 ? (value * 256 + octet) >>> 0 : -1;
}

export function formatIPv4(n) {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function parsePrefix(text) {
  if (typeof text !== "string") fail("prefix", `${JSON.stringify(text)} is not a string`);
  const slash = text.indexOf("/");
  if (slash < 0) return [32, parseIPv4(text, "prefix")];
  const len = text.slice(slash + 1);
  if (!/^\d{1,2}$/.test(len)) fail("prefix", `${JSON.stringify(text)} has no prefix length 0..32`);
  return [Number(len), parseIPv4(text.slice(0, slash), "prefix")];
}

function u64(v, what) {
  if (typeof v !== "bigint" || v < 0n || v > 0xffffffffffffffffn) fail(what, `${String(v)} is not a bigint in 0..2^64-1`);
  return v;
}

const fromU64 = (lo, hi) => (BigInt(hi) << 32n) | BigInt(lo);

// ---- per-struct converters: fields in the C layout's member order -------------
// `names` lists the C members this converter fills, checked against the wasm's
// layout at load, so reordering a struct's members cannot go unnoticed.

const endpointKeyConv = {
  names: ["addr"],
  put(k, f, o) {
    f[o] = parseIPv4(k.address, "endpoint address");
  },
  get: (f, o) => ({ address: formatIPv4(f[o]) }),
};
const identityConv = {
  names: ["identity", "tenant"],
  put(v, f, o) {
    f[o] = u32(v.identity, "identity");
    f[o + 1] = u32(v.tenant, "tenant");
  },
  get: (f, o) => ({ identity: f[o], tenant: f[o + 1] }),
};

const converters = {
  ipcache: {
    key: {
      names: ["prefixlen", "addr"],
      put(k, f, o) {
        const [len, addr] = parsePrefix(k.prefix);
        f[o] = len;
        f[o + 1] = addr;
      },
      get: (f, o) => ({ prefix: `${formatIPv4(f[o + 1])}/${f[o]}` }),
    },
    value: identityConv,
  },
  endpoint: {
    key: endpointKeyConv,
    value: identityConv,
  },
  policy: {
    key: {
      names: ["local_identity", "remote_identity", "dport", "protocol", "direction"],
      put(k, f, o) {
        f[o] = u32(k.localIdentity, "localIdentity");
        f[o + 1] = u32(k.remoteIdentity, "remoteIdentity");
        f[o + 2] = u32(k.port, "port");
        f[o + 3] = u32(k.protocol, "protocol");
        const d = k.direction;
        f[o + 4] = d === "ingress" ? C.DIR_INGRESS : d === "egress" ? C.DIR_EGRESS : lookup(directionCode, d, "direction");
      },
      get: (f, o) => ({
        localIdentity: f[o],
        remoteIdentity: f[o + 1],
        port: f[o + 2],
        protocol: f[o + 3],
        direction: nameOf(directionName, f[o + 4], "direction"),
      }),
    },
    value: {
      names: ["rule_id", "action", "flags"],
      put(v, f, o) {
        f[o] = u32(v.ruleId, "ruleId");
        const a = v.action;
        f[o + 1] =
          a === "allow" ? C.ACTION_ALLOW : a === "deny" ? C.ACTION_DENY : a === "default-deny" ? C.ACTION_DEFAULT_DENY : lookup(actionCode, a, "action");
        f[o + 2] = v.mtls === true ? C.POLICY_F_MTLS : 0;
      },
      // `mtls` only when set: an entry without the flag reads back as it was written before the flag existed.
      get: (f, o) =>
        f[o + 2] & C.POLICY_F_MTLS
          ? { action: nameOf(actionName, f[o + 1], "action"), ruleId: f[o], mtls: true }
          : { action: nameOf(actionName, f[o + 1], "action"), ruleId: f[o] },
    },
  },
  svc: {
    key: {
      names: ["vip", "port", "protocol"],
      put(k, f, o) {
        f[o] = parseIPv4(k.vip, "vip");
        f[o + 1] = u32(k.port, "port");
        f[o + 2] = u32(k.protocol, "protocol");
      },
      get: (f, o) => ({ vip: formatIPv4(f[o]), port: f[o + 1], protocol: f[o + 2] }),
    },
    value: {
      names: ["table_id", "slots"],
      put(v, f, o) {
        f[o] = u32(v.tableId, "tableId");
        f[o + 1] = u32(v.slots, "slots");
      },
      get: (f, o) => ({ tableId: f[o], slots: f[o + 1] }),
    },
  },
  lb_slot: {
    key: {
      names: ["table_id", "slot"],
      put(k, f, o) {
        f[o] = u32(k.tableId, "tableId");
        f[o + 1] = u32(k.slot, "slot");
      },
      get: (f, o) => ({ tableId: f[o], slot: f[o + 1] }),
    },
    value: {
      names: ["backend_id"],
      put(v, f, o) {
        f[o] = u32(v.backendId, "backendId");
      },
      get: (f, o) => ({ backendId: f[o] }),
    },
  },
  backend: {
    key: {
      names: ["backend_id"],
      put(k, f, o) {
        f[o] = u32(k.backendId, "backendId");
      },
      get: (f, o) => ({ backendId: f[o] }),
    },
    value: {
      names: ["addr", "port"],
      put(v, f, o) {
        f[o] = parseIPv4(v.address, "backend address");
        f[o + 1] = u32(v.port, "port");
      },
      get: (f, o) => ({ address: formatIPv4(f[o]), port: f[o + 1] }),
    },
  },
  sock_rev: {
    key: {
      names: ["cookie", "addr", "port"],
      put(k, f, o) {
        const c = u64(k.cookie, "cookie");
        f[o] = Number(c & 0xffffffffn);
        f[o + 1] = Number(c >> 32n);
        f[o + 2] = parseIPv4(k.address, "backend address");
        f[o + 3] = u32(k.port, "port");
      },
      get: (f, o) => ({ cookie: fromU64(f[o], f[o + 1]), address: formatIPv4(f[o + 2]), port: f[o + 3] }),
    },
    value: {
      names: ["vip", "port"],
      put(v, f, o) {
        f[o] = parseIPv4(v.vip, "vip");
        f[o + 1] = u32(v.port, "port");
      },
      get: (f, o) => ({ vip: formatIPv4(f[o]), port: f[o + 1] }),
    },
  },
  ct: {
    key: {
      names: ["local", "remote", "local_port", "remote_port", "protocol", "direction"],
      put(k, f, o) {
        f[o] = parseIPv4(k.local, "ct local address");
        f[o + 1] = parseIPv4(k.remote, "ct remote address");
        f[o + 2] = u32(k.localPort, "localPort");
        f[o + 3] = u32(k.remotePort, "remotePort");
        f[o + 4] = u32(k.protocol, "protocol");
        f[o + 5] = lookup(directionCode, k.direction, "direction");
      },
      get: (f, o) => ({
        local: formatIPv4(f[o]),
        remote: formatIPv4(f[o + 1]),
        localPort: f[o + 2],
        remotePort: f[o + 3],
        protocol: f[o + 4],
        direction: nameOf(directionName, f[o + 5], "direction"),
      }),
    },
    value: {
      names: ["local_identity", "remote_identity"],
      put(v, f, o) {
        f[o] = u32(v.localIdentity, "localIdentity");
        f[o + 1] = u32(v.remoteIdentity, "remoteIdentity");
      },
      get: (f, o) => ({ localIdentity: f[o], remoteIdentity: f[o + 1] }),
    },
  },
  metrics: {
    key: {
      names: ["index"],
      put(k, f, o) {
        f[o] = metricsIndex(k.hook, k.reason);
      },
      get(f, o) {
        const slot = metricsSlot(f[o]);
        return { hook: slot.hook, reason: slot.reason };
      },
    },
    value: {
      names: ["packets", "bytes"],
      put(v, f, o) {
        const p = u64(v.packets, "packets");
        const b = u64(v.bytes, "bytes");
        f[o] = Number(p & 0xffffffffn);
        f[o + 1] = Number(p >> 32n);
        f[o + 2] = Number(b & 0xffffffffn);
        f[o + 3] = Number(b >> 32n);
      },
      get: (f, o) => ({ packets: fromU64(f[o], f[o + 1]), bytes: fromU64(f[o + 2], f[o + 3]) }),
    },
  },
  local_veth: {
    key: endpointKeyConv,
    value: {
      names: ["ifindex"],
      put(v, f, o) {
        f[o] = u32(v.ifindex, "ifindex");
      },
      get: (f, o) => ({ ifindex: f[o] }),
    },
  },
  sock_cfg: {
    key: {
      names: ["index"],
      put(k, f, o) {
        f[o] = u32(k.index, "sock_cfg index");
      },
      get: (f, o) => ({ index: f[o] }),
    },
    value: {
      names: ["host_netns_cookie", "lb_host_traffic"],
      put(v, f, o) {
        const c = u64(v.hostNetnsCookie, "hostNetnsCookie");
        f[o] = Number(c & 0xffffffffn);
        f[o + 1] = Number(c >> 32n);
        if (typeof v.lbHostTraffic !== "boolean") fail("lbHostTraffic", `${String(v.lbHostTraffic)} is not a boolean`);
        f[o + 2] = v.lbHostTraffic ? 1 : 0;
      },
      get: (f, o) => ({ hostNetnsCookie: fromU64(f[o], f[o + 1]), lbHostTraffic: f[o + 2] !== 0 }),
    },
  },
};

// A one-entry array's key: the bare __u32 index 0.
const indexZeroConv = (map) => ({
  names: ["index"],
  put(k, f, o) {
    if (k.index !== 0) fail(`${map} index`, `${String(k.index)} is not 0 (the map holds one entry)`);
    f[o] = 0;
  },
  get: (f, o) => ({ index: f[o] }),
});
const putU64 = (v, what, f, o) => {
  const x = u64(v, what);
  f[o] = Number(x & 0xffffffffn);
  f[o + 1] = Number(x >> 32n);
};

Object.assign(converters, {
  // Same key and value as weft_policy (weft_abi.h).
  audit: converters.policy,
  // Same key and value as weft_policy too: which connections the node's transport carries.
  steer: converters.policy,
  // A service frontend the node's L7 proxy takes: the svc key, and what the proxy reads there.
  l7: {
    key: converters.svc.key,
    value: {
      names: ["flags"],
      put(v, f, o) {
        if (v.http !== true) fail("http", `${String(v.http)} is not true: the L7 proxy reads HTTP at every frontend it takes`);
        f[o] = C.L7_F_HTTP;
      },
      get: (f, o) => ({ http: (f[o] & C.L7_F_HTTP) !== 0 }),
    },
  },
  flow_cfg: {
    key: indexZeroConv("flow_cfg"),
    value: {
      names: ["interval_ns", "burst", "flags"],
      put(v, f, o) {
        const interval = u64(v.intervalNs, "intervalNs");
        if (interval !== 0n && interval < BigInt(C.FLOW_INTERVAL_MIN)) fail("intervalNs", `${interval} is neither 0 (off) nor at least ${C.FLOW_INTERVAL_MIN}`);
        putU64(interval, "intervalNs", f, o);
        f[o + 2] = u32(v.burst, "burst");
        if (typeof v.allowed !== "boolean") fail("allowed", `${String(v.allowed)} is not a boolean`);
        f[o + 3] = v.allowed ? C.FLOW_F_ALLOWED : 0;
      },
      get: (f, o) => ({ intervalNs: fromU64(f[o], f[o + 1]), burst: f[o + 2], allowed: (f[o + 3] & C.FLOW_F_ALLOWED) !== 0 }),
    },
  },
  flow_stats: {
    key: indexZeroConv("flow_stats"),
    value: {
      names: ["emitted", "rate_limited", "ring_full", "stamp_ns", "credit_ns"],
      put(v, f, o) {
        putU64(v.emitted, "emitted", f, o);
        putU64(v.rateLimited, "rateLimited", f, o + 2);
        putU64(v.ringFull, "ringFull", f, o + 4);
        putU64(v.stampNs, "stampNs", f, o + 6);
        putU64(v.creditNs, "creditNs", f, o + 8);
      },
      get: (f, o) => ({
        emitted: fromU64(f[o], f[o + 1]),
        rateLimited: fromU64(f[o + 2], f[o + 3]),
        ringFull: fromU64(f[o + 4], f[o + 5]),
        stampNs: fromU64(f[o + 6], f[o + 7]),
        creditNs: fromU64(f[o + 8], f[o + 9]),
      }),
    },
  },
});

// Bind each converter to its layout and check member order against the wasm.
const codecs = {};
for (const spec of Object.values(maps)) {
  if (spec.kind === "ringbuf") continue; // read as events (decodeFlowEvents), not entries
  const conv = converters[spec.id];
  if (conv === undefined) throw new Error(`@weft/codec: no converter for map ${spec.id}`);
  const part = (layout, c) => {
    const members = layout.fields.filter((f) => f.kind !== "pad");
    const names = members.map((f) => f.name);
    if (names.join() !== c.names.join()) {
      throw new Error(`@weft/codec: ${layout.name} members ${names.join()} != glue ${c.names.join()}`);
    }
    return { ...c, layout, width: members.reduce((n, f) => n + (f.kind === "u64" ? 2 : 1), 0) };
  };
  codecs[spec.id] = { spec, key: part(layouts[spec.keyStruct], conv.key), value: part(layouts[spec.valueStruct], conv.value) };
}

function codecOf(map) {
  const c = Object.hasOwn(codecs, map) ? codecs[map] : undefined;
  if (c === undefined) throw new Error(`unknown map ${JSON.stringify(map)}; maps are ${Object.keys(codecs).join(", ")}`);
  return c;
}

// ---- errors from the wasm ----------------------------------------------------

const E_RANGE = -1;
const E_HOST_BITS = -2;

function wasmError(codec, parts, base, code, items) {
  const index = wasm.weft_err_index();
  const entry = base + index;
  const where = `${codec.spec.id} entry ${entry}`;
  if (code === E_RANGE) {
    let field = wasm.weft_err_field();
    let layout = parts & KEYS ? codec.key.layout : codec.value.layout;
    if (parts === BOTH && field >= layout.fields.length) {
      field -= layout.fields.length;
      layout = codec.value.layout;
    }
    const f = layout.fields[field];
    return new Error(`${where}: ${layout.name}.${f.name} = ${wasm.weft_err_value()} is out of range ${f.min}..${f.max}`);
  }
  if (code === E_HOST_BITS) {
    const item = items[index];
    const prefix = parts === KEYS ? item.prefix : item.key.prefix;
    return new Error(`${where}: prefix ${prefix} has bits set beyond its length`);
  }
  return new Error(`${where}: codec error ${code}`);
}

// ---- batch encode and decode -------------------------------------------------

function encode(map, parts, items) {
  const codec = codecOf(map);
  const ks = parts & KEYS ? codec.spec.keySize : 0;
  const vs = parts & VALUES ? codec.spec.valueSize : 0;
  const kw = parts & KEYS ? codec.key.width : 0;
  const stride = kw + (parts & VALUES ? codec.value.width : 0);
  const n = items.length;
  const keys = new Uint8Array(n * ks);
  const values = new Uint8Array(n * vs);
  const putKey = codec.key.put;
  const putValue = codec.value.put;
  for (let base = 0; base < n; base += BATCH_MAX) {
    const count = Math.min(BATCH_MAX, n - base);
    // Three plain loops rather than one with a branch per entry: this is the
    // agent's hot path and V8 keeps each monomorphic.
    if (parts === BOTH) {
      for (let i = 0, o = 0; i < count; i++, o += stride) {
        const item = items[base + i];
        putKey(item.key, fieldsArea, o);
        putValue(item.value, fieldsArea, o + kw);
      }
    } else if (parts === KEYS) {
      for (let i = 0, o = 0; i < count; i++, o += stride) putKey(items[base + i], fieldsArea, o);
    } else {
      for (let i = 0, o = 0; i < count; i++, o += stride) putValue(items[base + i], fieldsArea, o);
    }
    const rc = wasm.weft_encode_batch(codec.spec.index, parts, count);
    if (rc !== 0) throw wasmError(codec, parts, base, rc, items.slice(base, base + count));
    if (ks) keys.set(bytesArea.subarray(0, count * ks), base * ks);
    if (vs) values.set(bytesArea.subarray(count * ks, count * (ks + vs)), base * vs);
  }
  return { keys, values };
}

function decode(map, parts, keys, values) {
  const codec = codecOf(map);
  const ks = parts & KEYS ? codec.spec.keySize : 0;
  const vs = parts & VALUES ? codec.spec.valueSize : 0;
  const n = ks ? keys.length / ks : values.length / vs;
  if (!Number.isInteger(n) || (ks && vs && values.length !== n * vs)) {
    throw new Error(`cannot decode ${codec.spec.id}: ${keys.length} key bytes and ${values.length} value bytes are not whole entries of ${ks}+${vs} bytes`);
  }
  const kw = parts & KEYS ? codec.key.width : 0;
  const stride = kw + (parts & VALUES ? codec.value.width : 0);
  const out = new Array(n);
  for (let base = 0; base < n; base += BATCH_MAX) {
    const count = Math.min(BATCH_MAX, n - base);
    if (ks) bytesArea.set(keys.subarray(base * ks, (base + count) * ks), 0);
    if (vs) bytesArea.set(values.subarray(base * vs, (base + count) * vs), count * ks);
    const rc = wasm.weft_decode_batch(codec.spec.index, parts, count);
    if (rc !== 0) throw new Error(`cannot decode ${codec.spec.id}: codec error ${rc}`);
    for (let i = 0, o = 0; i < count; i++, o += stride) {
      if (parts === BOTH) out[base + i] = { key: codec.key.get(fieldsArea, o), value: codec.value.get(fieldsArea, o + kw) };
      else if (parts === KEYS) out[base + i] = codec.key.get(fieldsArea, o);
      else out[base + i] = codec.value.get(fieldsArea, o);
    }
  }
  return out;
}

const EMPTY = new Uint8Array(0);

export function encodeEntries(map, entries) {
  const { keys, values } = encode(map, BOTH, entries);
  return { keys, values, count: entries.length };
}
export const encodeKeys = (map, keys) => encode(map, KEYS, keys).keys;
export const encodeValues = (map, values) => encode(map, VALUES, values).values;
export const decodeEntries = (map, keys, values) => decode(map, BOTH, keys, values);
export const decodeKeys = (map, keys) => decode(map, KEYS, keys, EMPTY);
export const decodeValues = (map, values) => decode(map, VALUES, EMPTY, values);
export const encodeKey = (map, key) => encodeKeys(map, [key]);
export const encodeValue = (map, value) => encodeValues(map, [value]);
export function decodeKey(map, bytes) {
  return single(decodeKeys(map, bytes), map, "key");
}
export function decodeValue(map, bytes) {
  return single(decodeValues(map, bytes), map, "value");
}
function single(list, map, what) {
  if (list.length !== 1) throw new Error(`cannot decode ${map} ${what}: ${list.length} entries, expected 1`);
  return list[0];
}

// ---- metrics -------------------------------------------------------------------

export function metricsIndex(hook, reason) {
  const h = lookup(hookCode, hook, "metrics hook");
  const r = lookup(reasons, reason, "metrics reason");
  return wasm.weft_metrics_index(h, r);
}

export function metricsSlot(index) {
  u32(index, "metrics index");
  if (index >= C.METRICS_MAX) fail("metrics index", `${index} is out of range 0..${C.METRICS_MAX - 1}`);
  const code = index % C.REASON_COUNT;
  return {
    hook: nameOf(hookName, Math.floor(index / C.REASON_COUNT), "metrics hook"),
    reason: code === 0 ? "none" : nameOf(reasonByCode, code, "metrics reason"),
    verdict: wasm.weft_reason_verdict(code) === C.VERDICT_PASS ? "pass" : "drop",
  };
}

export function verdictOf(reason) {
  return wasm.weft_reason_verdict(lookup(reasons, reason, "reason")) === C.VERDICT_PASS ? "pass" : "drop";
}

// ---- flow events --------------------------------------------------------------

const EVENTS_MAX = wasm.weft_events_max();
const eventLayout = layouts["struct weft_flow_event"];
const EVENT_SIZE = eventLayout.size;
const EVENT_NAMES = ["time_ns", "cookie", "saddr", "daddr", "sport", "dport", "protocol", "hook", "reason", "src_identity", "src_tenant", "dst_identity", "dst_tenant", "rule_id", "orig_daddr", "orig_dport", "ifindex", "len"];
{
  const names = eventLayout.fields.filter((f) => f.kind !== "pad").map((f) => f.name);
  if (names.join() !== EVENT_NAMES.join()) throw new Error(`@weft/codec: struct weft_flow_event members ${names.join()} != glue ${EVENT_NAMES.join()}`);
}
const EVENT_WIDTH = eventLayout.fields.reduce((n, f) => n + (f.kind === "pad" ? 0 : f.kind === "u64" ? 2 : 1), 0);

/** Size in bytes of one ring-buffer flow event (struct weft_flow_event). */
export const flowEventSize = EVENT_SIZE;

export function decodeFlowEvents(bytes) {
  if (!(bytes instanceof Uint8Array) || bytes.length % EVENT_SIZE !== 0) {
    throw new Error(`cannot decode flow events: ${bytes?.length} bytes are not whole events of ${EVENT_SIZE} bytes`);
  }
  const n = bytes.length / EVENT_SIZE;
  const out = new Array(n);
  for (let base = 0; base < n; base += EVENTS_MAX) {
    const count = Math.min(EVENTS_MAX, n - base);
    bytesArea.set(bytes.subarray(base * EVENT_SIZE, (base + count) * EVENT_SIZE), 0);
    const rc = wasm.weft_decode_events(count);
    if (rc !== 0) throw new Error(`cannot decode flow events: codec error ${rc}`);
    for (let i = 0, o = 0; i < count; i++, o += EVENT_WIDTH) {
      const f = fieldsArea;
      const reasonCode = f[o + 10];
      const origin = f[o + 16];
      out[base + i] = {
        timeNs: fromU64(f[o], f[o + 1]),
        cookie: fromU64(f[o + 2], f[o + 3]),
        source: { address: formatIPv4(f[o + 4]), port: f[o + 6], identity: f[o + 11], tenant: f[o + 12] },
        destination: { address: formatIPv4(f[o + 5]), port: f[o + 7], identity: f[o + 13], tenant: f[o + 14] },
        protocol: f[o + 8],
        hook: nameOf(hookName, f[o + 9], "flow event hook"),
        reason: nameOf(reasonByCode, reasonCode, "flow event reason"),
        verdict: wasm.weft_reason_verdict(reasonCode) === C.VERDICT_PASS ? "pass" : "drop",
        ruleId: f[o + 15],
        originalDestination: origin === 0 ? null : { address: formatIPv4(origin), port: f[o + 17] },
        ifindex: f[o + 18],
        length: f[o + 19],
      };
    }
  }
  return out;
}

/**
 * Events as the ring would hold them, back to back: for events the agent
 * makes itself (the transport's, hook "transport"). `verdict` is not
 * written: the reason implies it.
 */
export function encodeFlowEvents(events) {
  const out = new Uint8Array(events.length * EVENT_SIZE);
  for (let base = 0; base < events.length; base += EVENTS_MAX) {
    const count = Math.min(EVENTS_MAX, events.length - base);
    for (let i = 0, o = 0; i < count; i++, o += EVENT_WIDTH) {
      const e = events[base + i];
      const f = fieldsArea;
      putU64(e.timeNs, "flow event timeNs", f, o);
      putU64(e.cookie, "flow event cookie", f, o + 2);
      f[o + 4] = parseIPv4(e.source.address, "flow event source address");
      f[o + 5] = parseIPv4(e.destination.address, "flow event destination address");
      f[o + 6] = u32(e.source.port, "flow event source port");
      f[o + 7] = u32(e.destination.port, "flow event destination port");
      f[o + 8] = u32(e.protocol, "flow event protocol");
      f[o + 9] = lookup(hookCode, e.hook, "flow event hook");
      f[o + 10] = lookup(reasons, e.reason, "flow event reason");
      f[o + 11] = u32(e.source.identity, "flow event source identity");
      f[o + 12] = u32(e.source.tenant, "flow event source tenant");
      f[o + 13] = u32(e.destination.identity, "flow event destination identity");
      f[o + 14] = u32(e.destination.tenant, "flow event destination tenant");
      f[o + 15] = u32(e.ruleId, "flow event ruleId");
      f[o + 16] = e.originalDestination ? parseIPv4(e.originalDestination.address, "flow event original destination") : 0;
      f[o + 17] = e.originalDestination ? u32(e.originalDestination.port, "flow event original port") : 0;
      f[o + 18] = u32(e.ifindex, "flow event ifindex");
      f[o + 19] = u32(e.length, "flow event length");
    }
    const rc = wasm.weft_encode_events(count);
    if (rc === E_RANGE) {
      const field = eventLayout.fields[wasm.weft_err_field()];
      throw new Error(`flow event ${base + wasm.weft_err_index()}: ${eventLayout.name}.${field?.name} = ${wasm.weft_err_value()} is out of range ${field?.min}..${field?.max}`);
    }
    if (rc !== 0) throw new Error(`cannot encode flow events: codec error ${rc}`);
    out.set(bytesArea.subarray(0, count * EVENT_SIZE), base * EVENT_SIZE);
  }
  return out;
}

/** Sums the per-CPU copies the kernel returns for one per-CPU entry. */
export function sumPerCpu(values) {
  return values.reduce((a, v) => ({ packets: a.packets + v.packets, bytes: a.bytes + v.bytes }), { packets: 0n, bytes: 0n });
}
