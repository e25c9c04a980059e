// Security issue: a node credential could PUT a workload of any tenant's
// identity on its own node, obtain SVIDs for it that verify against the
// tenant's bundle, and become a backend of the tenant's services: one
// compromised node impersonated every tenant. Modelled on SPIRE's
// registration entries, an identity now names the nodes that may run it
// (nodeSelector) and whether nodes may declare its workloads themselves
// (allowNodeRegistration, default false). This is the attacker's view.
import { X509Certificate } from "node:crypto";
import { eq } from "drizzle-orm";
import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { nodes } from "../../api/src/db/schema.ts";
import { makeCsr, tempDir } from "../ca/helpers.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken, uniqueName } from "../support/api.ts";
import { tenantChanges } from "../support/mesh.ts";
import { addressIn, registeredNode } from "../support/nodes.ts";
import { weftProvider } from "../../terraform/src/weft/provider.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe("the identity fields in Terraform", () => {
  it("weft_identity carries node_selector (a map) and allow_node_registration (optional, the API's default false)", () => {
    const identity = weftProvider().resources.find((r) => r.typeName === "weft_identity")!;
    const attr = (name: string) => identity.schema.attributes.find((a) => a.name === name);
    expect(attr("node_selector")).toMatchObject({ type: ["map", "string"], optional: true });
    expect(attr("allow_node_registration")).toMatchObject({ type: "bool", optional: true, computed: true });
  });
});

type Node = { name: string; credential: string; podCidr: string };
type Tenant = { tenant: string; token: string };

/** A problem answer with what differs per request (its id) taken out: what the caller learns. */
const learned = (res: LightMyRequestResponse) => {
  const body = res.json() as Record<string, unknown>;
  delete body.requestId;
  delete body.instance;
  return { status: res.statusCode, contentType: res.headers["content-type"], body };
};

describe.each(BACKENDS)("node credentials and the identities they may host on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let edge: Node;
    let core: Node;
    let acme: Tenant;
    let other: Tenant;

    const putIdentity = async (t: Tenant, name: string, spec: Record<string, unknown>) => {
      const res = await app.inject({ method: "PUT", url: `/v1/tenants/${t.tenant}/identities/${name}`, headers: bearer(t.token), payload: { path: `/ns/sec/sa/${name}`, ...spec } });
      expect([200, 201], res.body).toContain(res.statusCode);
      return res.json() as Record<string, unknown>;
    };
    const putWorkload = (headers: Record<string, string>, tenant: string, name: string, payload: Record<string, unknown>, query = "") =>
      app.inject({ method: "PUT", url: `/v1/tenants/${tenant}/workloads/${name}${query}`, headers, payload });
    const workload = (identity: string, node: Node) => ({ identity, node: node.name, addresses: [addressIn(node.podCidr)] });
    const x509 = (node: Node, tenant: string, identity: string) =>
      app.inject({
        method: "POST",
        url: `/v1/tenants/${tenant}/identities/${identity}/x509-svids`,
        headers: bearer(node.credential),
        payload: { csr: makeCsr(tmp.dir).csrPem },
      });
    const jwt = (node: Node, tenant: string, identity: string) =>
      app.inject({ method: "POST", url: `/v1/tenants/${tenant}/identities/${identity}/jwt-svids`, headers: bearer(node.credential), payload: { audience: ["db"] } });

    beforeAll(async () => {
      app = await startApi(backend);
      edge = await registeredNode(app, { labels: { pool: "edge" } });
      core = await registeredNode(app, { labels: { pool: "core" } });
      acme = await tenantWithToken(app, ["admin"]);
      other = await tenantWithToken(app, ["admin"]);
      // The default: only the tenant declares workloads, on any node.
      await putIdentity(acme, "tenant-only", {});
      // Nodes may register it, but only nodes labelled pool=core.
      await putIdentity(acme, "core-only", { allowNodeRegistration: true, nodeSelector: { pool: "core" } });
      // Any node may register it: the control, which shows the refusals are about the identity.
      await putIdentity(acme, "open", { allowNodeRegistration: true });
      await putIdentity(other, "foreign", {});
    });
    afterAll(async () => app?.close());

    it("answers the identity fields, defaulting to tenant-declared workloads on any node", async () => {
      const res = await app.inject({ url: `/v1/tenants/${acme.tenant}/identities/tenant-only`, headers: bearer(acme.token) });
      expect(res.json()).toMatchObject({ nodeSelector: {}, allowNodeRegistration: false });
      const core = await app.inject({ url: `/v1/tenants/${acme.tenant}/identities/core-only`, headers: bearer(acme.token) });
      expect(core.json()).toMatchObject({ nodeSelector: { pool: "core" }, allowNodeRegistration: true });
    });

    it("a node registering a workload of an identity that does not let it gets one and the same 403, dry run or not, nothing written", async () => {
      const attempts: [string, string, string][] = [
        // (a) another tenant's identity that does not allow it: in that tenant, and named from a tenant it is not in.
        ["another tenant's identity", other.tenant, "foreign"],
        ["another tenant's identity, named elsewhere", acme.tenant, "foreign"],
        // (b) allowNodeRegistration false.
        ["node registration not allowed", acme.tenant, "tenant-only"],
        // (c) allowed, but the node selector does not match this node.
        ["selector mismatch", acme.tenant, "core-only"],
        // (d) no such identity anywhere.
        ["missing identity", acme.tenant, uniqueName("ghost")],
      ];
      const before = { acme: await tenantChanges(app, acme.tenant), other: await tenantChanges(app, other.tenant) };
      const answers: { what: string; seen: ReturnType<typeof learned> }[] = [];
      for (const [what, tenant, identity] of attempts) {
        for (const query of ["", "?dryRun=true"]) {
          const res = await putWorkload(bearer(edge.credential), tenant, "w-attack", workload(identity, edge), query);
          expectProblem(res, 403);
          answers.push({ what: `${what}${query}`, seen: learned(res) });
        }
      }
      for (const a of answers) expect(a.seen, a.what).toEqual(answers[0]!.seen);
      expect(answers[0]!.seen.body.errors).toEqual([{ field: "body.identity", message: expect.any(String) }]);
      expect({ acme: await tenantChanges(app, acme.tenant), other: await tenantChanges(app, other.tenant) }).toEqual(before);
      expectProblem(await app.inject({ url: `/v1/tenants/${acme.tenant}/workloads/w-attack`, headers: bearer(acme.token) }), 404);
      expectProblem(await app.inject({ url: `/v1/tenants/${other.tenant}/workloads/w-attack`, headers: bearer(other.token) }), 404);

      // And so it obtains no SVID for any of them, X.509 or JWT, with one and the same 404 as a missing identity.
      const jwtRefusals: ReturnType<typeof learned>[] = [];
      for (const [, tenant, identity] of attempts) {
        expect((await x509(edge, tenant, identity)).statusCode).toBe(404);
        const j = await jwt(edge, tenant, identity);
        expectProblem(j, 404);
        jwtRefusals.push(learned(j));
      }
      for (const r of jwtRefusals) expect({ ...r, body: { ...r.body, detail: undefined } }).toEqual({ ...jwtRefusals[0]!, body: { ...jwtRefusals[0]!.body, detail: undefined } });

      // The control: an identity that lets this node register is accepted, and then issued.
      const ok = await putWorkload(bearer(edge.credential), acme.tenant, uniqueName("w"), workload("open", edge));
      expect(ok.statusCode, ok.body).toBe(201);
      expect((await x509(edge, acme.tenant, "open")).statusCode).toBe(201);
      // And a JWT-SVID for it (the Workload API's FetchJWTSVID): the SPIFFE ID of the identity, the audience asked for.
      const minted = await jwt(edge, acme.tenant, "open");
      expect(minted.statusCode, minted.body).toBe(201);
      const claims = JSON.parse(Buffer.from(String(minted.json().token).split(".")[1]!, "base64url").toString()) as { sub: string; aud: string[] | string };
      expect(claims.sub).toMatch(/\/ns\/sec\/sa\/open$/);
      expect([claims.aud].flat()).toEqual(["db"]);
      // Not for an identity none of its workloads carries, though the node may register it.
      expectProblem(await jwt(core, acme.tenant, "open"), 404);
      // The node the selector does match may register core-only.
      expect((await putWorkload(bearer(core.credential), acme.tenant, uniqueName("w"), workload("core-only", core))).statusCode).toBe(201);
    });

    it("a node may not rebind or delete a workload the tenant declared on it with an identity that does not let it", async () => {
      const name = uniqueName("w");
      expect((await putWorkload(bearer(acme.token), acme.tenant, name, workload("tenant-only", edge))).statusCode).toBe(201);
      const before = await tenantChanges(app, acme.tenant);
      expectProblem(await putWorkload(bearer(edge.credential), acme.tenant, name, workload("open", edge)), 403);
      expectProblem(await putWorkload(bearer(edge.credential), acme.tenant, name, workload("tenant-only", edge)), 403);
      expectProblem(await app.inject({ method: "DELETE", url: `/v1/tenants/${acme.tenant}/workloads/${name}`, headers: bearer(edge.credential) }), 403);
      expect(await tenantChanges(app, acme.tenant)).toBe(before);
      const kept = await app.inject({ url: `/v1/tenants/${acme.tenant}/workloads/${name}`, headers: bearer(acme.token) });
      expect(kept.json()).toMatchObject({ identity: "tenant-only", node: edge.name });
    });

    it("a tenant-declared workload on a node its identity's selector does not match is 422 on body.node", async () => {
      await putIdentity(acme, "edge-svc", { nodeSelector: { pool: "edge" } });
      for (const headers of [bearer(acme.token), operator]) {
        for (const query of ["", "?dryRun=true"]) {
          const body = expectProblem(await putWorkload(headers, acme.tenant, uniqueName("w"), workload("edge-svc", core), query), 422);
          expect(body.errors).toEqual([{ field: "body.node", message: expect.stringContaining("pool") }]);
          expect(body.detail).toContain(core.name);
        }
      }
      expect((await putWorkload(bearer(acme.token), acme.tenant, uniqueName("w"), workload("edge-svc", edge))).statusCode).toBe(201);
    });

    it("stops issuing X.509- and JWT-SVIDs to a node at once when the identity's selector stops matching it", async () => {
      const node = await registeredNode(app, { labels: { pool: "edge" } });
      await putIdentity(acme, "web", { nodeSelector: { pool: "edge" } });
      const name = uniqueName("web");
      expect((await putWorkload(bearer(acme.token), acme.tenant, name, workload("web", node))).statusCode).toBe(201);
      const issued = await x509(node, acme.tenant, "web");
      expect(issued.statusCode, issued.body).toBe(201);
      expect(new X509Certificate(issued.json().certificate).subjectAltName).toMatch(/\/ns\/sec\/sa\/web$/);
      expect((await jwt(node, acme.tenant, "web")).statusCode).toBe(201);

      // Narrowing the selector past the node that runs a workload is refused, naming the workload.
      const narrowed = await app.inject({
        method: "PUT",
        url: `/v1/tenants/${acme.tenant}/identities/web`,
        headers: bearer(acme.token),
        payload: { path: "/ns/sec/sa/web", nodeSelector: { pool: "core" } },
      });
      const refusal = expectProblem(narrowed, 422);
      expect(refusal.errors).toEqual([{ field: "body.nodeSelector", message: expect.stringContaining(name) }]);
      expect((await app.inject({ url: `/v1/tenants/${acme.tenant}/identities/web`, headers: bearer(acme.token) })).json().nodeSelector).toEqual({ pool: "edge" });

      // The node's labels change (no route does that today: straight in the table), so the
      // selector no longer matches it: the very next requests are refused, the identity's
      // cached row notwithstanding.
      await app.weft.db.update(nodes).set({ labels: { pool: "retired" } }).where(eq(nodes.name, node.name));
      const x = await x509(node, acme.tenant, "web");
      expect(x.statusCode, x.body).toBe(404);
      // JWT-SVIDs: the same decision (authz.ts), the same 404.
      expectProblem(await jwt(node, acme.tenant, "web"), 404);
      // Labels back: issued again, both kinds.
      await app.weft.db.update(nodes).set({ labels: { pool: "edge" } }).where(eq(nodes.name, node.name));
      expect((await x509(node, acme.tenant, "web")).statusCode).toBe(201);
      expect((await jwt(node, acme.tenant, "web")).statusCode).toBe(201);
    });

    it("deleting a node deletes its workloads, in its tenants' change and audit logs; its name registered again has none", async () => {
      const name = uniqueName("node");
      const first = await registeredNode(app, { name, labels: { pool: "edge" } });
      const declared = uniqueName("w");
      const registered = uniqueName("w");
      expect((await putWorkload(bearer(acme.token), acme.tenant, declared, workload("tenant-only", first))).statusCode).toBe(201);
      expect((await putWorkload(bearer(first.credential), other.tenant, registered, workload("foreign", first))).statusCode).toBe(403);
      await putIdentity(other, "agent-run", { allowNodeRegistration: true });
      expect((await putWorkload(bearer(first.credential), other.tenant, registered, workload("agent-run", first))).statusCode).toBe(201);
      const since = Object.fromEntries(
        await Promise.all(
          [acme, other].map(async (t) => {
            const audit = await app.inject({ url: `/v1/tenants/${t.tenant}/changes?limit=1000`, headers: bearer(t.token) });
            return [t.tenant, Math.max(0, ...(audit.json().items as { revision: number }[]).map((c) => c.revision))] as const;
          }),
        ),
      );

      expect((await app.inject({ method: "DELETE", url: `/v1/nodes/${name}?dryRun=true`, headers: operator })).statusCode).toBe(204);
      expect((await app.inject({ url: `/v1/tenants/${acme.tenant}/workloads/${declared}`, headers: bearer(acme.token) })).statusCode).toBe(200);
      expect((await app.inject({ method: "DELETE", url: `/v1/nodes/${name}`, headers: operator })).statusCode).toBe(204);

      for (const [t, workloadName] of [[acme, declared], [other, registered]] as const) {
        expectProblem(await app.inject({ url: `/v1/tenants/${t.tenant}/workloads/${workloadName}`, headers: bearer(t.token) }), 404);
        const changes = await app.inject({ url: `/v1/tenants/${t.tenant}/changes?since=${since[t.tenant]}`, headers: bearer(t.token) });
        expect(changes.json().items).toContainEqual(expect.objectContaining({ kind: "workload", name: workloadName, op: "delete" }));
        const audit = await app.inject({ url: `/v1/tenants/${t.tenant}/audit?limit=1000`, headers: bearer(t.token) });
        expect(audit.json().items).toContainEqual(
          expect.objectContaining({ actor: "operator", action: "workload.delete", resource: `workload/${workloadName}` }),
        );
      }

      const again = await registeredNode(app, { name, labels: { pool: "edge" } });
      const listed = await app.inject({ url: `/v1/nodes/${name}/workloads`, headers: bearer(again.credential) });
      expect(listed.statusCode).toBe(200);
      expect(listed.json().items).toEqual([]);
      // Nor anything to show for them: no SVIDs for the old node's identities.
      expect((await x509(again, acme.tenant, "tenant-only")).statusCode).toBe(404);
      expect((await x509(again, other.tenant, "agent-run")).statusCode).toBe(404);
      const dp = await app.inject({ url: `/v1/nodes/${name}/datapath`, headers: bearer(again.credential) });
      expect(dp.statusCode).toBe(200);
      expect(dp.json().maps.endpoint).toEqual([]);
    });
  });
});
