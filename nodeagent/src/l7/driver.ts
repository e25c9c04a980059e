// SPDX-License-Identifier: Apache-2.0
/**
 * The agent drives the node's L7 proxy (issue 21): reads the node's L7
 * document (GET /v1/nodes/{node}/l7, If-None-Match, every pollMs and after
 * each datapath change), renders haproxy.cfg, and keeps HAProxy serving it:
 *
 * - started once the first document is read; restarted with backoff when
 *   it exits (state "down" meanwhile: the kernel drops connections to L7
 *   services as proxy-down, nothing goes around the proxy);
 * - a document that changes only server weights is applied through the
 *   runtime API, without a reload; any other change is written, checked
 *   with `haproxy -c` (a config HAProxy refuses is never loaded: the
 *   running proxy keeps serving and the status says why) and applied with
 *   a hitless master-worker reload;
 * - a reload waits, at most PEERS_RESYNC_WAIT_MS, for the serving worker to
 *   hold its rate-limit tables whole (traffic-render.ts peersLines): only
 *   then does it hand them to the new worker. That is at most 5 s after
 *   HAProxy starts, and no wait at all after a reload that carried them;
 * - after each apply the servers HAProxy holds are compared with the
 *   document; only then is the document's ETag reported as applied;
 * - the request records come over the record socket (record-socket.ts),
 *   which listens before HAProxy first starts: HAProxy's ring holds them
 *   until it does, and while the agent reads late;
 * - outlier ejection (outlier-driver.ts) follows each document applied,
 *   reads every access record, and is told again after each reload and
 *   start (a new worker holds every server ready). An ejected server is in
 *   maint, which the check of an apply does not look at.
 *
 * A 404 from the API (no L7 route yet) reads as a document without
 * frontends, and the status detail says so: before any document, no proxy
 * is started (state off: the kernel has no L7 service to steer to it); a
 * proxy already running is given the empty document.
 */
import { createHash } from "node:crypto";
import { readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import type { Registry } from "prom-client";
import type { Log } from "../agent/agent.ts";
import { Backoff, sleep, type BackoffOptions } from "../agent/backoff.ts";
import { Coalesced } from "../agent/coalesced.ts";
import type { L7DocumentAnswer, L7Status as ClientL7Status } from "../agent/client.ts";
import type { AccessRecord } from "./access-log.ts";
import { emptyL7Document, type L7Document } from "./document.ts";
import { salvageL7Document } from "./salvage.ts";
import { checkConfig, describeExit, endLeftover, HaproxyProcess, type HaproxyPaths } from "./haproxy-process.ts";
import { JWT_KEY_FILE, jwtKeyFiles, type JwtKeyFile } from "./jwt-render.ts";
import { proxyErrorFiles } from "./proxy-errors.ts";
import { L7Metrics } from "./metrics.ts";
import { OutlierDriver } from "./outlier-driver.ts";
import { RecordIntake } from "./record-intake.ts";
import { RecordSocket } from "./record-socket.ts";
import { adminSocketPath, configPath, masterSocketPath, RECORD_RING, recordSocketPath, renderCallersMap, renderConfig, structureOf, type RenderOptions } from "./render.ts";
import { infoField, peersResynced, ringDropped, serversState, setServerWeight } from "./runtime-api.ts";
import { PEERS_SECTION } from "./traffic-render.ts";

/** A route's weights and rules change no map, so no datapath revision announces them: the document is read this often (an unchanged one is a 304 the API answers from a cache). */
export const DOCUMENT_POLL_MS = 2_000;

/** `l7` of the status report (the API's ReportedL7), with the states the driver takes. */
export type L7Status = Omit<ClientL7Status, "state"> & { state: "off" | "starting" | "running" | "down" };

export interface L7DriverOptions {
  /** The haproxy binary. */
  binary: string;
  /** The agent's state directory: config, sockets, maps and pidfile go there. */
  stateDir: string;
  document: (etag: string | null) => Promise<L7DocumentAnswer>;
  registry: Registry;
  /** Puts the document's proxy address on lo (replacing the one before); absent: left to the caller (tests). */
  proxyAddress?: (address: string) => void;
  /** Where access records go besides /metrics (the flows pipeline), with how many were left out since the last batch. */
  records?: (records: AccessRecord[], lost: number) => void;
  pollMs?: number;
  backoff?: BackoffOptions;
  /**
   * Hands the serving worker's listener to the kernel (listener.ts: the
   * sk_lookup sockmap), after each start and reload; a throw fails that
   * start or reload. Absent: nothing steers to the proxy (tests).
   */
  listener?: (workerPid: number) => void;
  /** HAProxy's threads; default proxyThreads(). */
  threads?: number;
  /** Tests: the listener and plain extra binds (render.ts RenderOptions). */
  listen?: RenderOptions["listen"];
  extraBinds?: RenderOptions["extraBinds"];
  log: Log;
}

/** What one document renders to: the config and the callers map its name is taken from. */
interface Rendered {
  doc: L7Document;
  etag: string | null;
  config: string;
  structure: string;
  callersMap: string;
  callersMapPath: string;
  /** The JWT keys its config reads (jwt-render.ts), each in its own file. */
  jwtKeys: JwtKeyFile[];
  /** "backend/server" -> where a server reached through the transport is (its record says only "unix"). */
  viaTransport: Map<string, { address: string; port: number }>;
}

/**
 * HAProxy's threads unless told: half the CPUs, at least one. The node's
 * proxy shares them with the workloads it serves and the agent reading its
 * records. HAProxy's own default, a thread per CPU, cost more CPU per
 * request on 2 CPUs (bench:l7, 2026-12-07: 21.3-22.2 µs with two threads,
 * 19.5-21.0 with one; the requests a second moved with the machine's load
 * more than with the thread count).
 */
export const proxyThreads = (cpus = availableParallelism()) => Math.max(1, Math.floor(cpus / 2));

/**
 * How long a reload waits for the serving worker's tables to be whole: two
 * of HAProxy's 5 s resync timeouts (a worker neither taught nor started
 * afresh waits out both), and a little more.
 */
export const PEERS_RESYNC_WAIT_MS = 11_000;

/** Records handed to `records` at most this often, in one batch. */
const RECORD_FLUSH_MS = 250;

export class L7Driver {
  readonly metrics: L7Metrics;
  readonly outliers: OutlierDriver;
  private readonly abort = new AbortController();
  private readonly backoff: Backoff;
  private readonly paths: HaproxyPaths;
  private process: HaproxyProcess | null = null;
  /** The latest document read and checked, and what the running proxy serves. */
  private wanted: Rendered | null = null;
  private applied: Rendered | null = null;
  private etag: string | null = null;
  private missingRoute = false;
  private documentError: string | null = null;
  private applyError: string | null = null;
  /** The last document HAProxy refused: not tried again (the same text would be refused again). */
  private refused: Rendered | null = null;
  private addressError: string | null = null;
  private state: L7Status["state"] = "starting";
  private firstDocument: (() => void) | null = null;
  private readonly firstRead: Promise<void>;
  private readonly applies = new Coalesced(() => this.applyNow(), () => this.abort.signal.aborted);
  private refreshing: Promise<boolean> | null = null;
  private refreshAgain = false;
  private poller: NodeJS.Timeout | null = null;
  private supervising: Promise<void> | null = null;
  private readonly intake: RecordIntake;
  private flusher: NodeJS.Timeout | null = null;
  /** The record socket once it listens (null if it could not: the status says why). */
  private records: Promise<RecordSocket | null> | null = null;
  private recordsError: string | null = null;

  constructor(private readonly o: L7DriverOptions) {
    this.backoff = new Backoff({ initialMs: 500, maxMs: 30_000, ...o.backoff });
    this.metrics = new L7Metrics(
      o.registry,
      () => this.unannouncedDrops(),
      () => this.outliers.detector.ejectedCounts(),
    );
    this.paths = {
      binary: o.binary,
      config: configPath(o.stateDir),
      masterSocket: masterSocketPath(o.stateDir),
      adminSocket: adminSocketPath(o.stateDir),
      pidFile: join(o.stateDir, "haproxy.pid"),
    };
    this.firstRead = new Promise((resolve) => (this.firstDocument = resolve));
    this.outliers = new OutlierDriver(this.paths.adminSocket, this.metrics, o.log);
    this.intake = new RecordIntake({
      metrics: this.metrics,
      observe: (r) => this.outliers.observe(r),
      batches: !!o.records,
      log: o.log,
      // A record may come from the worker of the document before the one wanted now: either names the server.
      serverAt: (backend, server) => this.wanted?.viaTransport.get(`${backend}/${server}`) ?? this.applied?.viaTransport.get(`${backend}/${server}`),
    });
  }

  start(): void {
    if (this.supervising) return;
    // Each poll also tries again an apply that failed (a runtime command, a reload): a 304 alone would leave it failed.
    this.poller = setInterval(() => void this.refresh().then(() => this.apply()), this.o.pollMs ?? DOCUMENT_POLL_MS);
    this.poller.unref();
    if (this.o.records) {
      this.flusher = setInterval(() => this.flushRecords(), RECORD_FLUSH_MS);
      this.flusher.unref();
    }
    this.records = RecordSocket.listen(recordSocketPath(this.o.stateDir), this.intake.message, (why) => {
      this.metrics.unreadable.inc();
      this.o.log("warn", why);
    }).catch((err: Error) => {
      // The proxy serves all the same (nothing it decides depends on its records); they stay in its ring, then are dropped.
      this.recordsError = `failed to listen for the L7 proxy's records on ${recordSocketPath(this.o.stateDir)}: ${err.message}`;
      this.o.log("error", this.recordsError);
      return null;
    });
    this.supervising = this.supervise();
    void this.refresh();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.firstDocument?.();
    if (this.poller) clearInterval(this.poller);
    if (this.flusher) clearInterval(this.flusher);
    await this.applies.idle();
    this.outliers.stop();
    await this.outliers.idle();
    await this.process?.stop();
    await this.supervising;
    // After HAProxy: its workers' forwarders deliver what their rings still hold as they end.
    await (await this.records)?.close();
    this.flushRecords();
    this.metrics.up.set(0);
  }

  /** `l7` of the status report. */
  status(): L7Status {
    const detail = [this.missingRoute ? "the API serves no L7 document (GET /v1/nodes/{node}/l7 answered 404): no L7 service to proxy" : null, ...this.errors]
      .filter((d): d is string => d !== null)
      .join("; ");
    const applied = this.state === "running" && this.applied?.etag ? { appliedEtag: this.applied.etag.slice(0, 128) } : {};
    const state = this.missingRoute && !this.process && !this.wanted ? "off" : this.state;
    return { state, ...applied, ...(detail ? { detail: detail.slice(0, 1024) } : {}) };
  }

  /** Faults the status report's errors carry. */
  get errors(): string[] {
    return [this.documentError, this.applyError, this.addressError, this.recordsError].filter((e): e is string => e !== null);
  }

  /** The running master's and worker's pids (tests), null while none runs. */
  get pids(): { master: number; worker: number } | null {
    return this.process?.pid ? { master: this.process.pid, worker: this.process.workerPid } : null;
  }

  /**
   * Asks for the document now and applies it when it changed; true when it
   * did. One read at a time (a poll and a datapath change may ask together):
   * an older answer arriving last must not replace a newer one.
   */
  refresh(): Promise<boolean> {
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    return (this.refreshing = (async () => {
      let changed = false;
      do {
        this.refreshAgain = false;
        changed = (await this.readDocument()) || changed;
      } while (this.refreshAgain && !this.abort.signal.aborted);
      return changed;
    })().finally(() => (this.refreshing = null)));
  }

  private async readDocument(): Promise<boolean> {
    let answer: L7DocumentAnswer;
    try {
      answer = await this.o.document(this.etag);
    } catch (err) {
      this.o.log("warn", "failed to read the L7 document; the proxy keeps its configuration", { error: (err as Error).message });
      return false;
    }
    if (answer.kind === "unchanged") return false;
    let doc: L7Document;
    let etag: string | null = null;
    if (answer.kind === "missing") {
      const before = this.missingRoute;
      this.missingRoute = true;
      this.firstDocument?.();
      // Nothing is steered to a proxy the API has no document for: none is started. One already running serves nothing from now on.
      if (!this.wanted || before) return false;
      doc = emptyL7Document();
    } else {
      this.missingRoute = false;
      const checked = salvageL7Document(answer.body);
      etag = answer.etag;
      this.etag = answer.etag;
      if (typeof checked === "string") {
        this.documentError = `refused the L7 document: ${checked}`;
        this.o.log("error", "refused the L7 document; the proxy keeps its configuration", { error: checked });
        this.firstDocument?.();
        return false;
      }
      doc = checked.document;
      for (const r of checked.refused) this.o.log("error", "left an L7 frontend out of the proxy: it answers 503 until its rows are fixed", { ...r });
      this.documentError = checked.refused.length === 0 ? null : `left out ${checked.refused.length} L7 frontend(s): ${checked.refused.map((r) => `${r.frontend} (tenant ${r.tenant}): ${r.reason}`).join("; ")}`;
    }
    if (answer.kind === "missing") this.documentError = null;
    this.wanted = this.render(doc, etag);
    if (answer.kind === "document") this.putProxyAddress(doc.proxyAddress);
    this.firstDocument?.();
    this.apply();
    return true;
  }

  private putProxyAddress(address: string): void {
    try {
      this.o.proxyAddress?.(address);
      this.addressError = null;
    } catch (err) {
      // The proxy still starts: connections to backends fail (and are retried elsewhere) until the address is there.
      this.addressError = (err as Error).message;
      this.o.log("error", "failed to put the proxy address on lo", { error: this.addressError });
    }
  }

  private render(doc: L7Document, etag: string | null): Rendered {
    const callersMap = renderCallersMap(doc);
    // Named by content: a new map never changes the file a running worker (or a failed check) reads.
    const callersMapPath = join(this.o.stateDir, `l7-callers-${createHash("sha256").update(callersMap).digest("hex").slice(0, 16)}.map`);
    const options: RenderOptions = { stateDir: this.o.stateDir, callersMap: callersMapPath, threads: this.o.threads ?? proxyThreads(), ...(this.o.listen ? { listen: this.o.listen } : {}), ...(this.o.extraBinds ? { extraBinds: this.o.extraBinds } : {}) };
    const viaTransport = new Map(doc.backends.flatMap((b) => b.servers.filter((s) => s.transport).map((s) => [`${b.name}/${s.name}`, { address: s.address, port: s.port }] as const)));
    return { doc, etag, config: renderConfig(doc, options), structure: structureOf(doc, options), callersMap, callersMapPath, jwtKeys: jwtKeyFiles(doc, this.o.stateDir), viaTransport };
  }

  /** Applies the wanted document (coalesced: one apply at a time, the latest wins). */
  private apply(): void {
    this.applies.request();
  }

  private async applyNow(): Promise<void> {
    const want = this.wanted;
    const running = this.process;
    if (!want || !running || want === this.applied || want === this.refused) return;
    const kind = this.applied && this.applied.structure === want.structure ? "weights" : "reload";
    try {
      const problem = await this.write(want);
      if (problem) {
        this.refused = want;
        this.applyError = `haproxy refused the configuration of the L7 document ${want.etag ?? "(none)"}: ${problem}`;
        this.o.log("error", "haproxy refused the rendered configuration; the proxy keeps serving the one before", { error: problem });
        this.metrics.applies.inc({ kind, result: "refused" });
        return;
      }
      if (kind === "weights") {
        // Against what HAProxy holds, not what was applied last: an apply that failed halfway is completed.
        const held = new Map((await serversState(this.paths.adminSocket)).map((s) => [`${s.backend}/${s.server}`, s.weight]));
        for (const b of want.doc.backends) {
          for (const s of b.servers) if (held.get(`${b.name}/${s.name}`) !== s.weight) await setServerWeight(this.paths.adminSocket, b.name, s.name, s.weight);
        }
      } else {
        await this.tablesWhole();
        await running.reload();
        this.o.listener?.(running.workerPid);
      }
      await this.verify(want.doc);
      // A reload's new worker holds every server ready: the ejections in force are told before the document is reported applied.
      this.outliers.follow(want.doc);
      if (kind === "reload") await this.outliers.reapply();
      this.applied = want;
      this.applyError = null;
      this.metrics.follow(want.doc);
      this.metrics.applies.inc({ kind, result: "ok" });
      this.removeStaleFiles(want);
      this.o.log("info", "applied the L7 document", { etag: want.etag, kind, worker: running.workerPid });
    } catch (err) {
      this.applyError = `failed to apply the L7 document ${want.etag ?? "(none)"}: ${(err as Error).message}`;
      this.metrics.applies.inc({ kind, result: "failed" });
      this.o.log("error", this.applyError);
    }
  }

  /** Writes the callers map and the config (checked first); null when written, else why HAProxy refused it. */
  private async write(r: Rendered): Promise<string | null> {
    writeFileSync(r.callersMapPath, r.callersMap, { mode: 0o600 });
    // HAProxy loads each key file when it parses the config: they are there before it is checked or loaded.
    for (const k of r.jwtKeys) writeFileSync(k.path, k.pem, { mode: 0o600 });
    // Likewise the errorfiles: the same text every time.
    for (const e of proxyErrorFiles(this.o.stateDir)) writeFileSync(e.path, e.content, { mode: 0o600 });
    const candidate = `${this.paths.config}.new`;
    writeFileSync(candidate, r.config, { mode: 0o600 });
    const problem = await checkConfig(this.paths.binary, candidate);
    if (problem) {
      rmSync(candidate, { force: true });
      return problem;
    }
    renameSync(candidate, this.paths.config);
    return null;
  }

  /**
   * Waits until the serving worker can hand its rate-limit tables to the
   * next one (runtime-api.ts peersResynced), at most PEERS_RESYNC_WAIT_MS:
   * past that the reload goes ahead, and the counts start afresh.
   */
  private async tablesWhole(): Promise<void> {
    const deadline = Date.now() + PEERS_RESYNC_WAIT_MS;
    while (!(await peersResynced(this.paths.adminSocket, PEERS_SECTION))) {
      if (Date.now() > deadline || this.abort.signal.aborted) {
        this.o.log("warn", "reloading the L7 proxy before its rate-limit tables are whole: the new worker starts their counts afresh", { waitedMs: PEERS_RESYNC_WAIT_MS });
        return;
      }
      await sleep(100, this.abort.signal);
    }
  }

  /** The servers HAProxy holds are the document's, with its weights; throws what differs. */
  private async verify(doc: L7Document): Promise<void> {
    const held = new Map((await serversState(this.paths.adminSocket)).map((s) => [`${s.backend}/${s.server}`, s]));
    const wrong: string[] = [];
    let count = 0;
    for (const b of doc.backends) {
      for (const s of b.servers) {
        count++;
        const h = held.get(`${b.name}/${s.name}`);
        if (!h) wrong.push(`${b.name}/${s.name} missing`);
        // A server through the transport is a unix socket: HAProxy holds no address of its own for it.
        else if ((!s.transport && (h.address !== s.address || h.port !== s.port)) || h.weight !== s.weight) wrong.push(`${b.name}/${s.name} is ${h.address}:${h.port} weight ${h.weight}, not ${s.address}:${s.port} weight ${s.weight}`);
      }
    }
    if (held.size !== count) wrong.push(`haproxy holds ${held.size} servers, the document ${count}`);
    if (wrong.length) throw new Error(`haproxy's servers differ from the document: ${wrong.slice(0, 8).join("; ")}`);
  }

  /** The callers maps and JWT key files the applied document does not read. */
  private removeStaleFiles(applied: Rendered): void {
    const keep = new Set([applied.callersMapPath, ...applied.jwtKeys.map((k) => k.path)]);
    for (const f of readdirSync(this.o.stateDir)) {
      const path = join(this.o.stateDir, f);
      if ((/^l7-callers-[0-9a-f]{16}\.map$/.test(f) || JWT_KEY_FILE.test(f)) && !keep.has(path)) rmSync(path, { force: true });
    }
  }

  /** Records the serving worker dropped and has not announced: its ring's, and any its stdout dropped (notices). */
  private async unannouncedDrops(): Promise<number | null> {
    if (!this.process) return null;
    const [stdout, ring] = await Promise.all([infoField(this.paths.adminSocket, "DroppedLogs"), ringDropped(this.paths.adminSocket, RECORD_RING)]);
    return (stdout ?? 0) + (ring ?? 0);
  }

  private flushRecords(): void {
    const taken = this.o.records && this.intake.take();
    if (!taken) return;
    try {
      this.o.records!(taken.batch, taken.lost);
    } catch (err) {
      // A batch its consumers could not take is lost, never the agent with it (its proxy and datapath go on).
      this.metrics.recordsDropped.inc({ stage: "agent" }, taken.batch.length);
      this.o.log("error", "failed to hand the L7 proxy's records on; the batch is lost", { error: (err as Error).message, records: taken.batch.length });
    }
  }

  private async supervise(): Promise<void> {
    const signal = this.abort.signal;
    await this.firstRead;
    // HAProxy's forwarder finds the socket from its first record on.
    await this.records;
    let first = true;
    while (!signal.aborted) {
      // A document HAProxy refused is not started either: the last one it served is, until a newer one comes.
      const want = this.wanted === this.refused ? (this.applied ?? null) : this.wanted;
      if (!want) {
        // The first document was refused: wait for one that is not.
        await sleep(this.o.pollMs ?? DOCUMENT_POLL_MS, signal);
        continue;
      }
      if (!first) this.metrics.restarts.inc();
      first = false;
      const startedAt = Date.now();
      let running: HaproxyProcess;
      try {
        const problem = await this.write(want);
        if (problem) throw new Error(`haproxy refused the configuration: ${problem}`);
        await endLeftover(this.paths, this.o.log);
        running = await HaproxyProcess.start(this.paths, this.intake.message, this.o.log);
        this.process = running; // stopped below if what follows fails
        this.o.listener?.(running.workerPid);
        await this.verify(want.doc);
      } catch (err) {
        this.state = "down";
        this.applyError = `failed to start the L7 proxy: ${(err as Error).message}`;
        this.o.log("error", "failed to start the L7 proxy; retrying", { error: (err as Error).message });
        await this.process?.stop();
        this.process = null;
        await sleep(this.backoff.next(), signal);
        continue;
      }
      if (signal.aborted) {
        await running.stop();
        break;
      }
      this.process = running;
      this.applied = want;
      this.applyError = null;
      // The new worker holds every server ready: the ejections in force are told before it is reported running.
      this.outliers.follow(want.doc);
      await this.outliers.reapply();
      this.state = "running";
      this.metrics.follow(want.doc);
      this.metrics.applies.inc({ kind: "start", result: "ok" });
      this.metrics.up.set(1);
      this.o.log("info", "L7 proxy started", { master: running.pid, worker: running.workerPid, etag: want.etag });
      // A document read while it started.
      this.apply();
      const exit = await running.exited;
      this.process = null;
      this.metrics.up.set(0);
      if (signal.aborted) break;
      this.state = "down";
      if (Date.now() - startedAt > this.backoff.maxMs) this.backoff.reset();
      const delay = this.backoff.next();
      this.applyError = `the L7 proxy exited (${describeExit(exit)}); restarting it`;
      this.o.log("error", "the L7 proxy exited; restarting it (connections to L7 services drop as proxy-down meanwhile)", { exit: describeExit(exit), retryInMs: Math.round(delay) });
      await sleep(delay, signal);
    }
    this.state = "down";
  }
}
