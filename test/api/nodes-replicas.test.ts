// Issue 5, proof: "two API processes on one real Postgres: a write on one
// wakes a long poll held by the other within 1 s". Two real server processes;
// the only path between them is Postgres (LISTEN/NOTIFY and the change log).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPERATOR_TOKEN, skipBackend, uniqueName } from "../support/api.ts";
import { startApiProcess, type ApiProcess } from "../support/api-process.ts";
import { uniqueAddress } from "../support/nodes.ts";

const op = { authorization: `Bearer ${OPERATOR_TOKEN}`, "content-type": "application/json" };

async function call(base: string, method: string, path: string, headers: Record<string, string>, body?: unknown) {
  const res = await fetch(`${base}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await res.text();
  if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : undefined };
}

describe.skipIf(skipBackend("postgres"))("two API processes on one Postgres", () => {
  let a: ApiProcess;
  let b: ApiProcess;
  beforeAll(async () => {
    const env = { DATABASE_URL: process.env.DATABASE_URL!, WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN };
    // One after the other: both would run the migrations at once otherwise.
    a = await startApiProcess(env);
    b = await startApiProcess(env);
  }, 120_000);
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it("a write on one wakes a long poll held by the other within 1 s", async () => {
    const tenant = uniqueName("rep");
    await call(a.base, "POST", "/v1/tenants", op, { name: tenant });
    await call(a.base, "PUT", `/v1/tenants/${tenant}/identities/web`, op, { path: "/web" });
    const { token } = (await call(a.base, "POST", "/v1/join-tokens", op, {})).json;
    const name = uniqueName("node");
    const { credential, node: registered } = (await call(a.base, "POST", "/v1/nodes/register", { "content-type": "application/json" }, { joinToken: token, name, zone: "z" })).json;
    await call(a.base, "PUT", `/v1/tenants/${tenant}/workloads/web-1`, op, { identity: "web", node: name, addresses: [uniqueAddress(registered.podCidr)] });

    const node = { authorization: `Bearer ${credential}` };
    const first = await call(b.base, "GET", `/v1/nodes/${name}/datapath`, node);
    const etag = first.headers.get("etag")!;
    expect(etag).toBeTruthy();

    // Held on B: nothing has changed for this node, so it must not answer yet.
    let answeredAt = 0;
    const poll = fetch(`${b.base}/v1/nodes/${name}/datapath?wait=30`, { headers: { ...node, "if-none-match": etag } }).then(async (res) => {
      answeredAt = performance.now();
      return { status: res.status, body: (await res.json()) as { hash: string; revision: number }, etag: res.headers.get("etag") };
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(answeredAt, "the poll answered before any write").toBe(0);

    // The write goes to A; B hears of it only through Postgres.
    const sentAt = performance.now();
    await call(a.base, "PUT", `/v1/tenants/${tenant}/workloads/web-2`, op, { identity: "web", node: name, addresses: [uniqueAddress(registered.podCidr)] });
    const woken = await poll;
    const latencyMs = answeredAt - sentAt;
    expect(woken.status).toBe(200);
    expect(woken.etag).not.toBe(etag);
    expect(woken.body.hash).not.toBe(first.json.hash);
    expect(woken.body.revision).toBeGreaterThan(first.json.revision);
    expect(latencyMs).toBeLessThan(1000);
    console.log(`cross-replica wake: ${latencyMs.toFixed(1)} ms from sending the write on A to the poll's answer on B`);
  }, 60_000);
});
