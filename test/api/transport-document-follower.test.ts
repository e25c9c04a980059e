/**
 * GET /v1/nodes/{node}/transport answered from the change-log follower
 * (issue 18 / issue 20): an agent's unchanged If-None-Match poll sends no
 * statement to the database, and every input of the document announces a
 * revision, so another replica's follower changes the ETag promptly: a CA
 * rotation (the trust bundle), a peer's transport endpoint, a workload
 * moving. Each node gets its own document only, and nothing of a tenant it
 * does not host, on the cached path too.
 *
 * Two replicas over one database: writes go to `a`, agents poll `b`, so each
 * change reaches the poller through the change feed (NOTIFY on Postgres),
 * well inside the follower's safety pull (5 s).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import type { TransportDocument } from "../../api/src/mesh/specs.ts";
import { BACKENDS, backendDatabase, bearer, currentRevision, expectProblem, operator, skipBackend, startApi, tenantWithToken, twoReplicas } from "../support/api.ts";
import { freshAddress, identity, mustPut } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";
import { recordStatements } from "../support/session-state.ts";
import { until } from "../support/until.ts";

type Node = { name: string; credential: string; podCidr: string };

/** The follower's periodic head check (follower/follow.ts SAFETY_PULL_MS) and its statement. */
const SAFETY_PULL_MS = 5000;
const HEAD_CHECK = 'select "revision" from "revision_counter"';
/** Well under the follower's safety pull: a change the feed did not announce would miss it. */
const PROMPTLY_MS = 2500;

describe.each(BACKENDS)("the transport document from the follower on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`two replicas on ${backendDatabase(backend)}`, () => {
    let replicas: Awaited<ReturnType<typeof twoReplicas>>;
    let a: WeftApp;
    let b: WeftApp;
    // Tenant t: client on n1, web on n2 (client -> web over mtls). Tenant u: its own pair on n3 only.
    let t: { tenant: string; token: string };
    let u: { tenant: string; token: string };
    let n1: Node, n2: Node, n3: Node;
    const addr: Record<string, string> = {};
    const td: Record<string, string> = {};
    const endpoint = { n1: "198.18.245.1:15008", n2: "198.18.245.2:15008", n3: "198.18.245.3:15008" };

    const report = (node: Node, ep: string | null) =>
      a.inject({
        method: "PUT",
        url: `/v1/nodes/${node.name}/status`,
        headers: bearer(node.credential),
        payload: { appliedRevision: 0, hash: "none", counters: {}, errors: [], transport: { endpoint: ep, state: ep === null ? "off" : "running" } },
      });
    const poll = (node: Node, etag?: string, credential = node.credential) =>
      b.inject({ url: `/v1/nodes/${node.name}/transport`, headers: { ...bearer(credential), ...(etag === undefined ? {} : { "if-none-match": etag }) } });
    const documentOf = async (node: Node) => {
      const res = await poll(node);
      expect(res.statusCode, res.body).toBe(200);
      return { doc: res.json() as TransportDocument, etag: res.headers.etag as string, body: res.body };
    };
    /** Polls b as the node's agent does until its document changes from `etag`; answers the new one and how long it took. */
    const changedFrom = async (node: Node, etag: string) => {
      const started = performance.now();
      const res = await until(`${node.name}'s transport document to change`, PROMPTLY_MS, async () => {
        const r = await poll(node, etag);
        if (r.statusCode === 304) return undefined;
        expect(r.statusCode, r.body).toBe(200);
        return r;
      });
      expect(res.headers.etag).not.toBe(etag);
      const ms = performance.now() - started;
      console.log(`${node.name}'s transport document changed on the other replica after ${ms.toFixed(0)} ms`);
      return { doc: res.json() as TransportDocument, etag: res.headers.etag as string, body: res.body, ms };
    };
    const unchanged = async (node: Node, etag: string) => expect((await poll(node, etag)).statusCode).toBe(304);
    const spiffe = (tenant: string, name: string) => `spiffe://${td[tenant]}/ns/test/sa/${name}`;

    beforeAll(async () => {
      replicas = await twoReplicas(backend, { revocationPollMs: 3_600_000 });
      ({ a, b } = replicas);
      t = await tenantWithToken(a, ["write", "admin"]);
      u = await tenantWithToken(a, ["write", "admin"]);
      for (const x of [t, u]) td[x.tenant] = (await a.inject({ url: `/v1/tenants/${x.tenant}`, headers: operator })).json().trustDomain;
      [n1, n2, n3] = [await registeredNode(a), await registeredNode(a), await registeredNode(a)];
      for (const [x, name] of [[t, "client"], [t, "web"], [u, "uclient"], [u, "uweb"]] as const) await identity(a, x.token, x.tenant, name, { app: name });
      const place = async (x: { tenant: string; token: string }, name: string, ident: string, node: Node) => {
        addr[name] = freshAddress(node.podCidr);
        await mustPut(a, x.token, x.tenant, `workloads/${name}`, { identity: ident, node: node.name, addresses: [addr[name]] });
      };
      await place(t, "client-1", "client", n1);
      await place(t, "web-1", "web", n2);
      await place(u, "uclient-1", "uclient", n3);
      await place(u, "uweb-1", "uweb", n3);
      await mustPut(a, t.token, t.tenant, "policies/web-in", {
        subject: { identity: "web" },
        ingress: [{ peers: [{ identity: "client" }], ports: [{ port: 8080, protocol: "tcp" }], action: "allow", transport: "mtls" }],
      });
      await mustPut(a, u.token, u.tenant, "policies/uweb-in", {
        subject: { identity: "uweb" },
        ingress: [{ peers: [{ identity: "uclient" }], ports: [{ port: 9090, protocol: "tcp" }], action: "allow", transport: "mtls" }],
      });
      for (const [node, ep] of [[n1, endpoint.n1], [n2, endpoint.n2], [n3, endpoint.n3]] as const) expect((await report(node, ep)).statusCode).toBe(200);
      // b has seen every write above once n1's document names web-1 at n2's endpoint.
      await until("replica b to follow the setup", PROMPTLY_MS, async () => ((await documentOf(n1)).doc.remotes[0]?.node === endpoint.n2 ? true : undefined));
    }, 60_000);
    afterAll(async () => replicas?.close());

    it("serves each node what it hosts, the same on both replicas", async () => {
      const one = await documentOf(n1);
      expect(one.doc.bundles.map((x) => x.trustDomain)).toEqual([td[t.tenant]]);
      expect(one.doc.remotes).toEqual([{ address: addr["web-1"], spiffeId: spiffe(t.tenant, "web"), node: endpoint.n2 }]);
      const two = await documentOf(n2);
      expect(two.doc.allow).toEqual([{ source: spiffe(t.tenant, "client"), destination: spiffe(t.tenant, "web"), ports: [8080] }]);
      // u's pair is on one node: nothing to carry between nodes, but its bundle and allowed pair are there.
      const three = await documentOf(n3);
      expect(three.doc.bundles.map((x) => x.trustDomain)).toEqual([td[u.tenant]]);
      expect(three.doc.remotes).toEqual([]);
      for (const [node, doc] of [[n1, one], [n3, three]] as const) {
        const onA = await a.inject({ url: `/v1/nodes/${node.name}/transport`, headers: bearer(node.credential) });
        expect(onA.headers.etag).toBe(doc.etag);
        expect(onA.body).toBe(doc.body);
      }
      expect(one.body).not.toContain(td[u.tenant]!);
      expect(three.body).not.toContain(td[t.tenant]!);
    });

    it.runIf(backend === "postgres")("answers unchanged If-None-Match polls without a database statement", async () => {
      const { etag } = await documentOf(n1);
      // Every statement either replica sends meanwhile, whoever sends it: token revocations are polled hourly here
      // (twoReplicas below), which leaves the follower's safety pull (one head check per replica every 5 s).
      const recorder = recordStatements(Number(new URL(process.env.DATABASE_URL!).port));
      const POLLS = 200;
      try {
        const started = performance.now();
        for (let i = 0; i < POLLS; i++) expect((await poll(n1, etag)).statusCode).toBe(304);
        const elapsed = performance.now() - started;
        const sent = recorder.statements.map((x) => x.text);
        console.log(`transport document: ${POLLS} unchanged If-None-Match polls in ${elapsed.toFixed(0)} ms; statements sent meanwhile: ${sent.length}`, [...new Set(sent)].slice(0, 8));
        // Whatever was sent is the safety pull's head check, at most one per replica per period begun: none per poll.
        expect(sent.filter((text) => text !== HEAD_CHECK)).toEqual([]);
        expect(sent.length).toBeLessThanOrEqual(2 * (Math.floor(elapsed / SAFETY_PULL_MS) + 1));
        // The recorder sees these replicas' statements: a plain read (no If-None-Match) checks the newest revision first.
        recorder.statements.length = 0;
        expect((await poll(n1)).statusCode).toBe(200);
        expect(recorder.statements.map((x) => x.text)).toContain(HEAD_CHECK);
      } finally {
        recorder.stop();
      }
    });

    it("a CA rotation changes the documents of the tenant's nodes promptly, with the new bundle.pem; another tenant's nodes keep theirs", async () => {
      const [one, two, three] = [await documentOf(n1), await documentOf(n2), await documentOf(n3)];
      const prepared = await a.inject({ method: "POST", url: `/v1/tenants/${t.tenant}/ca/prepare`, headers: bearer(t.token) });
      expect(prepared.statusCode, prepared.body).toBe(200);
      const pem = (await b.inject({ url: `/v1/tenants/${t.tenant}/bundle.pem` })).body;
      expect(pem.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
      for (const [node, before] of [[n1, one], [n2, two]] as const) {
        const after = await changedFrom(node, before.etag);
        expect(after.doc.bundles).toEqual([{ trustDomain: td[t.tenant], caPem: pem }]);
        expect(after.doc.remotes).toEqual(before.doc.remotes);
      }
      await unchanged(n3, three.etag);
      // And the other way: u's rotation leaves t's nodes alone.
      const [oneNow, threeNow] = [await documentOf(n1), await documentOf(n3)];
      expect((await a.inject({ method: "POST", url: `/v1/tenants/${u.tenant}/ca/prepare`, headers: bearer(u.token) })).statusCode).toBe(200);
      const rotated = await changedFrom(n3, threeNow.etag);
      expect(rotated.doc.bundles[0]!.caPem).toBe((await b.inject({ url: `/v1/tenants/${u.tenant}/bundle.pem` })).body);
      await unchanged(n1, oneNow.etag);
    });

    it("a peer's new transport endpoint changes the documents naming it promptly; the same endpoint again takes no revision", async () => {
      const [one, three] = [await documentOf(n1), await documentOf(n3)];
      const revision = await currentRevision(a);
      expect((await report(n2, endpoint.n2)).statusCode).toBe(200);
      expect(await currentRevision(a)).toBe(revision);
      await unchanged(n1, one.etag);
      const moved = "198.18.245.22:15008";
      const res = await report(n2, moved);
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().transport).toEqual({ endpoint: moved, state: "running" });
      const after = await changedFrom(n1, one.etag);
      expect(after.doc.remotes).toEqual([{ address: addr["web-1"], spiffeId: spiffe(t.tenant, "web"), node: moved }]);
      // Node 3 names nobody on node 2.
      await unchanged(n3, three.etag);
      // A transport switched off: node 2 is nobody's remote; back on, it is again.
      expect((await report(n2, null)).statusCode).toBe(200);
      const off = await changedFrom(n1, after.etag);
      expect(off.doc.remotes).toEqual([]);
      expect((await report(n2, endpoint.n2)).statusCode).toBe(200);
      expect((await changedFrom(n1, off.etag)).doc.remotes).toEqual([{ address: addr["web-1"], spiffeId: spiffe(t.tenant, "web"), node: endpoint.n2 }]);
    });

    it("a workload moving to another node changes the documents of the nodes it left, joined and talks to", async () => {
      const [one, two, three] = [await documentOf(n1), await documentOf(n2), await documentOf(n3)];
      addr["client-1"] = freshAddress(n3.podCidr);
      await mustPut(a, t.token, t.tenant, "workloads/client-1", { identity: "client", node: n3.name, addresses: [addr["client-1"]] });
      // Node 2's web now expects the client from node 3's transport.
      const toTwo = await changedFrom(n2, two.etag);
      expect(toTwo.doc.remotes).toEqual([{ address: addr["client-1"], spiffeId: spiffe(t.tenant, "client"), node: endpoint.n3 }]);
      // Node 1 hosts nothing of t now.
      expect((await changedFrom(n1, one.etag)).doc).toEqual({ bundles: [], remotes: [], allow: [] });
      // Node 3 carries t's client to web-1 beside u's pair, each under its own trust domain.
      const toThree = await changedFrom(n3, three.etag);
      expect(toThree.doc.bundles.map((x) => x.trustDomain).sort()).toEqual([td[t.tenant], td[u.tenant]].sort());
      expect(toThree.doc.remotes).toEqual([{ address: addr["web-1"], spiffeId: spiffe(t.tenant, "web"), node: endpoint.n2 }]);
      expect(toThree.doc.allow.map((p) => p.destination)).toEqual([spiffe(u.tenant, "uweb")]);
    });

    it("a node's credential gets 404 for another node's document, a matching ETag included, and an unknown node 404s on the cached path", async () => {
      const theirs = await documentOf(n2);
      // A 304 would confirm another node's ETag: an oracle on its document.
      expectProblem(await poll(n2, theirs.etag, n1.credential), 404);
      expectProblem(await poll(n2, undefined, n1.credential), 404);
      for (const etag of [undefined, theirs.etag]) {
        const res = await b.inject({ url: `/v1/nodes/no-such-node/transport`, headers: { ...operator, ...(etag === undefined ? {} : { "if-none-match": etag }) } });
        expectProblem(res, 404);
      }
      expectProblem(await b.inject({ url: `/v1/nodes/${n2.name}/transport`, headers: { ...bearer(t.token), "if-none-match": theirs.etag } }), 403);
      // A deleted node's cached document is not served: its credential stops working and the operator gets 404.
      const gone = await registeredNode(a);
      await mustPut(a, t.token, t.tenant, "workloads/web-2", { identity: "web", node: gone.name, addresses: [freshAddress(gone.podCidr)] });
      const held = await until("the new node on b", PROMPTLY_MS, async () => {
        const r = await b.inject({ url: `/v1/nodes/${gone.name}/transport`, headers: operator });
        return r.statusCode === 200 ? (r.headers.etag as string) : undefined;
      });
      expect((await a.inject({ method: "DELETE", url: `/v1/nodes/${gone.name}`, headers: operator })).statusCode).toBe(204);
      await until("b to forget the deleted node", PROMPTLY_MS, async () => {
        const r = await b.inject({ url: `/v1/nodes/${gone.name}/transport`, headers: { ...operator, "if-none-match": held } });
        return r.statusCode === 404 ? true : undefined;
      });
    });

    it.runIf(backend === "postgres")("a replica started after all of it (the follower's full load: rotated CAs, moved endpoints and workloads) serves the same documents as one that followed each change", async () => {
      const c = await startApi(backend, { revocationPollMs: 3_600_000 });
      try {
        for (const node of [n1, n2, n3]) {
          const followed = await documentOf(node);
          const loaded = await c.inject({ url: `/v1/nodes/${node.name}/transport`, headers: { ...bearer(node.credential), "if-none-match": followed.etag } });
          expect(loaded.statusCode, `${node.name}: ${loaded.body}`).toBe(304);
        }
      } finally {
        await c.close();
      }
    });
  });
});
