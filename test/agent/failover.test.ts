/**
 * Issue #20 item 2, proof: an agent on three API replicas over one Postgres
 * survives kill -9 of the replica it polls. The agent's loop runs in this
 * process against in-memory maps (no kernel); the replicas are real server
 * processes. A write acknowledged by the killed replica just before the
 * kill, and the writes that continue on another replica after it, all
 * reach the agent; it converges to the node's hash as the API computes it,
 * and its record of revision steps has no gap: every delta starts at the
 * revision before it, and a full state comes only after a 410.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentLoop, type RevisionStep } from "../../nodeagent/src/agent/agent.ts";
import { ApiClient } from "../../nodeagent/src/agent/client.ts";
import { EndpointSet } from "../../nodeagent/src/agent/endpoints.ts";
import { AgentMetrics } from "../../nodeagent/src/agent/metrics.ts";
import { freshPostgres, OPERATOR_TOKEN, skipBackend, uniqueName } from "../support/api.ts";
import { startApiProcess, type ApiProcess } from "../support/api-process.ts";
import { addressIn } from "../support/nodes.ts";
import { untilHolds } from "../support/until.ts";
import { kernelEntries } from "./fixtures.ts";
import { memoryMaps } from "./scripted.ts";

const op = { authorization: `Bearer ${OPERATOR_TOKEN}`, "content-type": "application/json" };

async function call(base: string, method: string, path: string, headers: Record<string, string>, body?: unknown) {
  const res = await fetch(`${base}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await res.text();
  if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

/** The steps that break the chain: a delta or advance not starting at the revision before it, a full state not after a 410. */
function gaps(steps: readonly RevisionStep[]): string[] {
  const out: string[] = [];
  steps.forEach((s, i) => {
    if (i === 0) {
      if (s.kind !== "full" || s.after !== "start") out.push(`#0 is ${s.kind} (${s.after ?? ""}), not the first full state`);
      return;
    }
    const before = steps[i - 1]!;
    if (s.kind === "full" && s.after !== "gone") out.push(`#${i} is a full state after ${s.after}, not after a 410`);
    if (s.kind !== "full" && s.base !== before.revision) out.push(`#${i} ${s.kind} from ${s.base}, but the agent held ${before.revision}`);
  });
  return out;
}

describe.skipIf(skipBackend("postgres"))("an agent on three API replicas", () => {
  let db: Awaited<ReturnType<typeof freshPostgres>>;
  const replicas: ApiProcess[] = [];
  beforeAll(async () => {
    db = await freshPostgres("failover");
    const env = { DATABASE_URL: db.url, WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN };
    // One after the other: all would run the migrations at once otherwise.
    for (let i = 0; i < 3; i++) replicas.push(await startApiProcess(env));
  }, 180_000);
  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await db?.drop();
  });

  it("survives kill -9 of the replica it polls: no revision skipped, no acknowledged write lost, the latest hash reached", async () => {
    const [first, second] = replicas as [ApiProcess, ApiProcess, ApiProcess];
    const tenant = uniqueName("fo");
    await call(first.base, "POST", "/v1/tenants", op, { name: tenant });
    await call(first.base, "PUT", `/v1/tenants/${tenant}/identities/web`, op, { path: "/web" });
    const { token } = await call(first.base, "POST", "/v1/join-tokens", op, {});
    const name = uniqueName("node");
    const endpoints = new EndpointSet(replicas.map((r) => r.base));
    const client = new ApiClient(endpoints);
    const registered = await client.register({ joinToken: token, name, zone: "z" });
    client.setCredential(registered.credential);
    const block = registered.node.podCidr!;
    const written: string[] = [];
    const putWorkload = async (base: string) => {
      const address = addressIn(block);
      await call(base, "PUT", `/v1/tenants/${tenant}/workloads/w-${written.length}`, op, { identity: "web", node: name, addresses: [address] });
      written.push(address);
    };
    await putWorkload(first.base);

    const maps = memoryMaps();
    const metrics = new AgentMetrics();
    metrics.watchEndpoints(endpoints);
    const loop = new AgentLoop({ node: name, client, maps, metrics, waitSeconds: 30, backoff: { initialMs: 200, maxMs: 1_000 }, log: () => undefined });
    const abort = new AbortController();
    const running = loop.run(abort.signal);
    try {
      const apiHash = async (base: string) => ((await call(base, "GET", `/v1/nodes/${name}/datapath`, { authorization: `Bearer ${registered.credential}` })) as { hash: string }).hash;
      const agentAddresses = () => kernelEntries(maps.endpoint, "endpoint").map((e) => e.key.address);
      await untilHolds("the agent applies the first state", async () => ({ agent: loop.applied?.hash, api: await apiHash(first.base) }), (h) => h.agent === h.api, 20_000);
      expect(agentAddresses()).toContain(written[0]);
      // Sticky on the first endpoint, its long poll held there.
      expect(endpoints.active?.base).toBe(first.base);

      // A few writes the agent follows on the first replica, then one acknowledged there and at once the kill.
      for (let i = 0; i < 3; i++) {
        await putWorkload(first.base);
        await untilHolds(`the agent applies write ${written.length}`, agentAddresses, (a) => a.includes(written.at(-1)!), 10_000);
      }
      await putWorkload(first.base);
      const acknowledgedByKilled = written.at(-1)!;
      first.child.kill("SIGKILL");
      const killedAt = performance.now();

      // Writes continue on the second replica; the agent lands on another replica and follows them.
      await putWorkload(second.base);
      await untilHolds("the agent applies the write made after the kill", agentAddresses, (a) => a.includes(written.at(-1)!), 5_000, 50);
      const landedMs = performance.now() - killedAt;
      for (let i = 0; i < 3; i++) {
        await putWorkload(second.base);
        await untilHolds(`the agent applies write ${written.length}`, agentAddresses, (a) => a.includes(written.at(-1)!), 5_000, 50);
      }

      const latest = await apiHash(second.base);
      await untilHolds("the agent converges to the API's hash", () => loop.applied?.hash, (h) => h === latest, 10_000);
      const held = agentAddresses();
      expect(held).toContain(acknowledgedByKilled);
      expect(written.filter((a) => !held.includes(a))).toEqual([]);
      expect(endpoints.active?.base).not.toBe(first.base);
      expect(endpoints.switches).toBeGreaterThanOrEqual(1);
      expect(await metrics.registry.metrics()).toMatch(/^weft_agent_api_endpoint_switches_total [1-9]/m);

      expect(gaps(loop.revisions), JSON.stringify(loop.revisions)).toEqual([]);
      // Revisions only move forward, and the last step carries the latest hash.
      expect(loop.revisions.at(-1)!.hash).toBe(latest);
      for (let i = 1; i < loop.revisions.length; i++) expect(loop.revisions[i]!.revision).toBeGreaterThanOrEqual(loop.revisions[i - 1]!.revision);
      console.log(`failover: the first write after kill -9 applied ${landedMs.toFixed(0)} ms after the kill; steps ${loop.revisions.map((s) => `${s.kind}:${s.base ?? ""}->${s.revision}`).join(" ")}`);
      expect(landedMs).toBeLessThan(5_000);
    } finally {
      abort.abort();
      await running;
      await endpoints.close();
    }
  }, 120_000);
});
