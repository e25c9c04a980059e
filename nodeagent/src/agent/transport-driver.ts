// SPDX-License-Identifier: Apache-2.0
/**
 * The agent drives the node's transport (issue #18): keeps one transport
 * process running (restarted with backoff when it dies, counted), and keeps
 * it configured with the API's transport document plus the SVIDs the agent
 * holds. `configure` is sent again
 *
 * - after every (re)start of the process: a new process holds nothing;
 * - when an SVID or bundle changes (rotation): the transport drains the
 *   sessions made with the old ones, the open streams run to their end;
 * - when the document changes: polled with If-None-Match every pollMs, and
 *   fetched at once after the datapath changed (refresh()).
 *
 * While the process is down the kernel keeps steering to its (closed)
 * sockets and drops with reason transport-down: nothing goes around it.
 * The transport's own metrics are fetched at scrape time over the control
 * channel and appended to the agent's /metrics; its stream outcomes are
 * drained every OUTCOMES_POLL_MS while it runs and handed to `outcomes`
 * (the flows pipeline, src/flows/transport-outcomes.ts).
 */
import { Value } from "@sinclair/typebox/value";
import { Counter, Gauge, type Registry } from "prom-client";
import { INBOUND_PORT, OUTBOUND_LISTENER } from "../transport/abi.ts";
import { OutcomeDrain, type ControlAnswer } from "../transport/control-schema.ts";
import type { Endpoint } from "../transport/endpoint.ts";
import type { KeyExchange } from "../transport/tls-policy.ts";
import type { Log } from "./agent.ts";
import { Backoff, sleep, type BackoffOptions } from "./backoff.ts";
import { Coalesced } from "./coalesced.ts";
import type { ApiClient, TransportDocumentAnswer, TransportStatus } from "./client.ts";
import { ProxySvids } from "./proxy-svids.ts";
import type { SvidManager } from "./svid.ts";
import { checkDocument, emptyDocument, proxyTenants, transportConfig, type SvidSource, type TransportDocument } from "./transport-config.ts";
import { TransportProcess, type Request } from "./transport-process.ts";

/** How often the document is asked for again (If-None-Match: mostly a 304). */
export const DOCUMENT_POLL_MS = 10_000;
/** How often the transport's stream outcomes are drained: its buffer (4096) holds more than a second of refusals at any rate the agent can turn into flows. */
export const OUTCOMES_POLL_MS = 1_000;

export interface TransportDriverOptions {
  /** The node's address on the fabric: the inbound listener binds it, and peers reach this node's transport there. */
  address: string;
  /** Default: the ABI's TRANSPORT_INBOUND_PORT (tests: 0, any free port). */
  inboundPort?: number;
  /** Default: the ABI's outbound listener (tests: 127.0.0.1:0). */
  outbound?: Endpoint;
  keyExchange?: KeyExchange;
  /** GET /v1/nodes/{node}/transport (ApiClient.nodeTransport for this node). */
  document: (etag: string | null) => Promise<TransportDocumentAnswer>;
  svids: SvidSource & Pick<SvidManager, "subscribe">;
  /** The agent's registry: the driver's own metrics are registered on it. */
  registry: Registry;
  pollMs?: number;
  /** Between restarts of a transport that died. */
  backoff?: BackoffOptions;
  /** Where the drained stream outcomes go (the flows pipeline); not drained when absent (flows off). */
  outcomes?: (drained: OutcomeDrain) => void;
  outcomesPollMs?: number;
  /**
   * The node's L7 proxy's hops (issue 21): the directory of the transport's
   * target sockets (the proxy's renderer names the same ones) and the API
   * client that issues the proxy's SVIDs. Absent: the hops are not taken.
   */
  proxy?: { dir: string; client: Pick<ApiClient, "issueNodeProxySvid"> };
  log: Log;
}

type ConfigureResult = "ok" | "refused" | "failed";

export class TransportDriver {
  private readonly abort = new AbortController();
  private readonly backoff: Backoff;
  private readonly up: Gauge;
  private readonly restarts: Counter;
  private readonly configures: Counter<"result">;
  private process: TransportProcess | null = null;
  /** Whether the running process took a configuration (state "running"). */
  private configured = false;
  private document: TransportDocument = emptyDocument();
  private etag: string | null = null;
  /** The last fault of the document or of a configure, for the status report's errors; null when none. */
  private documentError: string | null = null;
  private configureError: string | null = null;
  /** One configure at a time; another asked for meanwhile runs once after it, with the state then. */
  private readonly configureRuns = new Coalesced(() => this.configureNow(), () => this.abort.signal.aborted);
  private poller: NodeJS.Timeout | null = null;
  private outcomesPoller: NodeJS.Timeout | null = null;
  /** The drain in flight: a slow answer is not asked for again before it comes. */
  private draining: Promise<void> | null = null;
  private unsubscribe: (() => void) | null = null;
  private supervising: Promise<void> | null = null;
  private readonly proxySvids: ProxySvids | null;

  constructor(private readonly o: TransportDriverOptions) {
    this.backoff = new Backoff({ initialMs: 500, maxMs: 30_000, ...o.backoff });
    const registers = [o.registry];
    this.up = new Gauge({ name: "weft_agent_transport_up", help: "1 while the node's transport runs and holds a configuration, else 0", registers });
    this.up.set(0);
    this.restarts = new Counter({ name: "weft_agent_transport_restarts_total", help: "Times the transport was started again after it died or failed to start", registers });
    this.configures = new Counter({ name: "weft_agent_transport_configures_total", help: "Configurations sent to the transport, by result", labelNames: ["result"], registers });
    for (const result of ["ok", "refused", "failed"] as const) this.configures.inc({ result }, 0);
    this.proxySvids = o.proxy ? new ProxySvids({ client: o.proxy.client, onChange: () => this.reconfigure(), log: o.log }) : null;
  }

  /** Starts the transport and keeps it running and configured until stop(). */
  start(): void {
    if (this.supervising) return;
    this.unsubscribe = this.o.svids.subscribe(() => this.reconfigure());
    this.poller = setInterval(() => void this.refresh(), this.o.pollMs ?? DOCUMENT_POLL_MS);
    this.poller.unref();
    if (this.o.outcomes) {
      this.outcomesPoller = setInterval(() => void this.drainOutcomes(), this.o.outcomesPollMs ?? OUTCOMES_POLL_MS);
      this.outcomesPoller.unref();
    }
    this.supervising = this.supervise();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    if (this.poller) clearInterval(this.poller);
    if (this.outcomesPoller) clearInterval(this.outcomesPoller);
    this.unsubscribe?.();
    this.proxySvids?.stop();
    // What the transport holds now still reaches flows: its outcomes end with it.
    await this.drainOutcomes();
    await this.process?.stop();
    await this.supervising;
    await this.configureRuns.idle();
    this.up.set(0);
  }

  /** `transport` of the status report. */
  status(): TransportStatus {
    const port = this.process?.ports.inbound ?? this.o.inboundPort ?? INBOUND_PORT;
    return { endpoint: `${this.o.address}:${port}`, state: this.process && this.configured ? "running" : "down" };
  }

  /** Faults the status report carries (a refused document or configuration). */
  get errors(): string[] {
    return [this.documentError, this.configureError, this.proxySvids?.error ?? null].filter((e): e is string => e !== null);
  }

  /** The running process's ports, null while none runs. */
  get ports(): { inbound: number; outbound: number } | null {
    return this.process?.ports ?? null;
  }

  /** One control request to the running transport (the `metrics` op, a test's `steer`). */
  request(request: Request): Promise<Omit<ControlAnswer, "id">> {
    if (!this.process) return Promise.reject(new Error("the transport is not running"));
    return this.process.request(request);
  }

  /** The transport's Prometheus text for the agent's /metrics; "" while it is down or does not answer. */
  async metricsText(): Promise<string> {
    try {
      const a = await this.request({ op: "metrics" });
      return a.ok && a.metrics ? a.metrics : "";
    } catch {
      return "";
    }
  }

  /** Drains the running transport's stream outcomes into `outcomes` once; nothing while none runs. */
  drainOutcomes(): Promise<void> {
    const sink = this.o.outcomes;
    if (!sink || !this.process) return Promise.resolve();
    return (this.draining ??= (async () => {
      try {
        const a = await this.request({ op: "events" });
        const drained = { events: a.events, lost: a.lost };
        if (!a.ok || !Value.Check(OutcomeDrain, drained)) {
          this.o.log("warn", "the transport answered events with something else; its outcomes are not in flows", { error: a.error ?? "not an outcome drain" });
          return;
        }
        sink(drained);
      } catch (err) {
        // Down or restarting: the supervisor says so; the next tick asks the next process.
        if (this.process) this.o.log("warn", "failed to drain the transport's outcomes", { error: (err as Error).message });
      }
    })().finally(() => (this.draining = null)));
  }

  /** Asks for the document now (the datapath changed, or the poll's turn) and configures again when it changed; true when it did. */
  async refresh(): Promise<boolean> {
    let answer: TransportDocumentAnswer;
    try {
      answer = await this.o.document(this.etag);
    } catch (err) {
      // The last document stays: an API outage changes nothing the transport carries.
      this.o.log("warn", "failed to read the transport document; the transport keeps its configuration", { error: (err as Error).message });
      return false;
    }
    if (answer.kind === "unchanged") return false;
    const checked = checkDocument(answer.body);
    if (typeof checked === "string") {
      // Its ETag is remembered: the poll waits for a newer document instead of reading this one again.
      this.etag = answer.etag;
      this.documentError = `refused the transport document: ${checked}`;
      this.o.log("error", "refused the transport document; the transport keeps its configuration", { error: checked });
      return false;
    }
    this.documentError = null;
    this.document = checked;
    this.etag = answer.etag;
    this.reconfigure();
    return true;
  }

  /** Sends the configuration again (coalesced). */
  reconfigure(): void {
    this.configureRuns.request();
  }

  private async configureNow(): Promise<void> {
    const running = this.process;
    if (!running) return;
    let result: ConfigureResult;
    try {
      // The proxy's SVIDs follow the document and the workloads: asked for here, they reconfigure when they come.
      this.proxySvids?.want(proxyTenants(this.document, this.o.svids));
      const a = await running.request({ op: "configure", config: transportConfig(this.document, this.o.svids, this.proxySvids?.svids()) });
      result = a.ok ? "ok" : "refused";
      this.configureError = a.ok ? null : `the transport refused its configuration: ${a.error ?? "no reason given"}`;
    } catch (err) {
      result = "failed";
      this.configureError = `failed to configure the transport: ${(err as Error).message}`;
    }
    this.configures.inc({ result });
    if (running !== this.process) return;
    if (result === "ok") this.configured = true;
    else this.o.log("error", this.configureError!);
    this.up.set(this.configured ? 1 : 0);
  }

  private args(): string[] {
    const outbound = this.o.outbound ?? OUTBOUND_LISTENER;
    return [
      "--inbound",
      `${this.o.address}:${this.o.inboundPort ?? INBOUND_PORT}`,
      "--outbound",
      `${outbound.address}:${outbound.port}`,
      ...(this.o.keyExchange ? ["--key-exchange", this.o.keyExchange] : []),
      ...(this.o.proxy ? ["--proxy-dir", this.o.proxy.dir] : []),
    ];
  }

  private async supervise(): Promise<void> {
    const signal = this.abort.signal;
    let first = true;
    while (!signal.aborted) {
      if (!first) this.restarts.inc();
      first = false;
      let running: TransportProcess;
      const startedAt = Date.now();
      try {
        running = await TransportProcess.start(this.args(), this.o.log);
      } catch (err) {
        this.o.log("error", "failed to start the transport; retrying", { error: (err as Error).message });
        await sleep(this.backoff.next(), signal);
        continue;
      }
      if (signal.aborted) {
        await running.stop();
        break;
      }
      this.process = running;
      this.configured = false;
      this.o.log("info", "transport started", { pid: running.pid, ...running.ports, endpoint: this.status().endpoint });
      // The document as it is now, then the configuration: a new process holds nothing.
      if (!(await this.refresh())) this.reconfigure();
      const exit = await running.exited;
      this.process = null;
      this.configured = false;
      this.up.set(0);
      if (signal.aborted) break;
      // A run that lasted longer than the longest backoff was a healthy one: start the backoff over.
      if (Date.now() - startedAt > this.backoff.maxMs) this.backoff.reset();
      const delay = this.backoff.next();
      this.o.log("error", "the transport exited; restarting it (mtls traffic is dropped as transport-down meanwhile)", { ...exit, retryInMs: Math.round(delay) });
      await sleep(delay, signal);
    }
  }
}
