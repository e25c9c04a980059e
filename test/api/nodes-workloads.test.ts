import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, bearer, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { registeredNode, uniqueAddress } from "../support/nodes.ts";

describe.each(BACKENDS)("GET /v1/nodes/{node}/workloads on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    beforeAll(async () => {
      app = await startApi(backend);
    });
    afterAll(async () => app?.close());

    async function placeWorkload(tenant: string, token: string, name: string, node: string) {
      const identity = await app.inject({
        method: "PUT",
        url: `/v1/tenants/${tenant}/identities/${name}`,
        headers: bearer(token),
        payload: { path: `/ns/test/sa/${name}` },
      });
      expect(identity.statusCode).toBe(201);
      const workload = await app.inject({
        method: "PUT",
        url: `/v1/tenants/${tenant}/workloads/${name}`,
        headers: bearer(token),
        payload: { identity: name, node, addresses: [uniqueAddress(node)], interface: `veth-${name}` },
      });
      expect(workload.statusCode, workload.body).toBe(201);
      return workload.json() as { addresses: string[] };
    }

    it("lists every tenant's workloads on the node, with SPIFFE IDs, page by page, to that node only", async () => {
      const node = await registeredNode(app);
      const other = await registeredNode(app);
      const a = await tenantWithToken(app, ["write"]);
      const b = await tenantWithToken(app, ["write"]);
      const placed = [
        { tenant: a.tenant, ...(await placeWorkload(a.tenant, a.token, "web", node.name)), name: "web" },
        { tenant: a.tenant, ...(await placeWorkload(a.tenant, a.token, "db", node.name)), name: "db" },
        { tenant: b.tenant, ...(await placeWorkload(b.tenant, b.token, "api", node.name)), name: "api" },
      ];
      await placeWorkload(b.tenant, b.token, "elsewhere", other.name);

      const seen: { tenant: string; name: string; spiffeId: string; addresses: string[]; interface?: string }[] = [];
      let cursor: string | null = null;
      for (let i = 0; i < 5; i++) {
        const res = await app.inject({
          url: `/v1/nodes/${node.name}/workloads?limit=2${cursor ? `&cursor=${cursor}` : ""}`,
          headers: bearer(node.credential),
        });
        expect(res.statusCode, res.body).toBe(200);
        const body = res.json() as { items: typeof seen; nextCursor: string | null };
        seen.push(...body.items);
        cursor = body.nextCursor;
        if (!cursor) break;
      }
      expect(seen.map((w) => `${w.tenant}/${w.name}`).sort()).toEqual(placed.map((w) => `${w.tenant}/${w.name}`).sort());
      const web = seen.find((w) => w.tenant === a.tenant && w.name === "web")!;
      expect(web.spiffeId).toBe(`spiffe://${a.tenant}.test.weft/ns/test/sa/web`);
      expect(web.interface).toBe("veth-web");
      expect(web.addresses).toEqual(placed[0]!.addresses);

      const foreign = await app.inject({ url: `/v1/nodes/${node.name}/workloads`, headers: bearer(other.credential) });
      expect(foreign.statusCode).toBe(404);
      const tenantToken = await app.inject({ url: `/v1/nodes/${node.name}/workloads`, headers: bearer(a.token) });
      expect(tenantToken.statusCode).toBe(403);
      const asOperator = await app.inject({ url: `/v1/nodes/${other.name}/workloads`, headers: operator });
      expect(asOperator.json().items.map((w: { name: string }) => w.name)).toEqual(["elsewhere"]);
      const forged = await app.inject({ url: `/v1/nodes/${node.name}/workloads?cursor=bm9wZQ`, headers: operator });
      expect(forged.statusCode).toBe(400);
    });
  });
});
