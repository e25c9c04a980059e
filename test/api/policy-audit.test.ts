/**
 * Policy audit mode through the API: `mode: audit` on a policy or a rule
 * stages it (the node's datapath carries it in the audit map only), shown on
 * read, switched to enforce with one write.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { freshAddress, identity, mustPut, putResource } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";

describe.each(BACKENDS)("policy audit mode on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let a: { tenant: string; token: string };
    let node: { name: string; credential: string; podCidr: string };
    let db: number;
    beforeAll(async () => {
      app = await startApi(backend);
      a = await tenantWithToken(app, ["write"]);
      node = await registeredNode(app, { zone: "zone-a" });
      await identity(app, a.token, a.tenant, "web", { app: "web" });
      db = (await identity(app, a.token, a.tenant, "db", { app: "db" })).securityIdentity as number;
      await mustPut(app, a.token, a.tenant, "workloads/db-1", { identity: "db", node: node.name, addresses: [freshAddress(node.podCidr)] });
    });
    afterAll(async () => app?.close());

    const maps = async () => {
      const res = await app.inject({ url: `/v1/nodes/${node.name}/datapath`, headers: bearer(node.credential) });
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json() as { maps: Record<string, { key: { localIdentity: number }; value: { action: string } }[]> };
      const of = (m: string) => body.maps[m]!.filter((e) => e.key.localIdentity === db);
      return { policy: of("policy"), audit: of("audit") };
    };
    const denyWeb = { peers: [{ identity: "web" }], ports: [{ port: 5432, protocol: "tcp" }], action: "deny" };

    it("a policy in audit mode is shown as such and reaches the audit map only", async () => {
      const put = await mustPut(app, a.token, a.tenant, "policies/db-in", { subject: { identity: "db" }, ingress: [denyWeb], mode: "audit" });
      expect(put.mode).toBe("audit");
      const { policy, audit } = await maps();
      expect(policy).toEqual([]);
      expect(audit.map((e) => e.value.action).sort()).toEqual(["default-deny", "deny"]);
    });

    it("one write switches it to enforce", async () => {
      const got = await app.inject({ url: `/v1/tenants/${a.tenant}/policies/db-in`, headers: bearer(a.token) });
      const put = await mustPut(app, a.token, a.tenant, "policies/db-in", { subject: { identity: "db" }, ingress: [denyWeb], mode: "enforce" });
      expect(put.mode).toBe("enforce");
      expect(put.etag).not.toBe(got.json().etag);
      const { policy, audit } = await maps();
      expect(policy.map((e) => e.value.action).sort()).toEqual(["default-deny", "deny"]);
      expect(audit).toEqual([]);
    });

    it("a policy without a mode is enforced, and a rule may be staged alone", async () => {
      const put = await mustPut(app, a.token, a.tenant, "policies/db-in", {
        subject: { identity: "db" },
        ingress: [{ peers: [{ identity: "web" }], action: "allow" }, { ...denyWeb, mode: "audit" }],
      });
      expect(put.mode).toBe("enforce");
      expect((put.ingress as { mode?: string }[])[1]!.mode).toBe("audit");
      const { policy, audit } = await maps();
      expect(policy.map((e) => e.value.action).sort()).toEqual(["allow", "default-deny"]);
      expect(audit.map((e) => e.value.action).sort()).toEqual(["allow", "default-deny", "deny"]);
    });

    it("refuses an unknown mode, naming the field, and changes nothing", async () => {
      const before = await maps();
      for (const [body, field] of [
        [{ subject: { identity: "db" }, ingress: [], mode: "dry-run" }, "mode"],
        [{ subject: { identity: "db" }, ingress: [{ ...denyWeb, mode: "staged" }] }, "ingress/0/mode"],
      ] as const) {
        const res = await putResource(app, a.token, a.tenant, "policies/db-in", body);
        const problem = expectProblem(res, 400);
        expect(JSON.stringify(problem.errors ?? problem)).toContain(field.split("/").pop()!);
      }
      expect(await maps()).toEqual(before);
    });
  });
});
