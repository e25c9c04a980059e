// Security issue: identities choose their nodes by node labels
// (nodeSelector), but a node's labels were whatever the registering party
// sent to POST /v1/nodes/register, and join tokens were not tied to labels:
// anyone holding a join token could register a node labelled pool=pci and be
// selected by a PCI-only identity, obtaining its SVIDs and declaring its
// workloads. The operator now fixes a node's labels on the join token; the
// registration request can only repeat them. This is the attacker's view:
// the attacker holds a join token and nothing else.
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { joinTokens, nodes } from "../../api/src/db/schema.ts";
import { makeCsr, tempDir } from "../ca/helpers.ts";
import { BACKENDS, backendDatabase, bearer, currentRevision, expectProblem, skipBackend, startApi, tenantWithToken, uniqueName } from "../support/api.ts";
import { addressIn, joinToken } from "../support/nodes.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const PCI = { pool: "pci" };
type Node = { name: string; credential: string; podCidr: string };

describe.each(BACKENDS)("join tokens fix node labels on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    beforeAll(async () => {
      app = await startApi(backend);
    });
    afterAll(async () => app?.close());

    const register = (token: string, name: string, extra: Record<string, unknown> = {}) =>
      app.inject({ method: "POST", url: "/v1/nodes/register", payload: { joinToken: token, name, zone: "zone-a", ...extra } });
    const registered = (res: Awaited<ReturnType<typeof register>>): Node => {
      expect(res.statusCode, res.body).toBe(201);
      const body = res.json() as { node: { name: string; podCidr: string }; credential: string };
      return { name: body.node.name, credential: body.credential, podCidr: body.node.podCidr };
    };
    const usedAt = async (id: string) => (await app.weft.db.select().from(joinTokens).where(eq(joinTokens.id, id)))[0]!.usedAt;
    const labelsOf = async (name: string) => (await app.weft.db.select().from(nodes).where(eq(nodes.name, name)))[0]?.labels;

    it("a token without labels cannot register a node claiming {pool: pci}: 403 on body.labels, nothing written, the token not spent", async () => {
      const unlabelled = await joinToken(app);
      expect(unlabelled.labels).toEqual({});
      const name = uniqueName("attacker");
      const revision = await currentRevision(app);
      const refused = expectProblem(await register(unlabelled.token, name, { labels: PCI }), 403);
      expect(refused.errors).toEqual([{ field: "body.labels", message: expect.any(String) }]);
      expect(await currentRevision(app)).toBe(revision);
      expect(await labelsOf(name)).toBeUndefined();
      expect(await usedAt(unlabelled.id)).toBeNull();

      // The same token, used as it allows, registers a node with no labels.
      const node = registered(await register(unlabelled.token, name));
      expect(await labelsOf(node.name)).toEqual({});
      expect(await usedAt(unlabelled.id)).not.toBeNull();
    });

    it("a token with {pool: pci} registers a node with exactly those labels; other labels with it are refused", async () => {
      const pci = await joinToken(app, { labels: PCI });
      expect(pci.labels).toEqual(PCI);
      const name = uniqueName("pci");
      for (const labels of [{ pool: "pci", tier: "gold" }, { pool: "dev" }, {}]) {
        const refused = expectProblem(await register(pci.token, name, { labels }), 403);
        expect(refused.errors?.map((e) => e.field), JSON.stringify(labels)).toEqual(["body.labels"]);
      }
      expect(await usedAt(pci.id)).toBeNull();
      // As the agent registers: no labels in the request, the token's apply.
      const res = await register(pci.token, name);
      const node = registered(res);
      expect(res.json().node.labels).toEqual(PCI);
      expect(await labelsOf(node.name)).toEqual(PCI);

      // Sending exactly the token's labels is accepted too.
      const again = await joinToken(app, { labels: PCI });
      expect(registered(await register(again.token, uniqueName("pci"), { labels: { pool: "pci" } }))).toBeTruthy();
    });

    it("end to end: only a node from a pci-labelled token may self-register and obtain SVIDs for a PCI-only identity", async () => {
      const t = await tenantWithToken(app, ["admin"]);
      const made = await app.inject({
        method: "PUT",
        url: `/v1/tenants/${t.tenant}/identities/card-vault`,
        headers: bearer(t.token),
        payload: { path: "/ns/pci/sa/card-vault", nodeSelector: PCI, allowNodeRegistration: true },
      });
      expect([200, 201], made.body).toContain(made.statusCode);

      // The attacker's token carries no labels: claiming pci is refused, so it gets a node without them.
      const stolen = await joinToken(app);
      const attackerName = uniqueName("attacker");
      expectProblem(await register(stolen.token, attackerName, { labels: PCI }), 403);
      const attacker = registered(await register(stolen.token, attackerName));

      const putWorkload = (node: Node, name: string) =>
        app.inject({
          method: "PUT",
          url: `/v1/tenants/${t.tenant}/workloads/${name}`,
          headers: bearer(node.credential),
          payload: { identity: "card-vault", node: node.name, addresses: [addressIn(node.podCidr)] },
        });
      const x509 = (node: Node) =>
        app.inject({
          method: "POST",
          url: `/v1/tenants/${t.tenant}/identities/card-vault/x509-svids`,
          headers: bearer(node.credential),
          payload: { csr: makeCsr(tmp.dir).csrPem },
        });

      const before = await currentRevision(app);
      for (const query of ["", "?dryRun=true"]) {
        const res = await app.inject({
          method: "PUT",
          url: `/v1/tenants/${t.tenant}/workloads/stolen${query}`,
          headers: bearer(attacker.credential),
          payload: { identity: "card-vault", node: attacker.name, addresses: [addressIn(attacker.podCidr)] },
        });
        expectProblem(res, 403);
      }
      expect(await currentRevision(app)).toBe(before);
      const svid = await x509(attacker);
      expect(svid.statusCode, svid.body).not.toBe(201);
      expectProblem(svid, svid.statusCode);

      // The node the operator labelled pci may.
      const pci = registered(await register((await joinToken(app, { labels: PCI })).token, uniqueName("pci")));
      const ok = await putWorkload(pci, uniqueName("vault"));
      expect(ok.statusCode, ok.body).toBe(201);
      const issued = await x509(pci);
      expect(issued.statusCode, issued.body).toBe(201);
    });
  });
});
