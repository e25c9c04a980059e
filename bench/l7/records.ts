// SPDX-License-Identifier: Apache-2.0
/**
 * The agent's CPU per request record, one command (no root, no kernel):
 *   npm run bench:l7-records
 *
 * bench:l7 found node-a's agent spending 11-13 µs per request reading the
 * node proxy's records, on 2 cores it shares with HAProxy and the backend.
 * This measures that path alone, in this process, with the agent's own
 * code: chunks of octet-counted records as HAProxy's ring forwarder sends
 * them (record-socket.ts FrameReader) -> record-intake.ts (parse, /metrics,
 * outlier ejection, the batch) -> every RECORDS_PER_FLUSH records the batch
 * as flows, as the runtime wires it (flows.ts accessEvents ->
 * FlowCollector.handleEvents) -> at the end of each round one /metrics
 * scrape and one flows interval sealed (Prometheus scrapes every 15-30 s:
 * a round stands for about that many records at bench:l7's rates). Spans
 * (--otlp-endpoint) are not on this path, as in bench:l7.
 *
 * Baseline, in the same run and the same process: the same records split
 * and JSON.parse'd by this file's own loop (no agent code: the same work
 * whatever tree it runs on, so path/baseline compares trees run at
 * different loads; and what reading JSON records costs at least). Rounds
 * alternate baseline and path; figures are medians of CPU time
 * (process.cpuUsage: user + system, every thread, so garbage collection is
 * in) per record.
 *
 * The records: one frontend of one service with two routes (bench:l7 has
 * one), 96% 200, 2% 503 from a server, 1% 404, 1% refused by the proxy
 * (403 forbidden), each with its own source port, path and trace ids;
 * BENCH_RECORDS_ROUND records a round (default 200,000), BENCH_ROUNDS
 * rounds (default 7).
 */
import { loadavg } from "node:os";
import type { Entry } from "@weft/codec";
import { Registry } from "prom-client";
import { SystemClock } from "../../nodeagent/src/flows/clock.ts";
import { AddressIdentities } from "../../nodeagent/src/flows/address-identities.ts";
import { FlowCollector } from "../../nodeagent/src/flows/collector.ts";
import { FlowMetrics } from "../../nodeagent/src/flows/metrics.ts";
import { FlowUploader } from "../../nodeagent/src/flows/uploader.ts";
import type { L7Document } from "../../nodeagent/src/l7/document.ts";
import { accessEvents } from "../../nodeagent/src/l7/flows.ts";
import { L7Metrics } from "../../nodeagent/src/l7/metrics.ts";
import { OutlierDetector } from "../../nodeagent/src/l7/outlier.ts";
import { RecordIntake } from "../../nodeagent/src/l7/record-intake.ts";
import { FrameReader } from "../../nodeagent/src/l7/record-socket.ts";
import { median } from "../support/weft.ts";
import { writeResults } from "./results.ts";

const NAME = "bench:l7-records";
const ROUND = Number(process.env.BENCH_RECORDS_ROUND ?? 200_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
/** The driver hands records on every 250 ms: at bench:l7's 20,000 req/s, about this many. */
const RECORDS_PER_FLUSH = 5_000;
/** What one read of the record socket returns at most (the stream's default high-water mark). */
const CHUNK = 64 * 1024;
const DISTINCT = 20_000;

const doc: L7Document = {
  proxyAddress: "198.18.0.1",
  frontends: [
    {
      name: "f-1-80",
      tenant: "l7",
      service: "routed",
      vip: "198.19.0.10",
      port: 80,
      rules: [
        { route: "routed", rule: 0, matches: [{ path: { type: "PathPrefix", value: "/api" } }], backends: [{ backend: "b-1-0-0", weight: 1 }] },
        { route: "routed", rule: 1, matches: [], backends: [{ backend: "b-1-1-0", weight: 1 }] },
      ],
      defaultBackend: "d-1-80",
      authorization: { governed: false, entries: [] },
    },
  ],
  backends: [
    { name: "b-1-0-0", servers: [{ name: "w-1", address: "198.18.1.11", port: 8080, weight: 1 }] },
    { name: "b-1-1-0", servers: [{ name: "w-1", address: "198.18.1.11", port: 8080, weight: 1 }] },
    { name: "d-1-80", servers: [{ name: "w-1", address: "198.18.1.11", port: 8080, weight: 1 }] },
  ],
  callers: [{ address: "198.18.0.10", tenant: "l7", spiffeId: "spiffe://l7.test/ns/bench/sa/client" }],
};

const ipcache: Entry<"ipcache">[] = [
  { key: { prefix: "198.18.0.10/32" }, value: { identity: 11, tenant: 1 } },
  { key: { prefix: "198.18.1.11/32" }, value: { identity: 12, tenant: 1 } },
  { key: { prefix: "198.19.0.0/16" }, value: { identity: 2, tenant: 0 } },
] as Entry<"ipcache">[];

const hex = (n: number, width: number) => n.toString(16).padStart(width, "0").slice(-width);

/** The i-th record as HAProxy writes it (render.ts LOG_FORMAT). */
function line(i: number): string {
  const kind = i % 100;
  const refused = kind === 99 ? "forbidden" : "-";
  const status = kind === 99 ? 403 : kind === 98 ? 404 : kind >= 96 ? 503 : 200;
  const routed = refused === "-" && i % 2 === 0;
  const server = refused === "-" ? { backend: routed ? "b-1-0-0" : "b-1-1-0", server: "w-1", address: "198.18.1.11", port: "8080" } : { backend: "f-l7", server: "<NOSRV>", address: "-", port: "-" };
  return JSON.stringify({
    startMs: 1796622359633 + i,
    src: "198.18.0.10",
    srcPort: 20_000 + (i % 40_000),
    caller: "spiffe://l7.test/ns/bench/sa/client",
    frontend: "f-1-80",
    service: "l7/routed",
    vip: "198.19.0.10",
    vport: 80,
    route: refused === "-" ? `routed/${routed ? 0 : 1}` : "-",
    backend: server.backend,
    server: server.server,
    serverAddress: server.address,
    serverPort: server.port,
    status,
    durationMs: i % 7,
    retries: "0",
    bytesIn: 96,
    bytesOut: 612,
    method: "GET",
    path: routed ? `/api/items/${i}` : `/index/${i}`,
    traceId: hex(i * 2654435761, 32),
    spanId: hex(i * 40503, 16),
    parentSpanId: "-",
    refused,
  });
}

/** ROUND records, octet-counted, and the same cut into socket-sized chunks at arbitrary bytes (as a stream read cuts them). */
function records(): { all: Buffer; chunks: Buffer[] } {
  const frames = Array.from({ length: DISTINCT }, (_, i) => {
    const m = line(i);
    return `${Buffer.byteLength(m)} ${m}`;
  });
  const all = Buffer.from(Array.from({ length: ROUND }, (_, i) => frames[i % DISTINCT]).join(""));
  const out: Buffer[] = [];
  for (let at = 0; at < all.length; at += CHUNK) out.push(all.subarray(at, at + CHUNK));
  return { all, chunks: out };
}

/** The baseline's work: each frame of `all` found and JSON.parse'd, and nothing else. */
function splitAndParse(all: Buffer): number {
  let parsed = 0;
  for (let at = 0; at < all.length; ) {
    const space = all.indexOf(0x20, at);
    const end = space + 1 + Number(all.toString("latin1", at, space));
    if (JSON.parse(all.toString("utf8", space + 1, end)) !== null) parsed++;
    at = end;
  }
  return parsed;
}

/** The agent's record path, wired as runtime.ts and driver.ts wire it. */
function agentPath() {
  const registry = new Registry();
  const metrics = new L7Metrics(registry);
  metrics.follow(doc);
  const outliers = new OutlierDetector(Date.now);
  outliers.follow(doc);
  const intake = new RecordIntake({ metrics, observe: (r) => void outliers.observe(r), batches: true, log: () => undefined });
  const flowMetrics = new FlowMetrics(registry);
  const uploader = new FlowUploader({ send: async () => "accepted", metrics: flowMetrics, log: () => undefined });
  const collector = new FlowCollector({ source: { drain: () => [], stats: () => ({ rateLimited: 0n, ringFull: 0n }) }, clock: new SystemClock(), metrics: flowMetrics, uploader, buffer: 4096, intervalMs: 10_000, log: () => undefined });
  const index = new AddressIdentities(ipcache);
  const identify = (address: string) => index.lookup(address);
  const flush = () => {
    const taken = intake.take();
    if (taken) collector.handleEvents(accessEvents(taken.batch, identify), taken.lost);
  };
  return { registry, intake, flush, collector, uploader, flowMetrics };
}

function cpuUs(run: () => void | Promise<void>): Promise<number> {
  const before = process.cpuUsage();
  return Promise.resolve(run()).then(() => {
    const d = process.cpuUsage(before);
    return d.user + d.system;
  });
}

async function main(): Promise<void> {
  const load = loadavg()[0]!.toFixed(2);
  const { all: whole, chunks: data } = records();
  const path = agentPath();
  const chunksPerFlush = Math.max(1, Math.round((RECORDS_PER_FLUSH * data.length) / ROUND));
  let parsed = 0;
  let scraped = "";
  const baseline: number[] = [];
  const full: number[] = [];
  const roundOfBaseline = () => void (parsed += splitAndParse(whole));
  const roundOfPath = async () => {
    const reader = new FrameReader(path.intake.message);
    for (const [i, c] of data.entries()) {
      reader.push(c);
      // The driver's timer, in records rather than milliseconds.
      if ((i + 1) % chunksPerFlush === 0) path.flush();
    }
    path.flush();
    scraped = await path.registry.metrics();
    path.collector.seal();
  };
  // One of each first, unmeasured: V8 compiles the hot functions.
  roundOfBaseline();
  await roundOfPath();
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? ["baseline", "path"] : ["path", "baseline"];
    for (const which of order) {
      if (which === "baseline") baseline.push((await cpuUs(roundOfBaseline)) / ROUND);
      else full.push((await cpuUs(roundOfPath)) / ROUND);
    }
  }
  const counted = [...scraped.matchAll(/^weft_http_requests_total\{[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
  const base = median(baseline);
  const all = median(full);
  console.log(`${NAME}: ${ROUNDS} rounds of ${ROUND} records (${data.length} chunks of ${CHUNK} bytes), load average ${load} at the start, ${loadavg()[0]!.toFixed(2)} at the end`);
  console.log(`  baseline (split + JSON.parse): ${base.toFixed(2)} µs/record (${baseline.map((v) => v.toFixed(2)).join(" ")})`);
  console.log(`  agent path:                    ${all.toFixed(2)} µs/record (${full.map((v) => v.toFixed(2)).join(" ")})`);
  console.log(`  agent path over the baseline:  ${(all - base).toFixed(2)} µs/record; ratio path/baseline ${(all / base).toFixed(2)}`);
  console.log(`  every record counted: ${counted} in weft_http_requests_total for ${(ROUNDS + 1) * ROUND} sent (${ROUNDS + 1} rounds with the warm-up)`);
  if (counted !== (ROUNDS + 1) * ROUND || parsed !== (ROUNDS + 1) * ROUND) process.exitCode = 1;
  writeResults("records.json", { load, rounds: ROUNDS, round: ROUND, baselineUs: baseline, pathUs: full, baselineMedianUs: base, pathMedianUs: all });
  path.collector.stop();
  await path.uploader.close();
}

await main();
