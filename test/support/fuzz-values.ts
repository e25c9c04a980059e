// Arbitraries for the schema-driven fuzz (test/security/fuzz.test.ts): values
// a route's JSON Schema accepts ("valid-ish", so requests get past validation
// and reach handlers and the database), and hostile ones of every kind.
// Everything here is derived from a route's schema; a few hints by property
// name only make valid values likelier to mean something (a real CSR, an
// existing node), they never decide which routes are fuzzed.
import fc from "fast-check";

export type Schema = Record<string, unknown> & {
  type?: string | string[];
  properties?: Record<string, Schema>;
  patternProperties?: Record<string, Schema>;
  propertyNames?: Schema;
  required?: string[];
  items?: Schema;
  anyOf?: Schema[];
  oneOf?: Schema[];
  enum?: unknown[];
  format?: string;
  pattern?: string;
};

/** What exists at fuzz time, so valid-ish values can name it. */
export interface FuzzContext {
  /** Names that exist somewhere (tenants, nodes, identities, workloads, services, policies). */
  labels: string[];
  nodes: string[];
  identities: string[];
  workloads: string[];
  csr: string;
  joinTokens: string[];
  uuids: string[];
  /** Pod CIDR blocks of the registered nodes (workload addresses must lie in their node's block). */
  podCidrs: string[];
}

const lower = "abcdefghijklmnopqrstuvwxyz0123456789";

export const dnsLabel = (): fc.Arbitrary<string> =>
  fc
    .tuple(fc.constantFrom(...lower), fc.string({ unit: fc.constantFrom(...lower, "-"), maxLength: 12 }), fc.constantFrom(...lower))
    .map(([a, mid, b]) => (mid === "" ? a : `${a}${mid}${b}`));

const octet = fc.integer({ min: 0, max: 255 });
export const ipv4 = (first?: number): fc.Arbitrary<string> =>
  fc.tuple(first === undefined ? octet : fc.constant(first), octet, octet, fc.integer({ min: 1, max: 254 })).map((o) => o.join("."));

/** Strings chosen to break things: control and format characters, surrogates, traversal, injection, huge sizes. */
export const HOSTILE_STRINGS: readonly string[] = [
  "",
  " ",
  "\u0000",
  "a\u0000b",
  "\ud800",
  "\udfff",
  "a\ud800b",
  "\udc00\ud800",
  "\u202eevil\u202c",
  "\u200b",
  "a\u200bb",
  "\ufeff",
  "\u2028\u2029",
  "\u{1d54f}\u{1f4a9}",
  "e\u0301",
  "\u0130\u0131ſK",
  "\u00ff\u00fe",
  "\r\nx-injected: 1",
  "\t",
  "../../../../etc/passwd",
  "..\\..\\windows",
  "..",
  ".",
  "%2e%2e%2f",
  "%00",
  "%ff",
  "${jndi:ldap://127.0.0.1/x}",
  "'; DROP TABLE tenants;--",
  "\\",
  '"',
  "<script>alert(1)</script>",
  "__proto__",
  "constructor",
  "toString",
  "1e400",
  "-0",
  "NaN",
  "Infinity",
  "0x10",
  "9".repeat(400),
  "A".repeat(64),
  "a".repeat(254),
  "x".repeat(513),
  "x".repeat(2049),
  "x".repeat(16_385),
  "x".repeat(70_000),
];

export const HOSTILE_NUMBERS: readonly number[] = [
  0,
  -0,
  -1,
  0.5,
  1.5,
  59,
  61,
  65_535,
  65_536,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  2 ** 53 + 2,
  -(2 ** 63),
  1e21,
  1e308,
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  -Number.MAX_VALUE,
];

/** Number literals JSON.stringify cannot produce: inserted as raw text. */
export const RAW_NUMBER_LITERALS: readonly string[] = [
  "1e400",
  "-1e400",
  "1E-400",
  "123456789012345678901234567890",
  "-0.0",
  "1.0",
  "0.0000000000000000000000000001",
  "9".repeat(400),
];

/** A value nested `depth` times: arrays or objects. */
export const nested = (depth: number, kind: "array" | "object", leaf: unknown = 1): unknown => {
  let v: unknown = leaf;
  for (let i = 0; i < depth; i++) v = kind === "array" ? [v] : { a: v };
  return v;
};

export const hostileString = (): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...HOSTILE_STRINGS) },
    { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
    { weight: 1, arbitrary: fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 20 }) },
    { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 20 }) },
  );

/** Any JSON value, hostile: wrong types, extreme numbers, deep nesting, odd keys. */
export const hostileValue = (): fc.Arbitrary<unknown> =>
  fc.oneof(
    { weight: 4, arbitrary: hostileString() },
    { weight: 3, arbitrary: fc.constantFrom<unknown>(...HOSTILE_NUMBERS) },
    { weight: 2, arbitrary: fc.constantFrom<unknown>(null, true, false, [], {}, [null], [""], { "": "" }, { __proto__: null }) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 3000 }).map((d) => nested(d, "array")) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 3000 }).map((d) => nested(d, "object")) },
    { weight: 1, arbitrary: fc.integer({ min: 65, max: 5000 }).map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]))) },
    { weight: 1, arbitrary: fc.integer({ min: 17, max: 5000 }).map((n) => Array.from({ length: n }, (_, i) => `a${i}`)) },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  );

const typeOf = (s: Schema): string | undefined => (Array.isArray(s.type) ? (s.type[0] as string) : s.type);

/** Valid-ish values of a JSON Schema (the subset TypeBox emits), with hints by property name. */
export function validArb(schema: Schema, ctx: FuzzContext, prop = "", depth = 0): fc.Arbitrary<unknown> {
  if ("const" in schema) return fc.constant(schema.const);
  if (Array.isArray(schema.enum)) return fc.constantFrom(...schema.enum);
  const branches = schema.anyOf ?? schema.oneOf;
  if (branches) return fc.oneof(...branches.map((b) => validArb(b, ctx, prop, depth + 1)));
  const hint = HINTS[prop]?.(ctx);
  if (hint) return hint;
  switch (typeOf(schema)) {
    case "object": {
      const props = schema.properties ?? {};
      const required = new Set(schema.required ?? []);
      const model: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [k, v] of Object.entries(props)) model[k] = validArb(v, ctx, k, depth + 1);
      const base = fc.record(model, { requiredKeys: [...required].filter((k) => k in model) });
      const pattern = Object.values(schema.patternProperties ?? {})[0];
      if (!pattern || depth > 4) return base;
      const keyMax = Number(schema.propertyNames?.maxLength ?? 63);
      const maxKeys = Math.min(Number(schema.maxProperties ?? 8), 4);
      const key = fc.oneof(dnsLabel(), fc.string({ maxLength: Math.min(keyMax, 20) }), fc.constant("k".repeat(keyMax)));
      return fc
        .tuple(base, fc.dictionary(key, validArb(pattern, ctx, "", depth + 1), { maxKeys }))
        .map(([b, extra]) => ({ ...extra, ...b }));
    }
    case "array": {
      const min = Number(schema.minItems ?? 0);
      const max = Math.min(Number(schema.maxItems ?? min + 3), min + 3);
      const items = validArb(schema.items ?? {}, ctx, prop, depth + 1);
      return schema.uniqueItems
        ? fc.uniqueArray(items, { minLength: min, maxLength: max, selector: (v) => JSON.stringify(v) })
        : fc.array(items, { minLength: min, maxLength: max });
    }
    case "integer": {
      const min = Number(schema.minimum ?? -(2 ** 31));
      const max = Number(schema.maximum ?? 2 ** 31);
      return fc.oneof(fc.constantFrom(min, max), fc.integer({ min, max }));
    }
    case "number": {
      const min = Number(schema.minimum ?? -1e9);
      const max = Number(schema.maximum ?? 1e9);
      return fc.oneof(fc.constantFrom(min, max), fc.double({ min, max, noNaN: true, noDefaultInfinity: true }));
    }
    case "boolean":
      return fc.boolean();
    case "string":
      return validString(schema, ctx);
    case "null":
      return fc.constant(null);
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

function validString(schema: Schema, ctx: FuzzContext): fc.Arbitrary<string> {
  const min = Number(schema.minLength ?? 0);
  const max = Number(schema.maxLength ?? 64);
  switch (schema.format) {
    case "dns-label":
      return fc.oneof(fc.constantFrom(...ctx.labels), dnsLabel());
    case "uuid":
      return fc.oneof(fc.constantFrom(...ctx.uuids), fc.uuid());
    case "ipv4":
      return ipv4(10);
    case "ipv4-prefix":
      return fc.tuple(ipv4(), fc.integer({ min: 0, max: 32 })).map(([a, l]) => `${l === 0 ? "0.0.0.0" : a}/${l}`);
    case "date-time":
      return fc.date({ noInvalidDate: true }).map((d) => d.toISOString());
  }
  if (typeof schema.pattern === "string") {
    return fc.stringMatching(new RegExp(schema.pattern)).filter((s) => s.length >= min && s.length <= max);
  }
  return fc.oneof(
    fc.string({ minLength: min, maxLength: Math.max(min, Math.min(max, 24)) }),
    fc.constant("x".repeat(Math.max(min, Math.min(max, 100_000)))),
  );
}

/** Values more likely to be meaningful than schema-random ones, by property name. */
const HINTS: Record<string, (ctx: FuzzContext) => fc.Arbitrary<unknown> | undefined> = {
  path: () => fc.tuple(dnsLabel(), dnsLabel()).map(([a, b]) => `/ns/${a}/sa/${b}`),
  csr: (ctx) => fc.oneof({ weight: 3, arbitrary: fc.constant(ctx.csr) }, { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 40 }) }),
  joinToken: (ctx) => fc.constantFrom(...ctx.joinTokens, "weft_join_bogus"),
  identity: (ctx) => fc.constantFrom(...ctx.identities),
  node: (ctx) => fc.constantFrom(...ctx.nodes),
  workload: (ctx) => fc.constantFrom(...ctx.workloads),
  vip: () => fc.oneof(fc.tuple(fc.integer({ min: 128, max: 255 }), fc.integer({ min: 1, max: 254 })).map(([c, d]) => `198.19.${c}.${d}`), ipv4(172)),
  addresses: (ctx) =>
    ctx.podCidrs.length === 0
      ? undefined
      : fc.uniqueArray(fc.tuple(fc.constantFrom(...ctx.podCidrs), fc.integer({ min: 1, max: 2 ** 16 })).map(([c, n]) => addressInBlock(c, n)), { minLength: 1, maxLength: 2 }),
  zone: () => fc.constantFrom("zone-a", "zone-b"),
  audience: () => fc.array(fc.constantFrom("https://a.example", "spiffe://x/y", "aud"), { minLength: 1, maxLength: 3 }),
};

/** All (path, sub-schema) pairs of an object schema, for mutating one field deep inside. */
export function fieldPaths(schema: Schema, at: string[] = [], depth = 0): string[][] {
  if (depth > 4) return [];
  const out: string[][] = [];
  for (const [k, v] of Object.entries(schema.properties ?? {})) {
    out.push([...at, k]);
    if (typeOf(v) === "object") out.push(...fieldPaths(v, [...at, k], depth + 1));
  }
  return out;
}

/** A copy of `value` with the field at `path` set (objects created on the way). */
export function setPath(value: unknown, path: string[], to: unknown): unknown {
  const root = value !== null && typeof value === "object" && !Array.isArray(value) ? { ...(value as object) } : {};
  let cur: Record<string, unknown> = root;
  for (let i = 0; i < path.length - 1; i++) {
    const next = cur[path[i]!];
    const copy = next !== null && typeof next === "object" && !Array.isArray(next) ? { ...(next as object) } : {};
    cur[path[i]!] = copy;
    cur = copy as Record<string, unknown>;
  }
  Object.defineProperty(cur, path[path.length - 1]!, { value: to, enumerable: true, writable: true, configurable: true });
  return root;
}

/** Percent-encodes text as a URL component; lone surrogates become their (invalid) 3-byte sequences. */
export function encodeComponent(text: string): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const isHigh = c >= 0xd800 && c <= 0xdbff;
    const next = text.charCodeAt(i + 1);
    if (isHigh && next >= 0xdc00 && next <= 0xdfff) {
      out += encodeURIComponent(text.slice(i, i + 2));
      i++;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      out += `%${(0xe0 | (c >> 12)).toString(16).toUpperCase()}%${(0x80 | ((c >> 6) & 0x3f)).toString(16).toUpperCase()}%${(0x80 | (c & 0x3f)).toString(16).toUpperCase()}`;
    } else {
      out += encodeURIComponent(text[i]!);
    }
  }
  return out;
}

/** Path segments as sent (already encoded, or deliberately not): traversal, bad escapes, raw bytes. */
export const RAW_SEGMENTS: readonly string[] = [
  "..",
  ".",
  "%2e%2e",
  "%2E%2E",
  ".%2e",
  "..%2f..%2f..%2fetc%2fpasswd",
  "%2e%2e%2f%2e%2e%2f",
  "..%5c..%5c",
  "%2f",
  "a%2fb",
  "%00",
  "a%00",
  "%ff",
  "%ED%A0%80",
  "%C0%AE%C0%AE",
  "%E2%80%AE",
  "%E2%80%8B",
  "%EF%BB%BF",
  "%zz",
  "%",
  "a%2",
  "%u002e",
  "%252e%252e",
  "~",
  "*",
  ";x=1",
  "a;b",
  "A",
  "UPPER",
  "-a",
  "a-",
  "a".repeat(64),
  "a".repeat(4000),
  "a b",
  "a+b",
  "a\u0000b",
  "\u00e9",
  "..\\..",
];

export const hostileSegment = (): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...RAW_SEGMENTS) },
    { weight: 2, arbitrary: hostileString().map((s) => encodeComponent(s.slice(0, 5000))) },
  );

/** The n-th host address of a block (wrapping inside it). */
export function addressInBlock(cidr: string, n: number): string {
  const [base, len] = cidr.split("/") as [string, string];
  const size = 2 ** (32 - Number(len));
  const start = base.split(".").reduce((a, o) => a * 256 + Number(o), 0);
  // Past the network address and the node's L7 proxy address (the first), before the broadcast address.
  const a = start + 2 + (n % Math.max(1, size - 3));
  return [24, 16, 8, 0].map((s) => Math.floor(a / 2 ** s) % 256).join(".");
}
