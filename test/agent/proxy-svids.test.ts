// The agent's holder of its node proxy's SVIDs (nodeagent/src/agent/proxy-svids.ts)
// against the real API in process: one SVID per wanted tenant, for this
// node's proxy ID, its key the one the agent made; asked for once, dropped
// when no longer wanted, tried again after a failure, renewed past half-life.
import { X509Certificate, createPrivateKey } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { ProxySvids } from "../../nodeagent/src/agent/proxy-svids.ts";
import type { NodeProxySvidAnswer } from "../../nodeagent/src/agent/client.ts";
import { bearer, operator, startApi, tenantWithToken } from "../support/api.ts";
import { freshAddress, identity, mustPut } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";
import { untilHolds } from "../support/until.ts";

describe("the node proxy's SVIDs the agent holds", () => {
  let app: WeftApp;
  let node: { name: string; credential: string; podCidr: string };
  const tenants: { tenant: string; token: string; td: string }[] = [];
  let asked: string[] = [];
  let failNext = 0;
  const client = {
    issueNodeProxySvid: async (tenant: string, csr: string): Promise<NodeProxySvidAnswer> => {
      asked.push(tenant);
      if (failNext > 0) {
        failNext--;
        throw new Error("the API is down");
      }
      const res = await app.inject({ method: "POST", url: `/v1/tenants/${tenant}/node-proxy-svids`, headers: bearer(node.credential), payload: { csr } });
      if (res.statusCode !== 201) throw new Error(`${res.statusCode} ${res.body}`);
      return res.json() as NodeProxySvidAnswer;
    },
  };
  const quiet = () => {};

  beforeAll(async () => {
    app = await startApi("pglite");
    node = await registeredNode(app);
    for (let i = 0; i < 2; i++) {
      const t = await tenantWithToken(app, ["write"]);
      await identity(app, t.token, t.tenant, "web");
      await mustPut(app, t.token, t.tenant, "workloads/w", { identity: "web", node: node.name, addresses: [freshAddress(node.podCidr)] });
      tenants.push({ ...t, td: (await app.inject({ url: `/v1/tenants/${t.tenant}`, headers: operator })).json().trustDomain });
    }
  });
  afterAll(async () => app?.close());

  it("holds one SVID per wanted tenant, for this node's proxy, with the key it made; asks once; drops what is no longer wanted", async () => {
    asked = [];
    let changes = 0;
    const held = new ProxySvids({ client, onChange: () => changes++, log: quiet });
    try {
      held.want([tenants[0]!.tenant]);
      await untilHolds("the SVID", () => held.svids(), (s) => s.length === 1);
      const [svid] = held.svids();
      expect(svid).toMatchObject({ tenant: tenants[0]!.tenant, spiffeId: `spiffe://${tenants[0]!.td}/weft/node/${node.name}/proxy`, trustDomain: tenants[0]!.td });
      const leaf = new X509Certificate(svid!.chainPem);
      expect(leaf.checkPrivateKey(createPrivateKey(svid!.keyPem))).toBe(true);
      expect(svid!.chainPem.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
      expect(changes).toBe(1);
      held.want([tenants[0]!.tenant]);
      await new Promise((r) => setTimeout(r, 100));
      expect(asked).toEqual([tenants[0]!.tenant]);
      held.want([]);
      await untilHolds("the drop", () => held.svids(), (s) => s.length === 0);
      expect(changes).toBe(2);
    } finally {
      held.stop();
    }
  });

  it("says why it has none after a failure and tries again, then renews what is past half its life", async () => {
    asked = [];
    failNext = 1;
    let now = Date.now();
    const held = new ProxySvids({ client, onChange: () => {}, log: quiet, retryMs: 1_000, now: () => now });
    try {
      held.want([tenants[0]!.tenant]);
      await untilHolds("the error", () => held.error, (e) => e !== null && /the API is down/.test(e), 5_000, 10);
      await untilHolds("the retry", () => held.svids(), (s) => s.length === 1);
      expect(held.error).toBeNull();
      const first = held.svids()[0]!;
      // Past half its life: the next run (another tenant wanted) renews it too.
      now = first.notBefore + (first.notAfter - first.notBefore) / 2 + 1;
      held.want([tenants[0]!.tenant, tenants[1]!.tenant]);
      await untilHolds("both, the first renewed", () => held.svids(), (s) => s.length === 2 && s.find((x) => x.tenant === tenants[0]!.tenant)!.chainPem !== first.chainPem);
      now = Date.now();
      expect(asked.slice(0, 4)).toEqual([tenants[0]!.tenant, tenants[0]!.tenant, tenants[0]!.tenant, tenants[1]!.tenant]);
      // Fresh ones are not asked for again (the clock back to real time, past the gap between runs).
      const count = asked.length;
      await new Promise((r) => setTimeout(r, 1_500));
      expect(asked.length).toBeLessThanOrEqual(count + 2);
    } finally {
      held.stop();
    }
  });
});
