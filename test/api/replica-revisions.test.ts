// Issue 20: writes on two API processes at once, on one fresh Postgres. The
// revision counter's row lock orders them (db/transactions.ts): no revision
// is handed out twice or lost, the followers of both replicas converge on the
// same state, and capacity admission stays exact across replicas (two writes
// that each fit, but not together, are never both admitted).
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshPostgres, OPERATOR_TOKEN, skipBackend, uniqueName } from "../support/api.ts";
import { startApiProcess, type ApiProcess } from "../support/api-process.ts";
import { addressIn } from "../support/nodes.ts";

const op = { authorization: `Bearer ${OPERATOR_TOKEN}`, "content-type": "application/json" };
/** Each node's endpoint map holds this many entries on both replicas. */
const ENDPOINT_CAPACITY = 6;

async function call(base: string, method: string, path: string, headers: Record<string, string>, body?: unknown) {
  const res = await fetch(`${base}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await res.text();
  return { status: res.status, etag: res.headers.get("etag"), json: text ? JSON.parse(text) : undefined };
}

async function must(base: string, method: string, path: string, headers: Record<string, string>, body?: unknown) {
  const res = await call(base, method, path, headers, body);
  if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(res.json)}`);
  return res;
}

describe.skipIf(skipBackend("postgres"))("concurrent writes on two API processes", () => {
  let database: Awaited<ReturnType<typeof freshPostgres>>;
  let replicas: ApiProcess[] = [];
  let db: pg.Client;
  beforeAll(async () => {
    database = await freshPostgres("weft_replica_revisions");
    const env = { DATABASE_URL: database.url, WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN, WEFT_MAP_CAPACITY_ENDPOINT: String(ENDPOINT_CAPACITY) };
    // One after the other: both would run the migrations at once otherwise.
    replicas.push(await startApiProcess(env));
    replicas.push(await startApiProcess(env));
    db = new pg.Client({ connectionString: database.url });
    await db.connect();
  }, 120_000);
  afterAll(async () => {
    await db?.end();
    await Promise.all(replicas.map((r) => r.stop()));
    replicas = [];
    await database?.drop();
  });

  const register = async (base: string) => {
    const { json: token } = await must(base, "POST", "/v1/join-tokens", op, {});
    const name = uniqueName("node");
    const { json } = await must(base, "POST", "/v1/nodes/register", { "content-type": "application/json" }, { joinToken: token.token, name, zone: "z" });
    return { name, credential: json.credential as string, podCidr: json.node.podCidr as string };
  };

  it("hands out every revision once, loses no write, and both followers converge on the same state", async () => {
    const [a, b] = replicas.map((r) => r.base) as [string, string];
    const tenant = uniqueName("rev");
    await must(a, "POST", "/v1/tenants", op, { name: tenant });
    await must(b, "PUT", `/v1/tenants/${tenant}/identities/web`, op, { path: "/web" });
    // Nodes registered on both replicas at once: each gets a pod CIDR block of its own.
    const nodes = await Promise.all(Array.from({ length: 8 }, (_, i) => register(i % 2 === 0 ? a : b)));
    expect(new Set(nodes.map((n) => n.podCidr)).size).toBe(nodes.length);
    // Two workloads per node, written through alternating replicas, all at once.
    const puts = nodes.flatMap((n, i) =>
      [0, 1].map((k) => ({ base: (i + k) % 2 === 0 ? a : b, name: `w-${i}-${k}`, node: n.name, address: addressIn(n.podCidr) })),
    );
    const answers = await Promise.all(
      puts.map((p) => must(p.base, "PUT", `/v1/tenants/${tenant}/workloads/${p.name}`, op, { identity: "web", node: p.node, addresses: [p.address] })),
    );
    const revisions = answers.map((r) => Number(JSON.parse(r.etag!)));
    expect(new Set(revisions).size, "a revision handed out twice").toBe(revisions.length);

    // The change log holds each acknowledged write at its revision; revisions run from 1 to the counter with no gap.
    for (const [i, p] of puts.entries()) {
      const { rows } = await db.query("SELECT revision FROM change_log WHERE kind = 'workload' AND name = $1", [p.name]);
      expect(rows.map((r) => Number(r.revision))).toEqual([revisions[i]]);
    }
    const { rows: counter } = await db.query("SELECT revision FROM revision_counter");
    const { rows: logged } = await db.query("SELECT DISTINCT revision FROM change_log ORDER BY revision");
    const head = Number(counter[0].revision);
    expect(logged.map((r) => Number(r.revision))).toEqual(Array.from({ length: head }, (_, i) => i + 1));

    // Each replica serves every node the same state, with every address of the tenant in its ipcache.
    const addresses = puts.map((p) => `${p.address}/32`).sort();
    for (const n of nodes) {
      const headers = { authorization: `Bearer ${n.credential}` };
      const states = await Promise.all([a, b].map((base) => must(base, "GET", `/v1/nodes/${n.name}/datapath`, headers)));
      expect(states[0]!.json.hash).toBe(states[1]!.json.hash);
      // Tenant 0: the nodes' L7 proxy addresses, in the ipcache of nodes hosting a tenant with routes.
      const ipcache = states[0]!.json.maps.ipcache as { key: { prefix: string }; value: { tenant: number } }[];
      const prefixes = ipcache.filter((e) => e.value.tenant !== 0).map((e) => e.key.prefix).sort();
      expect(prefixes).toEqual(addresses);
    }
  });

  it("admits exactly the workloads a node's map has room for when both replicas write to it at once", async () => {
    const [a, b] = replicas.map((r) => r.base) as [string, string];
    const tenant = uniqueName("cap");
    await must(a, "POST", "/v1/tenants", op, { name: tenant });
    await must(a, "PUT", `/v1/tenants/${tenant}/identities/web`, op, { path: "/web" });
    const node = await register(b);
    const tries = Array.from({ length: 16 }, (_, i) => ({ base: i % 2 === 0 ? a : b, name: `w-${i}`, address: addressIn(node.podCidr) }));
    const answers = await Promise.all(
      tries.map((t) => call(t.base, "PUT", `/v1/tenants/${tenant}/workloads/${t.name}`, op, { identity: "web", node: node.name, addresses: [t.address] })),
    );
    const statuses = answers.map((r) => r.status).sort();
    expect(statuses).toEqual([...Array(ENDPOINT_CAPACITY).fill(201), ...Array(16 - ENDPOINT_CAPACITY).fill(422)]);
    for (const r of answers.filter((x) => x.status === 422)) {
      expect(r.json.errors).toEqual([{ field: "maps.endpoint", message: `node ${node.name}: needs ${ENDPOINT_CAPACITY + 1} entries, has room for ${ENDPOINT_CAPACITY}` }]);
    }
    // What was refused left nothing behind: the node holds exactly the admitted ones, on both replicas.
    const headers = { authorization: `Bearer ${node.credential}` };
    for (const base of [a, b]) {
      const { json } = await must(base, "GET", `/v1/nodes/${node.name}/datapath`, headers);
      expect(json.maps.endpoint).toHaveLength(ENDPOINT_CAPACITY);
    }
    const { rows } = await db.query("SELECT count(*)::int AS n FROM workloads WHERE node = $1", [node.name]);
    expect(rows[0].n).toBe(ENDPOINT_CAPACITY);
  });
});
