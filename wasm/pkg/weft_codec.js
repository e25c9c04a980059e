// SPDX-License-Identifier: Apache-2.0
// Glue for weft_codec_bg.wasm, written by hand (no wasm-bindgen: the codec is
// C). It turns plain objects into the codec's host-order "fields", lets the
// wasm lay them out as the structs in bpf/include/weft_abi.h, and back.
// The .d.ts beside this file documents the API.
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
      const key = layoutList[wasm.weft_map_key(i)];
      const value = layoutList[wasm.weft_map_value(i)];
      const spec = Object.freeze({
        index: i,
        id: cString(wasm.weft_map_id(i)),
        name: cString(wasm.weft_map_name(i)),
        kind: cString(wasm.weft_map_kind(i)).toLowerCase(),
        keyStruct: key.name,
        valueStruct: value.name,
        keySize: key.size,
        valueSize: value.size,
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
const hookCode = { ingress: C.HOOK_INGRESS, egress: C.HOOK_EGRESS, sock: C.HOOK_SOCK };
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

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** "198.18.0.1" -> 0xc6120001 (host order). Throws on anything else. */
export function parseIPv4(text, what = "address") {
  const m = typeof text === "string" ? IPV4.exec(text) : null;
  if (m === null) fail(what, `${JSON.stringify(text)} is not a dotted-quad IPv4 address`);
  return ((+m[1] << 24) | (+m[2] << 16) | (+m[3] << 8) | +m[4]) >>> 0;
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
      names: ["rule_id", "action"],
      put(v, f, o) {
        f[o] = u32(v.ruleId, "ruleId");
        const a = v.action;
        f[o + 1] =
          a === "allow" ? C.ACTION_ALLOW : a === "deny" ? C.ACTION_DENY : a === "default-deny" ? C.ACTION_DEFAULT_DENY : lookup(actionCode, a, "action");
      },
      get: (f, o) => ({ action: nameOf(actionName, f[o + 1], "action"), ruleId: f[o] }),
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

// Bind each converter to its layout and check member order against the wasm.
const codecs = {};
for (const spec of Object.values(maps)) {
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

/** Sums the per-CPU copies the kernel returns for one per-CPU entry. */
export function sumPerCpu(values) {
  return values.reduce((a, v) => ({ packets: a.packets + v.packets, bytes: a.bytes + v.bytes }), { packets: 0n, bytes: 0n });
}

// ---- weighted lookup table -------------------------------------------------------

export const LB_TABLE_DEFAULT = 1024;

export function buildLbTable(backends, slots = LB_TABLE_DEFAULT) {
  const n = backends.length;
  if (n === 0 || n > C.LB_BACKENDS_MAX) fail("backends", `${n} backends; a table holds 1..${C.LB_BACKENDS_MAX}`);
  if (!Number.isInteger(slots) || slots < 1 || slots > C.LB_TABLE_MAX) {
    fail("table size", `${String(slots)} slots; allowed 1..${C.LB_TABLE_MAX}`);
  }
  const seen = new Set();
  backends.forEach((b, i) => {
    u32(b.backendId, `backends[${i}].backendId`);
    if (b.backendId === 0) fail(`backends[${i}].backendId`, "0 is not a backend id");
    if (seen.has(b.backendId)) fail(`backends[${i}].backendId`, `${b.backendId} appears twice`);
    seen.add(b.backendId);
    u32(b.weight, `backends[${i}].weight`);
    fieldsArea[i] = b.weight;
  });
  const rc = wasm.weft_lb_build(n, slots);
  if (rc === E_RANGE) {
    const i = wasm.weft_err_index();
    fail(`backends[${i}].weight`, `${wasm.weft_err_value()} is out of range 0..${C.LB_WEIGHT_MAX}`);
  }
  if (rc < 0) throw new Error(`cannot build lookup table: codec error ${rc}`);
  const table = new Uint32Array(rc);
  for (let s = 0; s < rc; s++) table[s] = backends[fieldsArea[n + s]].backendId;
  return table;
}

export function lbSlotEntries(tableId, table) {
  return Array.from(table, (backendId, slot) => ({ key: { tableId, slot }, value: { backendId } }));
}

// ---- policy normalisation ----------------------------------------------------------

// Deny beats allow whatever the specificity, but the datapath takes the most
// specific hit. This rewrite makes the two agree: for every allow A and deny D
// that a packet could both match, the entry at their meet (fieldwise the more
// specific of each) is a deny. The meet is at least as specific as A in every
// field, so the datapath's lexicographic probe reaches it no later than A; a
// packet whose most specific hit were an allow A while some deny D matched it
// would then have hit meet(A, D) first, a contradiction.
const ACTION_RANK = { deny: 3, allow: 2, "default-deny": 1 };

function groupKey(k) {
  return `${k.localIdentity}/${k.direction}`;
}
function entryKey(k) {
  return `${k.localIdentity}/${k.direction}/${k.remoteIdentity}/${k.port}/${k.protocol}`;
}

export function normalizePolicy(entries) {
  // Validate every entry exactly as encoding would, so bad input fails here.
  encodeEntries("policy", entries);
  const byKey = new Map();
  for (const e of entries) {
    const { key, value } = e;
    if (value.action === "default-deny" && (key.remoteIdentity !== 0 || key.port !== 0 || key.protocol !== 0)) {
      fail("policy entry", `default-deny belongs at (any peer, any port, any protocol), not ${entryKey(key)}`);
    }
    const id = entryKey(key);
    const had = byKey.get(id);
    const rank = ACTION_RANK[value.action];
    if (had === undefined || rank > ACTION_RANK[had.value.action] || (rank === ACTION_RANK[had.value.action] && value.ruleId < had.value.ruleId)) {
      byKey.set(id, { key: { ...key }, value: { ...value } });
    }
  }
  // A selected direction always has an entry at (any, any, any): the
  // datapath probes that key to tell an unselected direction at once.
  for (const e of [...byKey.values()]) {
    const selection = { ...e.key, remoteIdentity: 0, port: 0, protocol: 0 };
    const id = entryKey(selection);
    if (!byKey.has(id)) byKey.set(id, { key: selection, value: { action: "default-deny", ruleId: 0 } });
  }
  const groups = new Map();
  for (const e of byKey.values()) {
    const g = groupKey(e.key);
    let list = groups.get(g);
    if (list === undefined) groups.set(g, (list = { allows: [], denies: [] }));
    if (e.value.action === "allow") list.allows.push(e);
    else if (e.value.action === "deny") list.denies.push(e);
  }
  const meet = (a, b) => (a === 0 ? b : b === 0 || a === b ? a : null);
  const covers = (d, k) =>
    (d.remoteIdentity === 0 || d.remoteIdentity === k.remoteIdentity) &&
    (d.port === 0 || d.port === k.port) &&
    (d.protocol === 0 || d.protocol === k.protocol);
  // The datapath's probe level: lower is more specific.
  const level = (k) => (k.remoteIdentity === 0 ? 4 : 0) + (k.port === 0 ? 2 : 0) + (k.protocol === 0 ? 1 : 0);
  for (const { allows, denies } of groups.values()) {
    // Close the denies under "meet with an original allow": the least such
    // set is unique, so the result does not depend on input order and
    // normalising twice changes nothing.
    const derived = [];
    const queue = [...denies];
    while (queue.length > 0) {
      const d = queue.pop();
      for (const a of allows) {
        const remote = meet(a.key.remoteIdentity, d.key.remoteIdentity);
        const port = meet(a.key.port, d.key.port);
        const protocol = meet(a.key.protocol, d.key.protocol);
        if (remote === null || port === null || protocol === null) continue;
        const key = { ...a.key, remoteIdentity: remote, port, protocol };
        const id = entryKey(key);
        const had = byKey.get(id);
        if (had !== undefined && had.value.action === "deny") continue;
        const added = { key, value: { action: "deny", ruleId: d.value.ruleId } };
        byKey.set(id, added);
        derived.push(added);
        queue.push(added);
      }
    }
    // A derived deny names the most specific written deny that covers it
    // (ties: the lower rule id), whatever order the closure ran in.
    for (const e of derived) {
      let best;
      for (const d of denies) {
        if (!covers(d.key, e.key)) continue;
        if (best === undefined || level(d.key) < level(best.key) || (level(d.key) === level(best.key) && d.value.ruleId < best.value.ruleId)) best = d;
      }
      e.value.ruleId = best.value.ruleId;
    }
  }
  const order = (a, b) =>
    a.key.localIdentity - b.key.localIdentity ||
    directionCode[a.key.direction] - directionCode[b.key.direction] ||
    a.key.remoteIdentity - b.key.remoteIdentity ||
    a.key.port - b.key.port ||
    a.key.protocol - b.key.protocol;
  return [...byKey.values()].sort(order);
}

/**
 * The datapath's decision for one flow against a set of written entries,
 * probe for probe: the reference the kernel tests and the compiler's
 * previews use. Returns the reason name.
 */
export function lookupPolicy(entries, flow) {
  const table = new Map(entries.map((e) => [entryKey(e.key), e.value]));
  const probe = (remoteIdentity, port, protocol) =>
    table.get(entryKey({ localIdentity: flow.localIdentity, direction: flow.direction, remoteIdentity, port, protocol }));
  const reason = (hit) => (hit.action === "allow" ? "policy-allow" : hit.action === "deny" ? "policy-deny" : "default-deny");
  const exact = probe(flow.remoteIdentity, flow.port, flow.protocol);
  if (exact !== undefined) return reason(exact);
  const selection = probe(0, 0, 0);
  if (selection === undefined) return "unselected";
  for (let level = 1; level < 7; level++) {
    const anyPeer = level & 4, anyPort = level & 2, anyProto = level & 1;
    if ((anyPort && flow.port === 0) || (anyProto && flow.protocol === 0)) continue;
    const hit = probe(anyPeer ? 0 : flow.remoteIdentity, anyPort ? 0 : flow.port, anyProto ? 0 : flow.protocol);
    if (hit !== undefined) return reason(hit);
  }
  return reason(selection);
}
