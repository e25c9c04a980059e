// Which pod CIDR block a registering node gets (mesh/nodes.ts freePodCidrBlock):
// the lowest one no node holds and no workload has an address in, in a pool
// of four /24 blocks; a full pool is refused with a problem, not a 500.
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { nodes } from "../../api/src/db/schema.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { identity, mustPut } from "../support/mesh.ts";
import { joinToken, registeredNode } from "../support/nodes.ts";

const POOL = "198.18.0.0/22";

describe.each(BACKENDS)("pod CIDR blocks on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    const created: string[] = [];
    beforeAll(async () => {
      app = await startApi(backend, { podCidr: POOL, podCidrNodePrefix: 24 });
    });
    afterAll(async () => {
      // A shared Postgres keeps nodes across suites: these hold blocks of this suite's pool only, but go anyway.
      for (const name of created) await app?.inject({ method: "DELETE", url: `/v1/nodes/${name}`, headers: operator });
      await app?.close();
    });

    const register = async () => {
      const node = await registeredNode(app);
      created.push(node.name);
      return node;
    };

    it("hands out the lowest free block, a deleted node's again, and skips one a workload still has an address in", async () => {
      const [a, b, c] = [await register(), await register(), await register()];
      expect([a.podCidr, b.podCidr, c.podCidr]).toEqual(["198.18.0.0/24", "198.18.1.0/24", "198.18.2.0/24"]);

      expect((await app.inject({ method: "DELETE", url: `/v1/nodes/${b.name}`, headers: operator })).statusCode).toBe(204);
      expect((await register()).podCidr).toBe("198.18.1.0/24");

      // A workload on c, then c loses its block (as a node registered before pod CIDRs had none):
      // the block is held by no node, but an address in it is in use.
      const t = await tenantWithToken(app, ["write"]);
      await identity(app, t.token, t.tenant, "web");
      await mustPut(app, t.token, t.tenant, "workloads/w", { identity: "web", node: c.name, addresses: ["198.18.2.10"] });
      await app.weft.db.update(nodes).set({ podCidr: null }).where(eq(nodes.name, c.name));
      expect((await register()).podCidr).toBe("198.18.3.0/24");

      // Every block is taken now: the next registration is refused, and its join token is not spent.
      const { token } = await joinToken(app);
      const full = await app.inject({ method: "POST", url: "/v1/nodes/register", payload: { joinToken: token, name: `full-${Date.now().toString(36)}`, zone: "z" } });
      expect(expectProblem(full, 503).detail).toMatch(/no free \/24 block left/);
      const retried = await app.inject({ method: "POST", url: "/v1/nodes/register", payload: { joinToken: token, name: `full-${Date.now().toString(36)}`, zone: "z" } });
      expect(retried.statusCode).toBe(503);
      expect((await app.inject({ url: `/v1/tenants/${t.tenant}/workloads/w`, headers: bearer(t.token) })).statusCode).toBe(200);
    });
  });
});
