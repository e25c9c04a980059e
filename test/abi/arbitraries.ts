/** fast-check generators for every map's keys and values, in normalised form. */
import fc from "fast-check";
import { formatIPv4, reasons, type Entry, type MapId, type MapTypes, type Reason } from "@weft/codec";

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const nonZeroU32 = fc.integer({ min: 1, max: 0xffffffff });
const port = fc.integer({ min: 0, max: 65535 });
const address = u32.map(formatIPv4);
const u64 = fc.bigInt({ min: 0n, max: 0xffffffffffffffffn });

const prefix = fc.tuple(fc.integer({ min: 0, max: 32 }), u32).map(([len, addr]) => {
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return `${formatIPv4((addr & mask) >>> 0)}/${len}`;
});
const identity = fc.record({ identity: nonZeroU32, tenant: u32 });
const reasonName = fc.constantFrom(...(Object.keys(reasons) as Reason[]));
const policyKey = fc.record({
  localIdentity: nonZeroU32,
  remoteIdentity: u32,
  port,
  protocol: fc.integer({ min: 0, max: 255 }),
  direction: fc.constantFrom("ingress" as const, "egress" as const),
});
const policyValue = fc.record(
  { action: fc.constantFrom("allow" as const, "deny" as const, "default-deny" as const), ruleId: u32, mtls: fc.constant(true as const) },
  { requiredKeys: ["action", "ruleId"] },
);

export const arbitraries: { [M in MapId]: { key: fc.Arbitrary<MapTypes[M]["key"]>; value: fc.Arbitrary<MapTypes[M]["value"]> } } = {
  ipcache: { key: fc.record({ prefix }), value: identity },
  endpoint: { key: fc.record({ address }), value: identity },
  policy: { key: policyKey, value: policyValue },
  steer: { key: policyKey, value: policyValue },
  l7: { key: fc.record({ vip: address, port: fc.integer({ min: 1, max: 65535 }), protocol: fc.constant(6) }), value: fc.constant({ http: true as const }) },
  svc: {
    key: fc.record({ vip: address, port: fc.integer({ min: 1, max: 65535 }), protocol: fc.constantFrom(6, 17) }),
    value: fc.record({ tableId: u32, slots: fc.integer({ min: 0, max: 16384 }) }),
  },
  lb_slot: {
    key: fc.record({ tableId: u32, slot: fc.integer({ min: 0, max: 16383 }) }),
    value: fc.record({ backendId: nonZeroU32 }),
  },
  backend: {
    key: fc.record({ backendId: nonZeroU32 }),
    value: fc.record({ address, port: fc.integer({ min: 1, max: 65535 }) }),
  },
  sock_rev: {
    key: fc.record({ cookie: u64, address, port }),
    value: fc.record({ vip: address, port }),
  },
  ct: {
    key: fc.record({
      local: address,
      remote: address,
      localPort: port,
      remotePort: port,
      protocol: fc.integer({ min: 0, max: 255 }),
      direction: fc.constantFrom("ingress" as const, "egress" as const),
    }),
    value: fc.record({ localIdentity: u32, remoteIdentity: u32 }),
  },
  metrics: {
    key: fc.record({ hook: fc.constantFrom("ingress" as const, "egress" as const, "sock" as const, "transport" as const), reason: reasonName }),
    value: fc.record({ packets: u64, bytes: u64 }),
  },
  local_veth: { key: fc.record({ address }), value: fc.record({ ifindex: nonZeroU32 }) },
  sock_cfg: { key: fc.constant({ index: 0 as const }), value: fc.record({ hostNetnsCookie: u64, lbHostTraffic: fc.boolean() }) },
  audit: { key: policyKey, value: policyValue },
  flow_cfg: {
    key: fc.constant({ index: 0 as const }),
    value: fc.record({
      intervalNs: fc.oneof(fc.constant(0n), fc.bigInt({ min: 1000n, max: 0xffffffffffffffffn })),
      burst: fc.integer({ min: 0, max: 100_000 }),
      allowed: fc.boolean(),
    }),
  },
  flow_stats: { key: fc.constant({ index: 0 as const }), value: fc.record({ emitted: u64, rateLimited: u64, ringFull: u64, stampNs: u64, creditNs: u64 }) },
};

export function entryArb<M extends MapId>(map: M): fc.Arbitrary<Entry<M>> {
  const a = arbitraries[map];
  return fc.record({ key: a.key, value: a.value }) as fc.Arbitrary<Entry<M>>;
}
