/**
 * bench/svid: X.509-SVID issuance through the HTTP API (authenticate, verify
 * the CSR, sign, record and audit in the database) against the raw limit of
 * the same machine in the same run: Node crypto's P-256 sign and verify, one
 * of each per certificate.
 *   npm run bench:svid     (PGlite in memory; set DATABASE_URL for Postgres)
 *   BENCH_SECONDS=10 BENCH_COUNT=20000 BENCH_CONCURRENCY=32 to change the bounds
 * Goal: issuance / raw limit >= 0.3.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import autocannon from "autocannon";
import { buildApp } from "../../api/src/app.ts";
import { measureLeafThroughput } from "../../api/src/ca/throughput.ts";
import { table } from "../support/load.ts";

const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const maxCount = Number(process.env.BENCH_COUNT ?? 20_000);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 32);
const POOL = 32;
const OPERATOR = "weft_op_bench-svid-operator-token-000000";

/** Distinct P-256 CSRs made by openssl, as workloads would make them; requests cycle through them. */
function csrPool(n: number): string[] {
  const dir = mkdtempSync(join(tmpdir(), "weft-bench-svid-"));
  try {
    return Array.from({ length: n }, (_, i) => {
      const key = join(dir, `${i}.key`);
      const csr = join(dir, `${i}.csr`);
      execFileSync("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key]);
      execFileSync("openssl", ["req", "-new", "-key", key, "-subj", "/O=bench", "-out", csr]);
      return readFileSync(csr, "utf8");
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const app = await buildApp({
  port: 0,
  host: "127.0.0.1",
  databaseUrl: process.env.DATABASE_URL || undefined,
  dataDir: undefined,
  operatorToken: OPERATOR,
  logLevel: "silent",
  trustDomainSuffix: "bench.weft",
  revocationPollMs: 60_000,
});

let issued = 0;
let elapsedMs = 0;
let p99Ms = 0;
try {
  await app.listen({ port: 0, host: "127.0.0.1" });
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  const api = async (method: string, path: string, token: string, body: unknown, expect: number) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    if (res.status !== expect) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return JSON.parse(text) as Record<string, unknown>;
  };
  const tenant = `bench-${process.pid}-${Date.now().toString(36)}`;
  await api("POST", "/v1/tenants", OPERATOR, { name: tenant }, 201);
  const { token } = (await api("POST", `/v1/tenants/${tenant}/tokens`, OPERATOR, { name: "bench", scopes: ["write"] }, 201)) as { token: string };
  await api("PUT", `/v1/tenants/${tenant}/identities/web`, token, { path: "/ns/bench/sa/web" }, 201);
  const csrs = csrPool(POOL);
  const url = `/v1/tenants/${tenant}/identities/web/x509-svids`;

  // autocannon, in this process as asked: it drives raw sockets, far cheaper
  // per request than fetch, so less of the core goes to the client. Each
  // connection cycles through the CSR pool.
  const requests = csrs.map((csr) => ({
    method: "POST" as const,
    path: url,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ csr }),
  }));
  const drive = (maxOverallRequests: number, duration: number) =>
    autocannon({ url: base, connections: concurrency, maxOverallRequests, duration, requests });

  await drive(500, 5); // warm-up: JIT, token cache, the CA opened once
  const r = await drive(maxCount, seconds);
  if (r.non2xx > 0 || r.errors > 0) throw new Error(`${r.non2xx} non-2xx responses and ${r.errors} errors: the figures are void`);
  issued = r["2xx"];
  elapsedMs = r.duration * 1000;
  p99Ms = r.latency.p99;
} finally {
  await app.close();
}

const raw = measureLeafThroughput(5000);
const perSec = issued / (elapsedMs / 1000);
const f = (x: number) => Math.round(x);
console.log(
  `\nbench/svid: ${issued} X.509-SVIDs in ${(elapsedMs / 1000).toFixed(1)} s, ${concurrency} concurrent requests, database ${process.env.DATABASE_URL ? "postgres" : "pglite (in memory)"}\n`,
);
console.log(
  table([
    ["measure", "per second"],
    [`X.509-SVID issuance via HTTP API (p99 ${p99Ms} ms)`, f(perSec)],
    ["leaf build + sign alone (no HTTP, no DB)", f(raw.leavesPerSec)],
    ["raw P-256 sign", f(raw.signPerSec)],
    ["raw P-256 verify", f(raw.verifyPerSec)],
    ["raw limit: 1 sign + 1 verify per cert", f(raw.rawCertLimit)],
    ["ratio issuance / raw limit (goal >= 0.3)", (perSec / raw.rawCertLimit).toFixed(2)],
  ]),
);
