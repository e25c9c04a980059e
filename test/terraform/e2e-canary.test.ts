// Issue 7, proof: the real terraform binary drives the provider (through
// dev_overrides, as a user would) against a real API process on Postgres,
// with the files of examples/canary. Each step is checked through REST.
// The steps build on each other and run in order.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPERATOR_TOKEN, skipBackend, uniqueName } from "../support/api.ts";
import { startApiProcess, type ApiProcess } from "../support/api-process.ts";
import { uniqueAddress } from "../support/nodes.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { registerNode, restClient, terraformUnavailable, Workspace, type Plan } from "../support/terraform.ts";

/** Every managed resource of the example when var.node is set. */
const RESOURCES = [
  "weft_tenant.this",
  "weft_identity.frontend",
  "weft_identity.web",
  'weft_workload.web["canary"]',
  'weft_workload.web["stable"]',
  "weft_service.web",
  "weft_policy.web",
].sort();

const byAddress = (changes: Plan["changes"]) => [...changes].sort((a, b) => a.address.localeCompare(b.address));
const unquote = (etag: unknown) => String(etag).replace(/"/g, "");

const STEP_MS = 300_000;

describe.skipIf(skipBackend("postgres") || skipWithout("terraform", terraformUnavailable()))(
  "the canary example applied with terraform against the API on Postgres",
  () => {
    let api: ApiProcess;
    let ws: Workspace;
    let rest: ReturnType<typeof restClient>;
    const tenant = uniqueName("tf");
    /** The tenant of the last step, which runs the example without a node. */
    const plainTenant = uniqueName("tf");
    const node = uniqueName("tf-node");
    /** Inside the node's pod CIDR block, known once it is registered. */
    let addresses: { stable: string; canary: string };
    const t = (path: string) => `/v1/tenants/${tenant}${path}`;
    /** The REST path of each resource, by Terraform address. */
    const paths: Record<string, string> = {
      "weft_tenant.this": t(""),
      "weft_identity.frontend": t("/identities/frontend"),
      "weft_identity.web": t("/identities/web"),
      'weft_workload.web["stable"]': t("/workloads/web-stable"),
      'weft_workload.web["canary"]': t("/workloads/web-canary"),
      "weft_service.web": t("/services/web"),
      "weft_policy.web": t("/policies/web-ingress"),
    };

    const weights = async () => {
      const res = await rest("GET", t("/services/web"));
      expect(res.status, res.text).toBe(200);
      return (res.body.backends.explicit as { weight: number }[]).map((b) => b.weight);
    };

    /** PUTs the service through REST with new weights: a change made outside Terraform. */
    const reweighOutside = async (stable: number, canary: number) => {
      const { body } = await rest("GET", t("/services/web"));
      const explicit = (body.backends.explicit as Record<string, unknown>[]).map((b, i) => ({ ...b, weight: i === 0 ? stable : canary }));
      const res = await rest("PUT", t("/services/web"), {
        vip: body.vip,
        ports: body.ports,
        backends: { explicit },
        loadBalancing: body.loadBalancing,
        topology: body.topology,
      });
      expect(res.status, res.text).toBe(200);
    };

    beforeAll(async () => {
      api = await startApiProcess({ DATABASE_URL: process.env.DATABASE_URL!, WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN });
      rest = restClient(api.base, OPERATOR_TOKEN);
      const podCidr = await registerNode(api.base, OPERATOR_TOKEN, node);
      addresses = { stable: uniqueAddress(podCidr), canary: uniqueAddress(podCidr) };
      ws = await Workspace.create({ WEFT_ENDPOINT: api.base, WEFT_TOKEN: OPERATOR_TOKEN });
      await ws.copyExample("canary");
      Object.assign(ws.vars, { tenant, node, stable_address: addresses.stable, canary_address: addresses.canary });
    }, 120_000);

    afterAll(async () => {
      // Whatever failed, leave nothing behind: the tenant (and with it all it owns), the node, the files.
      if (rest) {
        await rest("DELETE", t("")).catch(() => undefined);
        await rest("DELETE", `/v1/tenants/${plainTenant}`).catch(() => undefined);
        await rest("DELETE", `/v1/nodes/${node}`).catch(() => undefined);
      }
      await ws?.dispose();
      await api?.stop();
    }, 60_000);

    it("1. apply of the example creates every resource, each visible through REST with its fields", async () => {
      const plan = await ws.plan();
      expect(plan.exitCode, plan.run.stdout).toBe(2);
      expect(byAddress(plan.changes)).toEqual(RESOURCES.map((address) => ({ address, actions: ["create"] })));
      await ws.apply(plan.file);

      const tenantRes = await rest("GET", t(""));
      expect(tenantRes.status, tenantRes.text).toBe(200);
      expect(tenantRes.body).toMatchObject({ name: tenant, displayName: "Canary example" });
      const trustDomain = tenantRes.body.trustDomain as string;

      const identities: Record<string, { status: number; body: Record<string, unknown> }> = {};
      for (const name of ["web", "frontend"]) {
        const res = await rest("GET", t(`/identities/${name}`));
        expect(res.status, res.text).toBe(200);
        expect(res.body).toMatchObject({
          name,
          path: `/ns/prod/sa/${name}`,
          spiffeId: `spiffe://${trustDomain}/ns/prod/sa/${name}`,
          selectors: { app: name },
        });
        identities[name] = res;
      }
      for (const track of ["stable", "canary"] as const) {
        const res = await rest("GET", t(`/workloads/web-${track}`));
        expect(res.status, res.text).toBe(200);
        expect(res.body).toMatchObject({ identity: "web", node, addresses: [addresses[track]] });
      }
      const service = await rest("GET", t("/services/web"));
      expect(service.status, service.text).toBe(200);
      expect(service.body).toMatchObject({
        vipAllocated: true,
        ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }],
        loadBalancing: "maglev",
      });
      expect(service.body.backends.explicit).toEqual([
        expect.objectContaining({ workload: "web-stable", weight: 90 }),
        expect.objectContaining({ workload: "web-canary", weight: 10 }),
      ]);
      const policy = await rest("GET", t("/policies/web-ingress"));
      expect(policy.status, policy.text).toBe(200);
      expect(policy.body.subject).toEqual({ identity: "web" });
      expect(policy.body.ingress).toEqual([
        { action: "allow", peers: [{ identity: "frontend" }], ports: [{ port: 8080, protocol: "tcp" }] },
        { action: "deny", peers: [{ cidr: "192.0.2.0/24" }] },
      ]);

      // Terraform's state holds what the API computed.
      const state = await ws.state();
      expect([...state.keys()].filter((a) => !a.startsWith("data.")).sort()).toEqual(RESOURCES);
      for (const name of ["web", "frontend"]) {
        const s = state.get(`weft_identity.${name}`)!;
        expect(s).toMatchObject({
          id: `${tenant}/${name}`,
          tenant,
          name,
          spiffe_id: identities[name]!.body.spiffeId,
          security_identity: identities[name]!.body.securityIdentity,
        });
        expect(unquote(s.etag)).toBe(unquote(identities[name]!.body.etag));
      }
      const s = state.get("weft_service.web")!;
      expect(s).toMatchObject({ id: `${tenant}/web`, vip: service.body.vip, vip_allocated: true });
      expect(unquote(s.etag)).toBe(unquote(service.body.etag));
      expect(state.get("weft_tenant.this")).toMatchObject({ name: tenant, trust_domain: trustDomain });

      const bundle = await fetch(`${api.base}${t("/bundle.pem")}`);
      expect(await ws.outputs()).toEqual({
        service_vip: service.body.vip,
        web_spiffe_id: identities.web!.body.spiffeId,
        trust_bundle_pem: await bundle.text(),
      });
    }, STEP_MS);

    it("2. moving the canary to 50/50 plans one in-place update of the service; apply; REST shows 50/50", async () => {
      Object.assign(ws.vars, { stable_weight: 50, canary_weight: 50 });
      const plan = await ws.plan();
      expect(plan.exitCode).toBe(2);
      expect(plan.changes).toEqual([{ address: "weft_service.web", actions: ["update"] }]);
      const change = plan.json.resource_changes!.find((c) => c.address === "weft_service.web")!;
      expect((change.change.after as { backends: { explicit: { weight: number }[] } }).backends.explicit.map((b) => b.weight)).toEqual([50, 50]);
      await ws.apply(plan.file);
      expect(await weights()).toEqual([50, 50]);
    }, STEP_MS);

    it("3. a policy deleted through REST is planned for re-creation, and apply brings it back", async () => {
      expect((await rest("DELETE", t("/policies/web-ingress"))).status).toBe(204);
      const plan = await ws.plan();
      expect(plan.exitCode).toBe(2);
      expect(plan.changes).toEqual([{ address: "weft_policy.web", actions: ["create"] }]);
      await ws.apply(plan.file);
      const res = await rest("GET", t("/policies/web-ingress"));
      expect(res.status, res.text).toBe(200);
      expect(res.body.ingress).toHaveLength(2);
    }, STEP_MS);

    it("4. an edit through REST shows as drift; applying a plan made before another edit fails as changed outside Terraform", async () => {
      await reweighOutside(70, 30);
      const plan = await ws.plan();
      expect(plan.exitCode).toBe(2);
      expect(plan.drift).toEqual([{ address: "weft_service.web", actions: ["update"] }]);
      const drifted = plan.json.resource_drift!.find((c) => c.address === "weft_service.web")!;
      expect((drifted.change.after as { backends: { explicit: { weight: number }[] } }).backends.explicit.map((b) => b.weight)).toEqual([70, 30]);
      expect(plan.changes).toEqual([{ address: "weft_service.web", actions: ["update"] }]);

      // Someone changes it again after the plan was saved: the plan's etag is stale.
      await reweighOutside(60, 40);
      const stale = await ws.tryApply(plan.file);
      expect(stale.code, stale.stdout).toBe(1);
      expect((stale.stdout + stale.stderr).replace(/\s+/g, " ")).toMatch(/changed outside Terraform/i);
      expect(await weights()).toEqual([60, 40]);

      // A fresh plan and apply puts the configuration back.
      await ws.apply();
      expect(await weights()).toEqual([50, 50]);
    }, STEP_MS);

    it("5. an identity created through REST is imported, and the next plan has no change for it", async () => {
      const created = await rest("PUT", t("/identities/batch"), { path: "/ns/prod/sa/batch", selectors: { app: "batch" } });
      expect(created.status, created.text).toBe(201);
      await ws.write(
        "import.tf",
        `resource "weft_identity" "batch" {
  tenant    = weft_tenant.this.name
  name      = "batch"
  path      = "/ns/prod/sa/batch"
  selectors = { app = "batch" }
}
`,
      );
      // Not taken over by a create (If-None-Match: *): already the plan fails (its dry run sends the same
      // precondition), says how to import it, into which address, and writes nothing.
      const planned = await ws.planDiagnostics();
      expect(planned.run.code, planned.run.stdout).toBe(1);
      const errors = planned.diagnostics.filter((d) => d.severity === "error");
      expect(errors).toEqual([
        expect.objectContaining({ summary: `weft_identity "${tenant}/batch" already exists`, address: "weft_identity.batch" }),
      ]);
      // The address Terraform reports for the resource is the one the hint names.
      expect(errors[0]!.detail).toContain(`terraform import ${errors[0]!.address} ${tenant}/batch`);
      const refused = await ws.tryApply();
      // Terraform wraps diagnostics at 78 columns.
      const said = (refused.stdout + refused.stderr).replace(/\s+/g, " ");
      expect(refused.code, said).toBe(1);
      expect(said).toMatch(/already exists/);
      expect(said).toContain(`terraform import weft_identity.batch ${tenant}/batch`);
      expect((await rest("GET", t("/identities/batch"))).body.etag).toBe(created.body.etag);

      await ws.importResource("weft_identity.batch", `${tenant}/batch`);
      expect((await ws.state()).get("weft_identity.batch")).toMatchObject({
        id: `${tenant}/batch`,
        tenant,
        name: "batch",
        path: "/ns/prod/sa/batch",
        selectors: { app: "batch" },
        spiffe_id: created.body.spiffeId,
        security_identity: created.body.securityIdentity,
      });
      const plan = await ws.plan();
      expect(plan.changes).toEqual([]);
      expect(plan.exitCode).toBe(0);
      paths["weft_identity.batch"] = t("/identities/batch");
    }, STEP_MS);

    it("5b. every resource of the example imports by its id into a fresh state, with no change planned after", async () => {
      const fresh = await Workspace.create({ WEFT_ENDPOINT: api.base, WEFT_TOKEN: OPERATOR_TOKEN });
      try {
        await fresh.copyExample("canary");
        await fresh.write("import.tf", await ws.read("import.tf"));
        Object.assign(fresh.vars, ws.vars);
        const ids: Record<string, string> = {
          "weft_tenant.this": tenant,
          "weft_identity.frontend": `${tenant}/frontend`,
          "weft_identity.web": `${tenant}/web`,
          "weft_identity.batch": `${tenant}/batch`,
          'weft_workload.web["stable"]': `${tenant}/web-stable`,
          'weft_workload.web["canary"]': `${tenant}/web-canary`,
          "weft_service.web": `${tenant}/web`,
          "weft_policy.web": `${tenant}/web-ingress`,
        };
        // import blocks: one plan imports them all (the same ImportResourceState as `terraform import`).
        await fresh.write(
          "imports.tf",
          Object.entries(ids)
            .map(([to, id]) => `import {\n  to = ${to}\n  id = ${JSON.stringify(id)}\n}\n`)
            .join("\n"),
        );
        const plan = await fresh.plan();
        expect(plan.changes, plan.run.stdout).toEqual([]);
        const importing = (plan.json.resource_changes ?? []).filter((c) => c.change.importing).map((c) => [c.address, c.change.importing!.id]);
        expect(importing.sort()).toEqual(Object.entries(ids).sort());
        await fresh.apply(plan.file);
        const after = await fresh.plan();
        expect(after.changes).toEqual([]);
        expect(after.exitCode, after.run.stdout).toBe(0);
      } finally {
        // Its state is thrown away; the resources stay with the first workspace.
        await fresh.dispose();
      }
    }, STEP_MS);

    it("6. a second apply of the same configuration reports no changes and writes nothing", async () => {
      const etags = async () =>
        Object.fromEntries(await Promise.all(Object.entries(paths).map(async ([a, p]) => [a, (await rest("GET", p)).body?.etag])));
      const before = await etags();
      const plan = await ws.plan();
      expect(plan.changes).toEqual([]);
      expect(plan.exitCode, plan.run.stdout).toBe(0);
      const run = await ws.apply();
      expect(run.stdout).toMatch(/No changes\./);
      expect(await etags()).toEqual(before);
    }, STEP_MS);

    it("7. destroy removes everything: each resource answers 404 through REST", async () => {
      await ws.destroy();
      expect([...(await ws.state()).keys()].filter((a) => !a.startsWith("data."))).toEqual([]);
      for (const [address, path] of Object.entries(paths)) {
        const res = await rest("GET", path);
        expect(res.status, `${address}: ${res.text}`).toBe(404);
      }
    }, STEP_MS);

    it("8. without a node the example sends to plain addresses: apply, no change after, destroy", async () => {
      await ws.remove("import.tf");
      Object.assign(ws.vars, { tenant: plainTenant, node: null, stable_weight: null, canary_weight: null });
      const plan = await ws.plan();
      expect(byAddress(plan.changes)).toEqual(
        RESOURCES.filter((a) => !a.startsWith("weft_workload.")).map((address) => ({ address, actions: ["create"] })),
      );
      await ws.apply(plan.file);
      const service = await rest("GET", `/v1/tenants/${plainTenant}/services/web`);
      expect(service.status, service.text).toBe(200);
      expect(service.body.backends.explicit).toEqual([
        expect.objectContaining({ address: addresses.stable, weight: 90 }),
        expect.objectContaining({ address: addresses.canary, weight: 10 }),
      ]);
      expect(service.body.backends.explicit.every((b: Record<string, unknown>) => b.workload === undefined || b.workload === null)).toBe(true);
      const again = await ws.plan();
      expect(again.changes).toEqual([]);
      expect(again.exitCode, again.run.stdout).toBe(0);
      await ws.destroy();
      expect((await rest("GET", `/v1/tenants/${plainTenant}`)).status).toBe(404);
    }, STEP_MS);
  },
);
