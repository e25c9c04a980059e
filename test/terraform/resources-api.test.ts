/**
 * The Weft resources' handlers called as the plugin layer calls them, with
 * Terraform's own steps done here (filling unset attributes with null,
 * proposing config merged with prior state, checking that apply keeps what
 * the plan promised), against a real API listening on a port.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import {
  UNKNOWN,
  type DataSourceHandler,
  type Diagnostic,
  type ProviderContext,
  type ResourceHandler,
  type TfAttribute,
  type TfObject,
  type TfValue,
} from "../../terraform/src/framework.ts";
import { weftProvider } from "../../terraform/src/weft/provider.ts";
import { BACKENDS, backendDatabase, OPERATOR_TOKEN, currentRevision, operator, skipBackend, startApi, uniqueName } from "../support/api.ts";
import { freshAddress, identity, mustPut, tenantChanges } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";

// ---- What Terraform core does around the handlers -------------------------

/** Every attribute present, null where unset, as the plugin layer hands values over. */
function fill(attributes: TfAttribute[], value: Record<string, unknown>): TfObject {
  const known = new Set(attributes.map((a) => a.name));
  for (const k of Object.keys(value)) if (!known.has(k)) throw new Error(`no attribute ${k}`);
  const out: TfObject = {};
  for (const a of attributes) {
    const v = (value[a.name] ?? null) as TfValue;
    if (a.nested && v !== null && v !== UNKNOWN) {
      out[a.name] =
        a.nested.nesting === "single"
          ? fill(a.nested.attributes, v as Record<string, unknown>)
          : (v as Record<string, unknown>[]).map((item) => fill(a.nested!.attributes, item));
    } else out[a.name] = v;
  }
  return out;
}

/**
 * Terraform's proposed new state (objchange.ProposedNew): the config, with prior values for computed
 * attributes it leaves unset, except nested attributes: those it proposes as configured, null included.
 */
function proposedNewState(attributes: TfAttribute[], prior: TfObject | null, config: TfObject): TfObject {
  const out: TfObject = {};
  for (const a of attributes) {
    out[a.name] = a.computed && !a.nested && config[a.name] === null ? (prior?.[a.name] ?? null) : (config[a.name] ?? null);
  }
  return out;
}

/** Terraform refuses a new state that contradicts a known planned value ("inconsistent result after apply"). */
function expectConforms(planned: TfValue, state: TfValue, path = "$"): void {
  if (planned === UNKNOWN) return;
  if (Array.isArray(planned)) {
    expect(Array.isArray(state) && state.length, path).toBe(planned.length);
    planned.forEach((p, i) => expectConforms(p, (state as TfValue[])[i] ?? null, `${path}[${i}]`));
  } else if (typeof planned === "object" && planned !== null) {
    for (const [k, v] of Object.entries(planned)) expectConforms(v, (state as TfObject)[k] ?? null, `${path}.${k}`);
  } else expect(state, path).toEqual(planned);
}

const errors = (ds: Diagnostic[]) => ds.filter((d) => d.severity === "error");

/** A ProviderContext that counts its requests, to see which steps call the API. */
function counting(ctx: ProviderContext): ProviderContext & { calls: string[] } {
  const calls: string[] = [];
  return {
    ...ctx,
    calls,
    request(method, path, init) {
      calls.push(`${method} ${path}`);
      return ctx.request(method, path, init);
    },
  };
}

class Terraform {
  constructor(readonly ctx: ProviderContext) {}

  /** `replacing`: the create half of a replacement, as Terraform plans it (the provider service tells from private bytes). */
  async plan(h: ResourceHandler, prior: TfObject | null, config: Record<string, unknown> | null, ctx = this.ctx, replacing = false) {
    if (config === null) return { ...(await h.plan({ prior, proposed: null, config: null, ctx })), config: null };
    const filled = fill(h.schema.attributes, config);
    const validation = h.validate(filled);
    if (errors(validation).length > 0) return { planned: null, requiresReplace: [], diagnostics: validation, config: filled };
    const result = await h.plan({ prior, proposed: proposedNewState(h.schema.attributes, prior, filled), config: filled, ctx, replacing });
    return { ...result, config: filled };
  }

  /** plan then apply, as `terraform apply` does; insists both succeed and that apply keeps the plan. */
  async apply(h: ResourceHandler, prior: TfObject | null, config: Record<string, unknown> | null): Promise<TfObject | null> {
    const plan = await this.plan(h, prior, config);
    expect(errors(plan.diagnostics)).toEqual([]);
    const done = await h.apply({ prior, planned: plan.planned, config: plan.config, ctx: this.ctx });
    expect(done.diagnostics).toEqual([]);
    if (plan.planned !== null) expectConforms(plan.planned, done.state);
    return done.state;
  }
}

const resource = (name: string): ResourceHandler => weftProvider().resources.find((r) => r.typeName === name)!;
const dataSource = (name: string): DataSourceHandler => weftProvider().dataSources.find((d) => d.typeName === name)!;

async function listening(app: WeftApp): Promise<string> {
  await app.listen({ port: 0, host: "127.0.0.1" });
  const address = app.server.address();
  if (typeof address !== "object" || address === null) throw new Error("no address");
  return `http://127.0.0.1:${address.port}`;
}

async function operatorContext(endpoint: string): Promise<ProviderContext> {
  const { ctx, diagnostics } = await weftProvider().configure({ endpoint, token: OPERATOR_TOKEN });
  expect(diagnostics).toEqual([]);
  return ctx!;
}

// ---- The resources ---------------------------------------------------------

describe.each(BACKENDS)("Weft resources against the API on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the provider against the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let tf: Terraform;
    let tenant: string;
    let tenantState: TfObject;
    const get = (url: string) => app.inject({ url, headers: operator });

    beforeAll(async () => {
      app = await startApi(backend);
      tf = new Terraform(await operatorContext(await listening(app)));
      tenant = uniqueName("tf");
      tenantState = (await tf.apply(resource("weft_tenant"), null, { name: tenant, labels: { team: "mesh" } }))!;
    });
    afterAll(async () => app?.close());

    it("weft_tenant: the API's defaults become state, a second plan changes nothing, the trust domain is refused at plan", async () => {
      const h = resource("weft_tenant");
      expect(tenantState).toMatchObject({ name: tenant, id: tenant, trust_domain: `${tenant}.test.weft`, default_action: "allow", display_name: "" });
      expect((await get(`/v1/tenants/${tenant}`)).json()).toMatchObject({ labels: { team: "mesh" }, trustDomain: `${tenant}.test.weft` });
      const again = await tf.plan(h, tenantState, { name: tenant, labels: { team: "mesh" } });
      expect(again.planned).toEqual(tenantState);
      const moved = await tf.plan(h, tenantState, { name: tenant, labels: { team: "mesh" }, trust_domain: "elsewhere.example" });
      expect(errors(moved.diagnostics)).toEqual([
        expect.objectContaining({ summary: "Unprocessable Content", attribute: [{ attribute: "trust_domain" }] }),
      ]);

      // Imported by its name alone; destroyed with everything it owns.
      const other = uniqueName("tf");
      const made = (await tf.apply(h, null, { name: other, default_action: "deny" }))!;
      expect(await h.importState(other, tf.ctx)).toEqual({ state: made, diagnostics: [] });
      expect((await h.importState(`${other}/x`, tf.ctx)).diagnostics[0]!.detail).toContain('expected "<name>"');
      expect(await tf.apply(h, made, null)).toBeNull();
      expect((await get(`/v1/tenants/${other}`)).statusCode).toBe(404);
    });

    it("weft_identity: create, read, no-op, in-place update, replace, 412, drift, gone, import, destroy", async () => {
      const h = resource("weft_identity");
      const config = { tenant, name: "web", path: "/ns/prod/sa/web" };
      const create = await tf.plan(h, null, config);
      expect(create.diagnostics).toEqual([]);
      expect(create.planned).toMatchObject({ id: `${tenant}/web`, etag: UNKNOWN, spiffe_id: UNKNOWN, security_identity: UNKNOWN, selectors: null });
      const state = (await tf.apply(h, null, config))!;
      expect(state).toMatchObject({ spiffe_id: `spiffe://${tenant}.test.weft/ns/prod/sa/web`, selectors: null, x509_svid_ttl_seconds: null });
      expect(state.etag).toBe((await get(`/v1/tenants/${tenant}/identities/web`)).headers.etag);

      // Refresh shows nothing new; the same config plans no change.
      expect((await h.read(state, tf.ctx)).state).toEqual(state);
      expect((await tf.plan(h, state, config)).planned).toEqual(state);

      // In place: a new ETag; the numeric identity and (same path) SPIFFE ID stay.
      const labelled = { ...config, selectors: { app: "web" } };
      const update = await tf.plan(h, state, labelled);
      expect(update.requiresReplace).toEqual([]);
      expect(update.planned).toMatchObject({ etag: UNKNOWN, spiffe_id: state.spiffe_id, security_identity: state.security_identity });
      const updated = (await tf.apply(h, state, labelled))!;
      expect(updated.etag).not.toBe(state.etag);
      expect(updated.selectors).toEqual({ app: "web" });
      const moved = await tf.plan(h, updated, { ...labelled, path: "/ns/prod/sa/web2" });
      expect(moved.planned).toMatchObject({ spiffe_id: UNKNOWN, security_identity: updated.security_identity });

      // A new name is a new identity.
      const renamed = await tf.plan(h, updated, { ...labelled, name: "web-2" });
      expect(renamed.requiresReplace).toEqual([[{ attribute: "name" }]]);
      expect(renamed.planned).toMatchObject({ id: `${tenant}/web-2`, etag: UNKNOWN, security_identity: UNKNOWN });

      // Changed outside: refresh shows the drift, and a write with the stale ETag is refused.
      await mustPut(app, OPERATOR_TOKEN, tenant, "identities/web", { path: "/ns/prod/sa/web", selectors: { app: "web", by: "hand" } });
      const drift = (await h.read(updated, tf.ctx)).state!;
      expect(drift.selectors).toEqual({ app: "web", by: "hand" });
      const stale = await tf.plan(h, updated, { ...labelled, jwt_svid_ttl_seconds: 120 });
      expect(errors(stale.diagnostics).map((d) => d.summary)).toEqual([expect.stringContaining("changed outside Terraform")]);
      const refused = await h.apply({ prior: updated, planned: stale.planned, config: stale.config, ctx: tf.ctx });
      expect(refused.diagnostics).toEqual([
        expect.objectContaining({ severity: "error", summary: `weft_identity "${tenant}/web" changed outside Terraform: refresh and plan again` }),
      ]);
      expect(refused.state).toEqual(updated);

      // Deleted outside: refresh answers no state, so Terraform plans a create.
      expect((await app.inject({ method: "DELETE", url: `/v1/tenants/${tenant}/identities/web`, headers: operator })).statusCode).toBe(204);
      expect(await h.read(drift, tf.ctx)).toEqual({ state: null, diagnostics: [] });

      // Import: the id, a malformed id, a missing one.
      const recreated = (await tf.apply(h, null, labelled))!;
      const imported = await h.importState(`${tenant}/web`, tf.ctx);
      expect(imported).toEqual({ state: recreated, diagnostics: [] });
      for (const bad of ["web", `${tenant}/Web`, `${tenant}/web/x`]) {
        const d = (await h.importState(bad, tf.ctx)).diagnostics;
        expect(d).toEqual([expect.objectContaining({ severity: "error", summary: "Invalid import id for weft_identity" })]);
        expect(d[0]!.detail).toContain('"<tenant>/<name>"');
      }
      expect((await h.importState(`${tenant}/nobody`, tf.ctx)).diagnostics).toEqual([
        expect.objectContaining({ severity: "error", summary: "Cannot import weft_identity: not found" }),
      ]);

      // Destroy: the plan calls nothing; apply deletes; deleting again is not an error.
      const watched = counting(tf.ctx);
      expect(await h.plan({ prior: recreated, proposed: null, config: null, ctx: watched })).toEqual({ planned: null, requiresReplace: [], diagnostics: [] });
      expect(watched.calls).toEqual([]);
      expect(await h.apply({ prior: recreated, planned: null, config: null, ctx: tf.ctx })).toEqual({ state: null, diagnostics: [] });
      expect((await get(`/v1/tenants/${tenant}/identities/web`)).statusCode).toBe(404);
      expect(await h.apply({ prior: recreated, planned: null, config: null, ctx: tf.ctx })).toEqual({ state: null, diagnostics: [] });
    });

    it("a create over an object made outside Terraform fails at plan (and at apply), naming import; a forced replace plans cleanly", async () => {
      const h = resource("weft_identity");
      await mustPut(app, OPERATOR_TOKEN, tenant, "identities/outside", { path: "/ns/outside" });
      const before = (await get(`/v1/tenants/${tenant}/identities/outside`)).json().etag as string;
      const config = { tenant, name: "outside", path: "/ns/elsewhere" };
      const exists = expect.objectContaining({
        severity: "error",
        summary: `weft_identity "${tenant}/outside" already exists`,
        detail: expect.stringContaining(`terraform import <the address on the "with" line above> ${tenant}/outside`),
      });
      // The plan's dry run carries If-None-Match: *, as the apply's write does.
      const plan = await tf.plan(h, null, config);
      expect(plan.diagnostics).toEqual([exists]);
      // Terraform plans a forced replacement (-replace, taint) as a create while the old object exists: no error then.
      const replacing = await tf.plan(h, null, config, tf.ctx, true);
      expect(replacing.diagnostics).toEqual([]);
      // An apply of a plan made anyway (an older provider's) still refuses, and nothing was written.
      const done = await h.apply({ prior: null, planned: replacing.planned, config: replacing.config, ctx: tf.ctx });
      expect(done.state).toBeNull();
      expect(done.diagnostics).toEqual([exists]);
      expect((await get(`/v1/tenants/${tenant}/identities/outside`)).json()).toMatchObject({ etag: before, path: "/ns/outside" });
    });

    it("plans without a dry run while the config holds unknown values, and skips it for a tenant this apply creates", async () => {
      const h = resource("weft_identity");
      const watched = counting(tf.ctx);
      const plan = await tf.plan(h, null, { tenant, name: "later", path: UNKNOWN }, watched);
      expect(plan.diagnostics).toEqual([]);
      expect(watched.calls).toEqual([]);
      expect(plan.planned).toMatchObject({ path: UNKNOWN, spiffe_id: UNKNOWN, id: `${tenant}/later` });
      const unborn = await tf.plan(h, null, { tenant: uniqueName("unborn"), name: "web", path: "/web" }, watched);
      expect(unborn.diagnostics).toEqual([]);
      expect(watched.calls).toHaveLength(1);
    });

    it("weft_service: an allocated VIP is planned unknown, then kept by updates; a second plan changes nothing", async () => {
      const h = resource("weft_service");
      await identity(app, OPERATOR_TOKEN, tenant, "api", { app: "api" });
      const config = {
        tenant,
        name: "api",
        ports: [{ port: 80, protocol: "tcp", target_port: 8080 }],
        backends: { selector: { identity: "api" } },
      };
      const create = await tf.plan(h, null, config);
      expect(create.diagnostics).toEqual([]);
      expect(create.planned).toMatchObject({ vip: UNKNOWN, vip_allocated: UNKNOWN, load_balancing: UNKNOWN, topology: UNKNOWN });
      const state = (await tf.apply(h, null, config))!;
      expect(state).toMatchObject({ vip_allocated: true, load_balancing: "random", topology: { prefer_same_zone: false } });
      expect(state.backends).toEqual({ selector: { identity: "api", labels: null }, explicit: null });
      expect((await tf.plan(h, state, config)).planned).toEqual(state);
      expect((await h.read(state, tf.ctx)).state).toEqual(state);

      const more = { ...config, ports: [...config.ports, { port: 443, protocol: "tcp", target_port: 8443 }] };
      const update = await tf.plan(h, state, more);
      expect(update.planned).toMatchObject({ vip: state.vip, vip_allocated: true, etag: UNKNOWN, load_balancing: "random" });
      const updated = (await tf.apply(h, state, more))!;
      expect(updated).toMatchObject({ vip: state.vip, vip_allocated: true });
      expect((await get(`/v1/tenants/${tenant}/services/api`)).json().ports).toHaveLength(2);

      // selector and explicit together fit no alternative.
      const both = h.validate(fill(h.schema.attributes, { ...config, backends: { selector: {}, explicit: [{ address: "10.0.0.1", weight: 1 }] } }));
      expect(both).toEqual([expect.objectContaining({ severity: "error", attribute: [{ attribute: "backends" }] })]);
      await tf.apply(h, updated, null);
    });

    it("a dry run's 400 becomes a plan diagnostic at the attribute, and writes nothing", async () => {
      const h = resource("weft_service");
      const before = await tenantChanges(app, tenant);
      const revision = await currentRevision(app);
      const twice = {
        tenant,
        name: "dup",
        ports: [
          { port: 80, protocol: "tcp", target_port: 8080 },
          { port: 80, protocol: "tcp", target_port: 9090 },
        ],
        backends: { selector: {} },
      };
      const plan = await tf.plan(h, null, twice);
      expect(errors(plan.diagnostics)).toEqual([
        expect.objectContaining({ summary: "Bad Request", attribute: [{ attribute: "ports" }, { index: 1 }] }),
      ]);
      expect(plan.diagnostics[0]!.detail).toContain("80/tcp is already listed");
      // What validate() would also catch, the API reports with its path: camelCase → snake_case.
      const zero = fill(h.schema.attributes, { ...twice, ports: [{ port: 80, protocol: "tcp", target_port: 0 }] });
      expect(h.validate(zero)).toEqual([expect.objectContaining({ attribute: [{ attribute: "ports" }, { index: 0 }, { attribute: "target_port" }] })]);
      const direct = await h.plan({ prior: null, proposed: zero, config: zero, ctx: tf.ctx });
      expect(errors(direct.diagnostics)).toEqual([
        expect.objectContaining({ summary: "Bad Request", attribute: [{ attribute: "ports" }, { index: 0 }, { attribute: "target_port" }] }),
      ]);
      expect(await tenantChanges(app, tenant)).toBe(before);
      expect(await currentRevision(app)).toBe(revision);
      expect((await get(`/v1/tenants/${tenant}/services/dup`)).statusCode).toBe(404);
    });

    it("weft_workload and weft_policy: references, null against empty rule lists, peer unions", async () => {
      const node = await registeredNode(app, { zone: "zone-b" });
      await identity(app, OPERATOR_TOKEN, tenant, "db", { app: "db" });
      const wl = resource("weft_workload");
      // Addresses keep the user's order (the API stores them as given): a second plan must not reorder them.
      const [low, high] = [freshAddress(node.podCidr), freshAddress(node.podCidr)].sort();
      const wconfig = { tenant, name: "db-1", identity: "db", node: node.name, addresses: [high!, low!] };
      const workload = (await tf.apply(wl, null, wconfig))!;
      expect(workload).toMatchObject({ interface: null, addresses: [high, low], id: `${tenant}/db-1` });
      expect((await wl.read(workload, tf.ctx)).state).toEqual(workload);
      expect((await tf.plan(wl, workload, wconfig)).planned).toEqual(workload);

      // A reference to an identity that does not exist (yet): a warning, since this apply may create it.
      const early = await tf.plan(wl, null, { ...wconfig, name: "db-2", identity: "not-yet", addresses: [freshAddress(node.podCidr)] });
      expect(early.diagnostics).toEqual([expect.objectContaining({ severity: "warning", attribute: [{ attribute: "identity" }] })]);
      // An unregistered node is an error of this plan.
      const nowhere = await tf.plan(wl, null, { ...wconfig, name: "db-3", node: "no-such-node", addresses: [freshAddress(node.podCidr)] });
      expect(nowhere.diagnostics).toEqual([expect.objectContaining({ severity: "error", attribute: [{ attribute: "node" }] })]);

      const pol = resource("weft_policy");
      const pconfig = {
        tenant,
        name: "db-in",
        subject: { identity: "db" },
        ingress: [{ peers: [{ labels: { app: "api" } }, { cidr: "192.0.2.0/24" }], ports: [{ port: 5432, protocol: "tcp" }], action: "allow" }],
        egress: [],
      };
      const policy = (await tf.apply(pol, null, pconfig))!;
      expect(policy.egress).toEqual([]);
      expect((await get(`/v1/tenants/${tenant}/policies/db-in`)).json()).toMatchObject({ egress: [], ingress: [{ action: "allow" }] });
      expect((await tf.plan(pol, policy, pconfig)).planned).toEqual(policy);
      const ungoverned = (await tf.apply(pol, policy, { ...pconfig, egress: null }))!;
      expect(ungoverned.egress).toBeNull();
      expect((await get(`/v1/tenants/${tenant}/policies/db-in`)).json().egress).toBeNull();

      const mixed = fill(pol.schema.attributes, { ...pconfig, ingress: [{ peers: [{ identity: "db", cidr: "10.0.0.0/8" }], action: "allow" }] });
      expect(pol.validate(mixed)).toEqual([
        expect.objectContaining({ attribute: [{ attribute: "ingress" }, { index: 0 }, { attribute: "peers" }, { index: 0 }] }),
      ]);
      const hostBits = await tf.plan(pol, policy, { ...pconfig, ingress: [{ peers: [{ cidr: "192.0.2.1/24" }], action: "deny" }] });
      expect(errors(hostBits.diagnostics)).toEqual([
        expect.objectContaining({ attribute: [{ attribute: "ingress" }, { index: 0 }, { attribute: "peers" }, { index: 0 }, { attribute: "cidr" }] }),
      ]);
      // transport: mtls on an identity rule applies and reads back; on a CIDR rule the plan names the rule's transport.
      const mtlsConfig = { ...pconfig, ingress: [{ peers: [{ identity: "db" }], ports: [{ port: 5432, protocol: "tcp" }], action: "allow", transport: "mtls" }] };
      const mtls = (await tf.apply(pol, ungoverned, mtlsConfig))!;
      expect((await get(`/v1/tenants/${tenant}/policies/db-in`)).json().ingress[0].transport).toBe("mtls");
      expect((await tf.plan(pol, mtls, mtlsConfig)).planned).toEqual(mtls);
      const cidrMtls = await tf.plan(pol, mtls, { ...pconfig, ingress: [{ peers: [{ cidr: "192.0.2.0/24" }], action: "allow", transport: "mtls" }] });
      expect(errors(cidrMtls.diagnostics)).toEqual([
        expect.objectContaining({ attribute: [{ attribute: "ingress" }, { index: 0 }, { attribute: "transport" }] }),
      ]);
      expect(await tf.apply(pol, mtls, null)).toBeNull();
      expect(await tf.apply(wl, workload, null)).toBeNull();
    });

    it("weft_traffic_policy: create, no-op, in-place update dropping a part, refusals at plan naming the attribute, import, destroy", async () => {
      await identity(app, OPERATOR_TOKEN, tenant, "shop", { app: "shop" });
      await mustPut(app, OPERATOR_TOKEN, tenant, "services/shop", { ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }], backends: { selector: { identity: "shop" } } });
      const h = resource("weft_traffic_policy");
      const config = {
        tenant,
        name: "shop-limits",
        target_ref: { name: "shop" },
        connection_pool: { max_connections: 100 },
        outlier_detection: { consecutive5xx: 3, base_ejection_time: "1m" },
        rate_limit: { requests_per_second: 20 },
      };
      const state = (await tf.apply(h, null, config))!;
      expect(state).toMatchObject({ id: `${tenant}/shop-limits`, target_ref: { kind: null, name: "shop" }, connection_pool: { max_connections: 100, max_pending_requests: null } });
      expect((await get(`/v1/tenants/${tenant}/trafficPolicies/shop-limits`)).json()).toMatchObject({
        targetRef: { name: "shop" },
        connectionPool: { maxConnections: 100 },
        outlierDetection: { consecutive5xx: 3, baseEjectionTime: "1m" },
        rateLimit: { requestsPerSecond: 20 },
      });
      expect(state.etag).toBe((await get(`/v1/tenants/${tenant}/trafficPolicies/shop-limits`)).headers.etag);
      expect((await h.read(state, tf.ctx)).state).toEqual(state);
      expect((await tf.plan(h, state, config)).planned).toEqual(state);

      // In place: the outlier part dropped is gone from the API too.
      const fewer = { ...config, outlier_detection: null };
      const update = await tf.plan(h, state, fewer);
      expect(update.requiresReplace).toEqual([]);
      const updated = (await tf.apply(h, state, fewer))!;
      expect(updated.outlier_detection).toBeNull();
      expect((await get(`/v1/tenants/${tenant}/trafficPolicies/shop-limits`)).json()).not.toHaveProperty("outlierDetection");

      // The API's dry run at plan, naming the attribute; nothing written. A second policy for the service, or a
      // service not there yet, may be one this apply destroys or creates: a warning, and apply checks again.
      const before = await tenantChanges(app, tenant);
      const second = await tf.plan(h, null, { ...config, name: "shop-more" });
      expect(second.diagnostics).toEqual([expect.objectContaining({ severity: "warning", summary: "Conflict", attribute: [{ attribute: "target_ref" }, { attribute: "name" }] })]);
      expect(second.diagnostics[0]!.detail).toContain('trafficPolicy "shop-limits"');
      const early = await tf.plan(h, null, { ...config, name: "elsewhere", target_ref: { name: "not-yet" } });
      expect(early.diagnostics).toEqual([expect.objectContaining({ severity: "warning", attribute: [{ attribute: "target_ref" }, { attribute: "name" }] })]);
      const refusedAtApply = await h.apply({ prior: null, planned: second.planned, config: second.config, ctx: tf.ctx });
      expect(errors(refusedAtApply.diagnostics)).toEqual([expect.objectContaining({ summary: "Conflict", attribute: [{ attribute: "target_ref" }, { attribute: "name" }] })]);
      expect(refusedAtApply.state).toBeNull();
      const zero = await tf.plan(h, updated, { ...fewer, outlier_detection: { interval: "0s" } });
      expect(errors(zero.diagnostics)).toEqual([expect.objectContaining({ attribute: [{ attribute: "outlier_detection" }, { attribute: "interval" }] })]);
      expect(await tenantChanges(app, tenant)).toBe(before);

      expect(await h.importState(`${tenant}/shop-limits`, tf.ctx)).toEqual({ state: updated, diagnostics: [] });
      expect(await tf.apply(h, updated, null)).toBeNull();
      expect((await get(`/v1/tenants/${tenant}/trafficPolicies/shop-limits`)).statusCode).toBe(404);
    });

    it("weft_http_route: a 90/10 canary between services with a retry applies, reads back, plans no change, and is refused on its attribute", async () => {
      await identity(app, OPERATOR_TOKEN, tenant, "shop", { app: "shop" });
      for (const [name, targetPort] of [["shop", 8080], ["shop-v1", 9001], ["shop-v2", 9002]] as const) {
        await mustPut(app, OPERATOR_TOKEN, tenant, `services/${name}`, { ports: [{ port: 80, protocol: "tcp", targetPort }], backends: { selector: { identity: "shop" } } });
      }
      const h = resource("weft_http_route");
      const config = {
        tenant,
        name: "shop-canary",
        parent_refs: [{ name: "shop", port: 80 }],
        rules: [
          {
            matches: [{ path: { type: "PathPrefix", value: "/api" } }],
            backend_refs: [{ kind: "Service", name: "shop-v1", weight: 90 }, { name: "shop-v2", port: 80, weight: 10 }],
            retry: { attempts: 2, on: ["connect-failure", "gateway-error"] },
            timeouts: { request: "2s", backend_request: "500ms" },
            filters: [{ type: "ResponseHeaderModifier", response_header_modifier: { set: [{ name: "x-served-by", value: "weft" }] } }],
          },
        ],
      };
      const state = (await tf.apply(h, null, config))!;
      expect(state).toMatchObject({ id: `${tenant}/shop-canary`, etag: expect.any(String) });
      const stored = (await get(`/v1/tenants/${tenant}/httpRoutes/shop-canary`)).json();
      expect(stored.rules[0]).toMatchObject({
        backendRefs: [{ kind: "Service", name: "shop-v1", weight: 90 }, { name: "shop-v2", port: 80, weight: 10 }],
        retry: { attempts: 2, on: ["connect-failure", "gateway-error"] },
        timeouts: { request: "2s", backendRequest: "500ms" },
        filters: [{ type: "ResponseHeaderModifier", responseHeaderModifier: { set: [{ name: "x-served-by", value: "weft" }] } }],
      });
      expect((await h.read(state, tf.ctx)).state).toEqual(state);
      expect((await tf.plan(h, state, config)).planned).toEqual(state);
      // The API's refusals reach the plan on the attribute: a service the tenant lacks, a port the service lacks.
      const unknown = await tf.plan(h, state, { ...config, rules: [{ backend_refs: [{ name: "no-such" }] }] });
      expect(errors(unknown.diagnostics)).toEqual([
        expect.objectContaining({ attribute: [{ attribute: "rules" }, { index: 0 }, { attribute: "backend_refs" }, { index: 0 }, { attribute: "name" }] }),
      ]);
      const port = await tf.plan(h, state, { ...config, rules: [{ backend_refs: [{ name: "shop-v1", port: 81 }] }] });
      expect(errors(port.diagnostics)).toEqual([
        expect.objectContaining({ attribute: [{ attribute: "rules" }, { index: 0 }, { attribute: "backend_refs" }, { index: 0 }, { attribute: "port" }] }),
      ]);
      // While the route names shop-v2, the service stays.
      expect((await app.inject({ method: "DELETE", url: `/v1/tenants/${tenant}/services/shop-v2`, headers: operator })).statusCode).toBe(409);
      // An import adopts the route as it is.
      expect(await h.importState(`${tenant}/shop-canary`, tf.ctx)).toEqual({ state, diagnostics: [] });
      expect(await tf.apply(h, state, null)).toBeNull();
      expect((await get(`/v1/tenants/${tenant}/httpRoutes/shop-canary`)).statusCode).toBe(404);
    });

    it("weft_join_token mints a usable token, replaces on a new TTL, and is only forgotten on destroy", async () => {
      const h = resource("weft_join_token");
      const plan = await tf.plan(h, null, { ttl_seconds: 300 });
      expect(plan.planned).toEqual({ ttl_seconds: 300, labels: null, name: null, zone: null, id: UNKNOWN, token: UNKNOWN, expires_at: UNKNOWN });
      const state = (await tf.apply(h, null, { ttl_seconds: 300 }))!;
      expect(state.token).toMatch(/^weft_join_/);
      expect(Date.parse(String(state.expires_at))).toBeGreaterThan(Date.now());
      expect((await h.read(state, tf.ctx)).state).toEqual(state);
      expect((await tf.plan(h, state, { ttl_seconds: 300 })).planned).toEqual(state);
      expect((await tf.plan(h, state, { ttl_seconds: 600 })).requiresReplace).toEqual([[{ attribute: "ttl_seconds" }]]);
      expect(errors((await tf.plan(h, null, { ttl_seconds: 0 })).diagnostics)).toEqual([
        expect.objectContaining({ attribute: [{ attribute: "ttl_seconds" }] }),
      ]);
      const registered = await app.inject({ method: "POST", url: "/v1/nodes/register", payload: { joinToken: state.token, name: uniqueName("n"), zone: "z" } });
      expect(registered.statusCode, registered.body).toBe(201);
      expect((await h.importState("anything", tf.ctx)).diagnostics).toEqual([expect.objectContaining({ severity: "error" })]);
      expect(await h.apply({ prior: state, planned: null, config: null, ctx: tf.ctx })).toEqual({ state: null, diagnostics: [] });
    });

    it("weft_bundle and weft_node read what the API answers", async () => {
      const bundle = await dataSource("weft_bundle").read(fill(dataSource("weft_bundle").schema.attributes, { tenant }), tf.ctx);
      expect(bundle.diagnostics).toEqual([]);
      const jwks = (await app.inject({ url: `/v1/tenants/${tenant}/bundle` })).json();
      expect(bundle.state).toMatchObject({ tenant, sequence: jwks.spiffe_sequence, refresh_hint: jwks.spiffe_refresh_hint });
      expect(JSON.parse(String(bundle.state!.jwks))).toEqual(jwks);
      expect(bundle.state!.pem).toBe((await app.inject({ url: `/v1/tenants/${tenant}/bundle.pem` })).body);
      expect(bundle.state!.pem).toContain("-----BEGIN CERTIFICATE-----");

      const node = await registeredNode(app, { zone: "zone-c", labels: { rack: "r1" } });
      const nodes = dataSource("weft_node");
      const read = await nodes.read(fill(nodes.schema.attributes, { name: node.name }), tf.ctx);
      expect(read.diagnostics).toEqual([]);
      expect(read.state).toMatchObject({ name: node.name, zone: "zone-c", labels: { rack: "r1" }, converged: false, applied: null, errors: [] });
      const missing = await nodes.read(fill(nodes.schema.attributes, { name: "no-such-node" }), tf.ctx);
      expect(missing.diagnostics).toEqual([expect.objectContaining({ severity: "error", attribute: [{ attribute: "name" }] })]);
    });
  });
});

describe.each(BACKENDS)("map capacity refusals at plan time on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the provider against the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let tf: Terraform;
    let tenant: string;
    beforeAll(async () => {
      app = await startApi(backend, { mapCapacity: { policy: 12 } });
      tf = new Terraform(await operatorContext(await listening(app)));
      tenant = uniqueName("cap");
      await tf.apply(resource("weft_tenant"), null, { name: tenant, default_action: "deny" });
      const node = await registeredNode(app);
      await identity(app, OPERATOR_TOKEN, tenant, "web", { app: "web" });
      await mustPut(app, OPERATOR_TOKEN, tenant, "workloads/w1", { identity: "web", node: node.name, addresses: [freshAddress(node.podCidr)] });
    });
    afterAll(async () => app?.close());

    it("a policy that would overflow a node's policy map fails the plan; one that fits plans and applies", async () => {
      const h = resource("weft_policy");
      const ports = (n: number) => Array.from({ length: n }, (_, i) => ({ port: 1000 + i, protocol: "tcp" }));
      const before = await tenantChanges(app, tenant);
      const big = await tf.plan(h, null, { tenant, name: "big", subject: { identity: "web" }, ingress: [{ ports: ports(20), action: "allow" }] });
      expect(errors(big.diagnostics)).toEqual([expect.objectContaining({ summary: "Unprocessable Content" })]);
      expect(big.diagnostics[0]!.detail).toMatch(/maps\.policy: node .*: needs \d+ entries, has room for 12/);
      expect(await tenantChanges(app, tenant)).toBe(before);
      const small = (await tf.apply(h, null, { tenant, name: "small", subject: { identity: "web" }, ingress: [{ ports: ports(3), action: "allow" }] }))!;
      expect(small.etag).toEqual(expect.any(String));
    });
  });
});

describe("provider configuration", () => {
  it("sends the bearer token, JSON and a User-Agent naming the provider; endpoint and token fall back to the environment", async () => {
    const { createServer } = await import("node:http");
    const seen: { headers: Record<string, unknown>; body: string; url: string }[] = [];
    const server = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        seen.push({ headers: req.headers, body, url: req.url ?? "" });
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    const saved = { endpoint: process.env.WEFT_ENDPOINT, token: process.env.WEFT_TOKEN };
    try {
      process.env.WEFT_ENDPOINT = `http://127.0.0.1:${port}/`;
      process.env.WEFT_TOKEN = "weft_op_from-env";
      const provider = weftProvider();
      const { ctx, diagnostics } = await provider.configure(fill(provider.schema.attributes, {}));
      expect(diagnostics).toEqual([]);
      await ctx!.request("PUT", "/v1/x", { body: { a: 1 } });
      expect(seen[0]).toMatchObject({ url: "/v1/x", body: '{"a":1}' });
      expect(seen[0]!.headers).toMatchObject({
        authorization: "Bearer weft_op_from-env",
        "content-type": "application/json",
        "user-agent": expect.stringMatching(/^terraform-provider-weft\/\d+\.\d+\.\d+/),
      });
      const given = await provider.configure(fill(provider.schema.attributes, { endpoint: `http://127.0.0.1:${port}`, token: "weft_op_given" }));
      await given.ctx!.request("GET", "/v1/y");
      expect(seen[1]!.headers.authorization).toBe("Bearer weft_op_given");
      expect(provider.schema.attributes.find((a) => a.name === "token")).toMatchObject({ sensitive: true, optional: true });
      const bad = await provider.configure(fill(provider.schema.attributes, { endpoint: "ftp://x" }));
      expect(bad.diagnostics).toEqual([expect.objectContaining({ severity: "error", attribute: [{ attribute: "endpoint" }] })]);
    } finally {
      for (const [k, v] of [["WEFT_ENDPOINT", saved.endpoint], ["WEFT_TOKEN", saved.token]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
