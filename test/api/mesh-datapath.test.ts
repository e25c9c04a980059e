import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { applyDelta } from "../../api/src/compiler/diff.ts";
import { createEvaluator } from "../datapath/evaluate.ts";
import type { DatapathMaps, PolicyRow, PolicyRule, Snapshot } from "../../api/src/compiler/types.ts";
import { decodeMaps } from "../../api/src/routes/datapath/binary.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { freshAddress, freshAddress as freshAddressIn, identity, mustPut, putResource, tenantChanges } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";
import { canonical, intended } from "../datapath/support.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A request in flight, and whether it has answered yet. */
function inFlight<T>(request: Promise<T>): { response: Promise<T>; answered: () => boolean } {
  let answered = false;
  const response = request.finally(() => {
    answered = true;
  });
  return { response, answered: () => answered };
}
const urlOf = (node: string) => `/v1/nodes/${node}/datapath`;

describe.each(BACKENDS)("node datapath on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let a: { tenant: string; token: string };
    let node: { name: string; credential: string; podCidr: string };
    beforeAll(async () => {
      app = await startApi(backend, { datapathHistory: 3 });
      a = await tenantWithToken(app, ["write"]);
      node = await registeredNode(app, { zone: "zone-a" });
      await identity(app, a.token, a.tenant, "web", { app: "web" });
    });
    afterAll(async () => app?.close());

    const read = (query: Record<string, string> = {}, headers: Record<string, string> = {}) =>
      app.inject({ url: urlOf(node.name), headers: { ...bearer(node.credential), ...headers }, query });
    const addWorkload = (name: string, address = freshAddress(node.podCidr)) =>
      mustPut(app, a.token, a.tenant, `workloads/${name}`, { identity: "web", node: node.name, addresses: [address] });

    it("serves {revision, hash, maps} with the hash as ETag, and 304 for it", async () => {
      const address = freshAddress(node.podCidr);
      await addWorkload("w1", address);
      const res = await read();
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json();
      expect(res.headers.etag).toBe(`"${body.hash}"`);
      expect(body.maps.endpoint.map((e: { key: { address: string } }) => e.key.address)).toContain(address);
      expect(Object.keys(body.maps).sort()).toEqual(["audit", "backend", "endpoint", "ipcache", "l7", "lb_slot", "policy", "steer", "svc"]);
      expect((await read({}, { "if-none-match": res.headers.etag as string })).statusCode).toBe(304);
      // The operator reads any node; an unknown node is 404.
      expect((await app.inject({ url: urlOf(node.name), headers: operator })).json().hash).toBe(body.hash);
      expectProblem(await app.inject({ url: urlOf("no-such-node"), headers: operator }), 404);
    });

    it("?since answers the delta that turns the old maps into the new ones", async () => {
      const before = (await read()).json();
      const address = freshAddress(node.podCidr);
      await addWorkload("w2", address);
      const delta = await read({ since: String(before.revision) });
      expect(delta.statusCode, delta.body).toBe(200);
      const now = (await read()).json();
      expect(delta.json()).toMatchObject({ revision: now.revision, hash: now.hash });
      expect(delta.json().upserts.endpoint.map((e: { key: { address: string } }) => e.key.address)).toEqual([address]);
      expect(canonical(applyDelta(before.maps, delta.json()))).toEqual(canonical(now.maps));
      const empty = (await read({ since: String(now.revision) })).json();
      expect(Object.values(empty.upserts).flat()).toEqual([]);
      expect(Object.values(empty.deletes).flat()).toEqual([]);
    });

    it("?since older than the history kept answers 410", async () => {
      const old = (await read()).json().revision as number;
      // The history keeps 3 states (WEFT_DATAPATH_HISTORY in the test config): four changes push `old` out.
      for (let i = 0; i < 4; i++) await addWorkload(`h${i}`);
      expectProblem(await read({ since: String(old) }), 410);
      expectProblem(await read({ since: "0" }), 410);
    });

    it("?format=binary is the codec's encoding of the JSON maps", async () => {
      const json = (await read()).json();
      const bin = await read({ format: "binary" });
      expect(bin.statusCode).toBe(200);
      expect(bin.headers["content-type"]).toBe("application/octet-stream");
      expect(bin.headers.etag).toBe(`"${json.hash}"`);
      const decoded = decodeMaps(bin.rawPayload) as unknown as DatapathMaps;
      expect(canonical(decoded)).toEqual(canonical(json.maps));
      expect(decoded.endpoint.length).toBeGreaterThan(0);
      expectProblem(await read({ format: "binary", since: "1" }), 400);
    });

    it("a long poll is woken by a write in the same process and answers the state it made", async () => {
      const current = await read();
      const poll = inFlight(read({ wait: "10" }, { "if-none-match": current.headers.etag as string }));
      await sleep(200);
      expect(poll.answered()).toBe(false); // held: nothing changed yet
      const address = freshAddress(node.podCidr);
      await addWorkload("woken", address);
      const res = await poll.response;
      // 200, not the 304 its wait would end in: the write woke it, with the state the write made.
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().hash).not.toBe(current.json().hash);
      expect(res.json().maps.endpoint.map((e: { key: { address: string } }) => e.key.address)).toContain(address);
      expect(res.json().hash).toBe((await read()).json().hash);
    });

    it("a long poll on ?since answers the delta when the state changes", async () => {
      const { revision } = (await read()).json();
      const poll = read({ since: String(revision), wait: "10" });
      await sleep(100);
      const address = freshAddress(node.podCidr);
      await addWorkload("woken-since", address);
      const res = await poll;
      expect(res.json().upserts.endpoint.map((e: { key: { address: string } }) => e.key.address)).toContain(address);
    });

    it("a long poll answers 304 when nothing changes before it times out", async () => {
      const current = await read();
      const start = Date.now();
      const res = await read({ wait: "1" }, { "if-none-match": current.headers.etag as string });
      expect(res.statusCode).toBe(304);
      expect(Date.now() - start).toBeGreaterThanOrEqual(900);
    });

    it("a write that does not touch the node leaves its state and revision alone", async () => {
      const before = (await read()).json();
      const other = await tenantWithToken(app, ["write"]);
      await identity(app, other.token, other.tenant, "x");
      const after = (await read()).json();
      expect(after).toMatchObject({ revision: before.revision, hash: before.hash });
    });

    it("closing the app ends held polls promptly", async () => {
      const own = await startApi(backend);
      const n = await registeredNode(own);
      const poll = own.inject({ url: urlOf(n.name), headers: bearer(n.credential), query: { wait: "30" }, });
      const first = (await own.inject({ url: urlOf(n.name), headers: bearer(n.credential) })).headers.etag as string;
      const held = inFlight(own.inject({ url: urlOf(n.name), headers: { ...bearer(n.credential), "if-none-match": first }, query: { wait: "30" } }));
      await sleep(200);
      expect(held.answered()).toBe(false);
      await own.close();
      // Answered by the shutdown, not by its 30 s wait: by the time close() resolves it has its answer.
      expect(held.answered()).toBe(true);
      expect((await held.response).statusCode).toBe(304);
      // Without If-None-Match the first poll answered at once with the full state.
      expect((await poll).statusCode).toBe(200);
    });
  });
});

// Over a real socket: the server drops connections idle for its connectionTimeout (30 s), and a held poll
// may wait up to 60 s, so the wait must outlast it. One backend suffices: this is the HTTP layer.
describe("a long poll over a real socket", () => {
  it("held past the server's 30 s connection timeout, still answers 304 when its wait ends", { timeout: 90_000 }, async () => {
    const app = await startApi("pglite");
    try {
      const n = await registeredNode(app);
      const base = await app.listen({ port: 0, host: "127.0.0.1" });
      const first = await fetch(`${base}${urlOf(n.name)}`, { headers: bearer(n.credential) });
      expect(first.status).toBe(200);
      await first.arrayBuffer();
      const held = await fetch(`${base}${urlOf(n.name)}?wait=35`, {
        headers: { ...bearer(n.credential), "if-none-match": first.headers.get("etag")! },
      });
      expect(held.status).toBe(304);
      expect(held.headers.get("etag")).toBe(first.headers.get("etag"));
    } finally {
      await app.close();
    }
  });
});

describe.each(BACKENDS)("capacity admission on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let a: { tenant: string; token: string };
    let node: string;
    let podCidr: string;
    beforeAll(async () => {
      app = await startApi(backend, { mapCapacity: { endpoint: 2, policy: 12 } });
      a = await tenantWithToken(app, ["write"]);
      ({ name: node, podCidr } = await registeredNode(app));
      await identity(app, a.token, a.tenant, "web", { app: "web" });
    });
    afterAll(async () => app?.close());

    const workload = (on = node, block = podCidr) => ({ identity: "web", node: on, addresses: [freshAddress(block)] });

    it("refuses a write that would overflow a node's map, naming map, node, needed and available; a dry run says the same", async () => {
      await mustPut(app, a.token, a.tenant, "workloads/w1", workload());
      await mustPut(app, a.token, a.tenant, "workloads/w2", workload());
      const spec = workload();
      for (const query of [{}, { dryRun: "true" }] as Record<string, string>[]) {
        const before = await tenantChanges(app, a.tenant);
        const body = expectProblem(await putResource(app, a.token, a.tenant, "workloads/w3", spec, { query }), 422);
        expect(body.errors).toEqual([{ field: "maps.endpoint", message: `node ${node}: needs 3 entries, has room for 2` }]);
        expect(await tenantChanges(app, a.tenant)).toBe(before);
      }
      expect((await app.inject({ url: `/v1/tenants/${a.tenant}/workloads/w3`, headers: bearer(a.token) })).statusCode).toBe(404);
      // Another node has room: the same workload fits there.
      const other = await registeredNode(app);
      // (Its address from the other node's block: addresses belong to their node's pod CIDR block.)
      expect((await putResource(app, a.token, a.tenant, "workloads/w3", workload(other.name, other.podCidr))).statusCode).toBe(201);
    });

    it("refuses a policy that would overflow the policy map; a smaller one passes", async () => {
      const ports = (n: number) => Array.from({ length: n }, (_, i) => ({ port: 1000 + i, protocol: "tcp" }));
      const big = { subject: { identity: "web" }, ingress: [{ peers: [], ports: ports(20), action: "allow" }] };
      const body = expectProblem(await putResource(app, a.token, a.tenant, "policies/big", big), 422);
      // The tenant runs on two nodes by now (the test before): each is named.
      expect(body.errors?.map((e) => e.field)).toEqual(["maps.policy", "maps.policy"]);
      expect(body.errors?.map((e) => e.message)).toContainEqual(expect.stringMatching(new RegExp(`^node ${node}: needs \\d+ entries, has room for 12$`)));
      const small = { subject: { identity: "web" }, ingress: [{ peers: [], ports: ports(3), action: "allow" }] };
      expect((await putResource(app, a.token, a.tenant, "policies/small", small)).statusCode).toBe(201);
    });

    it("checks identity writes too: new labels that pull a policy onto a node's workloads", async () => {
      const ports = Array.from({ length: 20 }, (_, i) => ({ port: 2000 + i, protocol: "tcp" }));
      // Selects nothing yet: admitted.
      expect((await putResource(app, a.token, a.tenant, "policies/by-label", { subject: { labels: { tier: "x" } }, ingress: [{ ports, action: "allow" }] })).statusCode).toBe(201);
      const res = await putResource(app, a.token, a.tenant, "identities/web", { path: "/ns/test/sa/web", selectors: { app: "web", tier: "x" } });
      const body = expectProblem(res, 422);
      expect(body.errors?.every((e) => e.field === "maps.policy")).toBe(true);
      expect((await app.inject({ url: `/v1/tenants/${a.tenant}/identities/web`, headers: bearer(a.token) })).json().selectors).toEqual({ app: "web" });
    });

    it("admits a delete on a node whose map is full", async () => {
      // The endpoint map of `node` holds 2 of 2: only growth is refused.
      const res = await app.inject({ method: "DELETE", url: `/v1/tenants/${a.tenant}/workloads/w1`, headers: bearer(a.token) });
      expect(res.statusCode, res.body).toBe(204);
    });
  });
});

const CIDRS = ["192.0.2.0/24", "198.51.100.0/25", "0.0.0.0/0", "203.0.113.7/32"];
const EXTERNAL = ["192.0.2.5", "198.51.100.200", "203.0.113.7", "8.8.8.8"];
const LABELS = ["a", "b"];

describe.each(BACKENDS)("served maps agree with the policies on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let snap: Snapshot;
    let a: { tenant: string; token: string };
    let node: string;
    const names = ["i0", "i1", "i2"];
    beforeAll(async () => {
      app = await startApi(backend);
      a = await tenantWithToken(app, ["write"]);
      const b = await tenantWithToken(app, ["write"]);
      const registered = await registeredNode(app);
      node = registered.name;
      const freshAddress = () => freshAddressIn(registered.podCidr);
      const ids = await Promise.all([a.tenant, b.tenant].map(async (t) => (await app.weft.directory.byName(t))!.id));
      const identities: Snapshot["identities"][number][] = [];
      const workloads: Snapshot["workloads"][number][] = [];
      for (const [i, name] of names.entries()) {
        const labels = { role: LABELS[i % 2]! };
        const row = await identity(app, a.token, a.tenant, name, labels);
        identities.push({ tenantId: ids[0]!, name, numericId: row.securityIdentity as number, labels });
        const address = freshAddress();
        await mustPut(app, a.token, a.tenant, `workloads/w-${name}`, { identity: name, node, addresses: [address] });
        workloads.push({ tenantId: ids[0]!, name: `w-${name}`, identity: name, node, addresses: [address] });
      }
      const foreign = await identity(app, b.token, b.tenant, "j0", { role: "a" });
      identities.push({ tenantId: ids[1]!, name: "j0", numericId: foreign.securityIdentity as number, labels: { role: "a" } });
      const address = freshAddress();
      await mustPut(app, b.token, b.tenant, "workloads/w-j0", { identity: "j0", node, addresses: [address] });
      workloads.push({ tenantId: ids[1]!, name: "w-j0", identity: "j0", node, addresses: [address] });
      snap = {
        tenants: [
          { id: ids[0]!, name: a.tenant, defaultAction: "allow" },
          { id: ids[1]!, name: b.tenant, defaultAction: "allow" },
        ],
        identities,
        workloads,
        services: [],
        policies: [],
        nodes: [{ name: node, zone: "zone-a" }],
        backendIds: new Map(),
        cidrIdentities: new Map(),
      };
    });
    afterAll(async () => app?.close());

    const selector = fc.oneof(
      fc.constant({}),
      fc.constantFrom(...names).map((identity) => ({ identity })),
      fc.constantFrom(...LABELS).map((role) => ({ labels: { role } })),
    );
    const rule: fc.Arbitrary<PolicyRule> = fc.record({
      peers: fc.array(fc.oneof(selector, fc.constantFrom(...CIDRS).map((cidr) => ({ cidr }))), { maxLength: 2 }),
      ports: fc.array(fc.record({ port: fc.constantFrom(0, 80, 443), protocol: fc.constantFrom("tcp" as const, "udp" as const, "any" as const) }), { maxLength: 2 }),
      action: fc.constantFrom("allow" as const, "deny" as const),
    });
    const rules = fc.option(fc.array(rule, { maxLength: 3 }), { nil: undefined });
    const policiesArb = fc.array(fc.tuple(selector, rules, rules), { minLength: 1, maxLength: 2 });

    it("for random rule sets: deny always wins, tenants never meet, and every flow gets the verdict the rules give", async () => {
      await fc.assert(
        fc.asyncProperty(fc.constantFrom<"allow" | "deny">("allow", "deny"), policiesArb, async (defaultAction, bodies) => {
          await app.inject({ method: "PUT", url: `/v1/tenants/${a.tenant}`, headers: operator, payload: { defaultAction } });
          const policies: PolicyRow[] = [];
          for (const [i, [subject, ingress, egress]] of bodies.entries()) {
            const spec = { subject, ...(ingress ? { ingress } : {}), ...(egress ? { egress } : {}) };
            await mustPut(app, a.token, a.tenant, `policies/p${i}`, spec);
            policies.push({ id: i + 1, tenantId: snap.tenants[0]!.id, name: `p${i}`, ...spec });
          }
          // Policies left from a larger earlier run would still apply.
          for (let i = bodies.length; i < 2; i++) await app.inject({ method: "DELETE", url: `/v1/tenants/${a.tenant}/policies/p${i}`, headers: bearer(a.token) });
          const res = await app.inject({ url: urlOf(node), headers: operator, query: { format: "binary" } });
          const maps = decodeMaps(res.rawPayload) as unknown as DatapathMaps;
          const evaluate = createEvaluator(maps);
          const rows: Snapshot = { ...snap, tenants: [{ ...snap.tenants[0]!, defaultAction }, snap.tenants[1]!], policies };
          const remotes = [...snap.workloads.flatMap((w) => w.addresses), ...EXTERNAL];
          for (const w of snap.workloads) {
            for (const remote of remotes) {
              if (w.addresses.includes(remote)) continue;
              for (const direction of ["ingress", "egress"] as const) {
                for (const [port, protocol] of [[80, 6], [443, 17], [22, 6]] as const) {
                  const got = evaluate({ local: w.addresses[0]!, remote, port, protocol, direction }).verdict;
                  expect(got, `${w.name} ${direction} ${remote}:${port}/${protocol}`).toBe(intended(rows, w, remote, port, protocol, direction));
                }
              }
            }
          }
        }),
        { numRuns: backend === "pglite" ? 12 : 6 },
      );
    });
  });
});
