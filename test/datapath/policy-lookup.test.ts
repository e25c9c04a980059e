/**
 * The compiler's replay of the datapath's policy probe (api/src/compiler/
 * policy-lookup.ts, which holds the L7 proxy's callers to their egress
 * policy) agrees with the tc program's decision as test/datapath/evaluate.ts
 * replays it over codec-decoded maps, on random platforms: for every
 * workload, every same-tenant workload peer, port and protocol, both
 * directions.
 */
import fc from "fast-check";
import { describe, it } from "vitest";
import { compileNode } from "../../api/src/compiler/compile.ts";
import { policyProbe } from "../../api/src/compiler/policy-lookup.ts";
import { NODES, platformArb, PORTS } from "./arbitraries.ts";
import { createEvaluator } from "./evaluate.ts";
import { throughCodec } from "./support.ts";

describe("policyProbe", () => {
  it("passes exactly what the datapath's policy decision passes", () => {
    fc.assert(
      fc.property(platformArb, (snap) => {
        const identityOf = new Map(snap.identities.map((i) => [`${i.tenantId}/${i.name}`, i.numericId]));
        for (const node of NODES) {
          const maps = throughCodec(compileNode(snap, node).maps);
          const decide = createEvaluator(maps);
          for (const w of snap.workloads.filter((x) => x.node === node)) {
            const local = identityOf.get(`${w.tenantId}/${w.identity}`)!;
            for (const direction of ["ingress", "egress"] as const) {
              const probe = policyProbe(maps.policy, local, direction);
              for (const peer of snap.workloads.filter((x) => x.tenantId === w.tenantId && x !== w)) {
                const remote = identityOf.get(`${peer.tenantId}/${peer.identity}`)!;
                for (const port of PORTS) {
                  for (const protocol of [6, 17]) {
                    const want = decide({ local: w.addresses[0]!, remote: peer.addresses[0]!, port, protocol, direction }).verdict === "pass";
                    const got = probe(remote, port, protocol);
                    if (got !== want) throw new Error(`${node} ${w.name} ${direction} ${peer.name}:${port}/${protocol}: probe ${got}, datapath ${want}`);
                  }
                }
              }
            }
          }
        }
      }),
      { numRuns: 150 },
    );
  });
});
