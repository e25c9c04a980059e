/**
 * Addresses belong to someone: an attacker's view.
 *
 * A service VIP or a workload address compiles into the maps of nodes that
 * other tenants share, where the socket load balancer redirects connections
 * to it. A tenant's write token must not claim an address that means
 * something to every host (the metadata service, loopback, a public
 * resolver...), another node's addresses, or an address another tenant holds;
 * and nodes get disjoint pod CIDR blocks.
 */
import { randomInt } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { nodes } from "../../api/src/db/schema.ts";
import { assignMissingPodCidrs } from "../../api/src/mesh/nodes.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { freshVip, identity, mustPut, putResource, tenantChanges } from "../support/mesh.ts";
import { addressIn, registeredNode } from "../support/nodes.ts";
import { eq } from "drizzle-orm";

/** Addresses that mean something to every host: nobody's VIP, nobody's workload address. */
const HOSTILE = ["8.8.8.8", "169.254.169.254", "127.0.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255"];

/**
 * A pod CIDR of this suite's own, 100.64.0.0/10 cut into /16s at random, so
 * that which block a node gets is predictable even on a Postgres other runs share.
 */
const privatePodCidr = () => `100.${64 + randomInt(0, 64)}.0.0/16`;

const blockOf = (cidr: string) => {
  const [base, len] = cidr.split("/") as [string, string];
  return { first: base.split(".").reduce((a, o) => a * 256 + Number(o), 0), length: Number(len) };
};

describe.each(BACKENDS)("addresses belong to someone, on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    const podCidr = privatePodCidr();
    let attacker: { tenant: string; token: string };
    let victim: { tenant: string; token: string };
    let mine: { name: string; credential: string; podCidr: string };
    let theirs: { name: string; credential: string; podCidr: string };
    beforeAll(async () => {
      app = await startApi(backend, { podCidr, podCidrNodePrefix: 24 });
      attacker = await tenantWithToken(app, ["write"]);
      victim = await tenantWithToken(app, ["write"]);
      mine = await registeredNode(app);
      theirs = await registeredNode(app);
      await identity(app, attacker.token, attacker.tenant, "web");
      await identity(app, victim.token, victim.tenant, "bank");
    });
    afterAll(async () => app?.close());

    /** Must be refused with this status on this field, and write nothing for either tenant. */
    async function refused(res: Promise<import("fastify").LightMyRequestResponse>, status: number, field: string) {
      const before = [await tenantChanges(app, attacker.tenant), await tenantChanges(app, victim.tenant)];
      const body = expectProblem(await res, status);
      expect(body.errors?.map((e) => e.field), JSON.stringify(body)).toEqual([field]);
      expect([await tenantChanges(app, attacker.tenant), await tenantChanges(app, victim.tenant)]).toEqual(before);
      return body;
    }
    const ports = [{ port: 80, protocol: "tcp", targetPort: 80 }];

    it.each(HOSTILE)("%s is no one's VIP: 422 body.vip", async (address) => {
      await refused(putResource(app, attacker.token, attacker.tenant, "services/grab", { vip: address, ports, backends: { explicit: [] } }), 422, "body.vip");
      expect((await app.inject({ url: `/v1/tenants/${attacker.tenant}/services/grab`, headers: bearer(attacker.token) })).statusCode).toBe(404);
    });

    it.each(HOSTILE)("%s is no one's workload address: 422 on the address's index", async (address) => {
      const spec = { identity: "web", node: mine.name, addresses: [addressIn(mine.podCidr), address] };
      const body = await refused(putResource(app, attacker.token, attacker.tenant, "workloads/grab", spec), 422, "body.addresses.1");
      expect(body.detail).toContain(address);
      // Nor on a dry run.
      await refused(putResource(app, attacker.token, attacker.tenant, "workloads/grab", spec, { query: { dryRun: "true" } }), 422, "body.addresses.1");
    });

    // 8.8.8.8 is an ordinary external backend: only it is not special-use.
    it.each(HOSTILE.filter((a) => a !== "8.8.8.8"))("%s is no one's backend address: 422 on the backend", async (address) => {
      const backends = { explicit: [{ address: "203.0.113.7", weight: 1 }, { address, weight: 1 }] };
      await refused(putResource(app, attacker.token, attacker.tenant, "services/backdoor", { ports, backends }), 422, "body.backends.explicit.1.address");
    });

    it("a VIP outside the service CIDR (or its network and broadcast addresses) is refused: 422 body.vip", async () => {
      for (const vip of ["203.0.113.10", "192.168.1.1", addressIn(mine.podCidr), "198.19.0.0", "198.19.255.255", "198.20.0.1"]) {
        const body = await refused(putResource(app, attacker.token, attacker.tenant, "services/outside", { vip, ports, backends: { explicit: [] } }), 422, "body.vip");
        expect(body.errors![0]!.message, vip).toMatch(/WEFT_SERVICE_CIDR/);
      }
      // Inside it, it is an ordinary VIP.
      expect((await putResource(app, attacker.token, attacker.tenant, "services/inside", { vip: freshVip(), ports, backends: { explicit: [] } })).statusCode).toBe(201);
    });

    it("a workload address in another node's block, or outside every block, is refused: 422 on its index", async () => {
      await refused(
        putResource(app, attacker.token, attacker.tenant, "workloads/elsewhere", { identity: "web", node: mine.name, addresses: [addressIn(theirs.podCidr)] }),
        422,
        "body.addresses.0",
      );
      for (const address of ["192.0.2.7", freshVip()]) {
        await refused(putResource(app, attacker.token, attacker.tenant, "workloads/elsewhere", { identity: "web", node: mine.name, addresses: [address] }), 422, "body.addresses.0");
      }
      // The block's own network and broadcast addresses are no host's.
      const { first } = blockOf(mine.podCidr);
      const dotted = (n: number) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
      for (const address of [dotted(first), dotted(first + 255)]) {
        await refused(putResource(app, attacker.token, attacker.tenant, "workloads/edge", { identity: "web", node: mine.name, addresses: [address] }), 422, "body.addresses.0");
      }
      // In its own node's block, the same tenant places it.
      expect((await putResource(app, attacker.token, attacker.tenant, "workloads/home", { identity: "web", node: mine.name, addresses: [addressIn(mine.podCidr)] })).statusCode).toBe(201);
    });

    it("an address or VIP another tenant holds: 409, naming neither the tenant nor its resource", async () => {
      const held = addressIn(theirs.podCidr);
      await mustPut(app, victim.token, victim.tenant, "workloads/bank-teller", { identity: "bank", node: theirs.name, addresses: [held] });
      const vip = freshVip();
      await mustPut(app, victim.token, victim.tenant, "services/bank-frontend", { vip, ports, backends: { explicit: [] } });

      const onAddress = await refused(
        putResource(app, attacker.token, attacker.tenant, "workloads/squat", { identity: "web", node: theirs.name, addresses: [held] }),
        409,
        "body.addresses.0",
      );
      const onVip = await refused(putResource(app, attacker.token, attacker.tenant, "services/squat", { vip, ports, backends: { explicit: [] } }), 409, "body.vip");
      for (const body of [onAddress, onVip]) {
        const text = JSON.stringify(body);
        for (const secret of [victim.tenant, "bank-teller", "bank-frontend", "bank"]) expect(text).not.toContain(secret);
      }
      // The holder keeps them.
      const teller = await app.inject({ url: `/v1/tenants/${victim.tenant}/workloads/bank-teller`, headers: bearer(victim.token) });
      expect(teller.json().addresses).toEqual([held]);
    });

    it("two nodes get distinct blocks of the pod CIDR, of the configured size, shown on the node and in the list", async () => {
      expect(mine.podCidr).not.toBe(theirs.podCidr);
      for (const n of [mine, theirs]) {
        const block = blockOf(n.podCidr);
        const pool = blockOf(podCidr);
        expect(block.length).toBe(24);
        expect(block.first >= pool.first && block.first < pool.first + 2 ** 16, n.podCidr).toBe(true);
        expect((await app.inject({ url: `/v1/nodes/${n.name}`, headers: bearer(n.credential) })).json().podCidr).toBe(n.podCidr);
      }
      const listed = (await app.inject({ url: "/v1/nodes?limit=1000", headers: operator })).json().items as { name: string; podCidr: string | null }[];
      const shown = listed.filter((n) => n.podCidr !== null).map((n) => n.podCidr);
      expect(new Set(shown).size).toBe(shown.length);
      expect(listed.find((n) => n.name === mine.name)?.podCidr).toBe(mine.podCidr);
    });

    it("a deleted node's block is handed out again", async () => {
      const leaving = await registeredNode(app);
      expect((await app.inject({ method: "DELETE", url: `/v1/nodes/${leaving.name}`, headers: operator })).statusCode).toBe(204);
      const next = await registeredNode(app);
      expect(next.podCidr).toBe(leaving.podCidr);
      expect([mine.podCidr, theirs.podCidr]).not.toContain(next.podCidr);
    });

    it("an exhausted pod CIDR answers a clear problem at registration, and a deleted node frees room", async () => {
      // A pod CIDR of four /24s, of its own.
      const small = `100.${64 + randomInt(0, 64)}.${4 * randomInt(0, 64)}.0/22`;
      const tight = await startApi(backend, { podCidr: small, podCidrNodePrefix: 24 });
      try {
        const made: string[] = [];
        let last: Awaited<ReturnType<typeof tight.inject>> | undefined;
        for (let i = 0; i < 5; i++) {
          const token = (await tight.inject({ method: "POST", url: "/v1/join-tokens", headers: operator, payload: {} })).json().token as string;
          last = await tight.inject({ method: "POST", url: "/v1/nodes/register", payload: { joinToken: token, name: `tight-${randomInt(0, 2 ** 40)}`, zone: "z" } });
          if (last.statusCode !== 201) break;
          made.push(last.json().node.name as string);
        }
        expect(made.length).toBeLessThanOrEqual(4);
        const body = expectProblem(last!, 503);
        expect(body.detail).toContain("WEFT_POD_CIDR");
        for (const name of made) await tight.inject({ method: "DELETE", url: `/v1/nodes/${name}`, headers: operator });
      } finally {
        await tight.close();
      }
    });

    it("a node registered before blocks existed gets one at start-up", async () => {
      const legacy = await registeredNode(app);
      await app.weft.db.update(nodes).set({ podCidr: null }).where(eq(nodes.name, legacy.name));
      expect((await app.inject({ url: `/v1/nodes/${legacy.name}`, headers: operator })).json().podCidr).toBeNull();
      const assigned = await assignMissingPodCidrs(app.weft.db, { podCidr, podCidrNodePrefix: 24, serviceCidr: "198.19.0.0/16" }, { info() {}, warn() {} });
      const now = (await app.inject({ url: `/v1/nodes/${legacy.name}`, headers: operator })).json().podCidr as string | null;
      expect(now).not.toBeNull();
      // Its old block, the lowest free one of this suite's pod CIDR; on a shared Postgres another suite's
      // replica starting meanwhile may have assigned it first, from its own pod CIDR.
      if (assigned.some((a) => a.node === legacy.name)) expect(now).toBe(legacy.podCidr);
      const listed = (await app.inject({ url: "/v1/nodes?limit=1000", headers: operator })).json().items as { podCidr: string | null }[];
      expect(listed.filter((n) => n.podCidr === now)).toHaveLength(1);
      // Run again (another replica starting): nothing left to do for it.
      const again = await assignMissingPodCidrs(app.weft.db, { podCidr, podCidrNodePrefix: 24, serviceCidr: "198.19.0.0/16" }, { info() {}, warn() {} });
      expect(again.find((a) => a.node === legacy.name)).toBeUndefined();
    });
  });
});
