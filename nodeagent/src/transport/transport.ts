// SPDX-License-Identifier: Apache-2.0
/**
 * One node's transport: the state, the outbound listener, the inbound
 * server and the session pool, and the control verbs that change them.
 */
import type { Http2SecureServer } from "node:http2";
import { isIPv4, type AddressInfo, type Server } from "node:net";
import { parseEndpoint, type Endpoint } from "./endpoint.ts";
import type { ControlAnswer, ControlRequest } from "./control-schema.ts";
import { inboundServer, type Deliver } from "./inbound.ts";
import { TransportMetrics } from "./metrics.ts";
import { originResolver, OriginTable } from "./origins.ts";
import { OutcomeBuffer } from "./outcomes.ts";
import { outboundListener, proxyTargetListener } from "./outbound.ts";
import { PROXY_TARGET_NAME, proxyTargetPath } from "./proxy-targets.ts";
import { chmodSync, lstatSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { SessionPool } from "./pool.ts";
import { listeningSocket } from "./sockets.ts";
import { ConfigError, emptyConfig, TransportState } from "./state.ts";
import { tlsPolicy, type KeyExchange } from "./tls-policy.ts";

export interface TransportOptions {
  inbound: Endpoint;
  outbound: Endpoint;
  keyExchange: KeyExchange;
  deliver: Deliver;
  /** SO_MARK of every socket the transport listens on or opens (the codec's MARK_TRANSPORT). */
  mark: number;
  /** Where the node's L7 proxy's targets get their unix sockets (proxy-targets.ts); absent: the proxy's hops are not taken. */
  proxyDir?: string;
}

/**
 * The target sockets' directory, made root's alone (0700, this process's
 * owner) whatever was there before: a directory others may write would let
 * any local user take a target's name and read the proxy's requests. A
 * symbolic link or another owner's directory is refused.
 */
function privateDirectory(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if (st.uid !== process.getuid?.()) throw new Error(`${dir} belongs to uid ${st.uid}, not this process's`);
  chmodSync(dir, 0o700);
  return dir;
}

/** Removes every target socket (proxy-targets.ts names) in `dir`: at start, nothing listens on any. */
function clearStaleTargets(dir: string): void {
  for (const name of readdirSync(dir)) if (PROXY_TARGET_NAME.test(name)) rmSync(join(dir, name), { force: true });
}

/** After listen: an accept that fails (EMFILE) is said on stderr (the agent's log), never the end of the transport. */
function keepListening(s: Server | Http2SecureServer): void {
  s.on("error", (err: Error) => process.stderr.write(`transport listener error: ${err.message}\n`));
}

export class Transport {
  readonly metrics = new TransportMetrics();
  readonly outcomes = new OutcomeBuffer();
  private readonly tls;
  private state: TransportState;
  private readonly origins = new OriginTable();
  private readonly pool: SessionPool;
  private readonly inbound: Http2SecureServer;
  private readonly outbound: Server;
  /** The proxy's target listeners by "ip:port" (proxy-targets.ts). */
  private readonly proxyListeners = new Map<string, Server>();

  private readonly options: TransportOptions;

  constructor(options: TransportOptions) {
    this.options = options;
    this.tls = tlsPolicy(options.keyExchange);
    this.state = new TransportState(emptyConfig(), this.tls);
    this.pool = new SessionPool(this.tls, this.metrics, this.outcomes, options.mark);
    const state = () => this.state;
    this.inbound = inboundServer({ state, tls: this.tls, metrics: this.metrics, outcomes: this.outcomes, deliver: options.deliver });
    const listening = (): Endpoint => {
      const a = this.outbound.address() as AddressInfo | null;
      return { address: a?.address ?? options.outbound.address, port: a?.port ?? options.outbound.port };
    };
    this.outbound = outboundListener({ state, origins: originResolver(listening, this.origins), pool: this.pool, metrics: this.metrics, outcomes: this.outcomes });
  }

  /**
   * Listens on both ports. The outbound listener is IP_TRANSPARENT: the
   * kernel assigns it steered connections for any destination. Both carry
   * the mark, which the sockets they accept inherit.
   */
  async listen(): Promise<{ inbound: number; outbound: number }> {
    // A dead transport's target sockets are gone before anything listens: none is left named as a target.
    if (this.options.proxyDir !== undefined) clearStaleTargets(privateDirectory(this.options.proxyDir));
    const listen = (s: Server, at: Endpoint, transparent: boolean) =>
      new Promise<number>((resolve, reject) => {
        s.once("error", reject);
        s.listen(listeningSocket(at, { mark: this.options.mark, transparent }), () => {
          s.off("error", reject);
          keepListening(s);
          resolve((s.address() as AddressInfo).port);
        });
      });
    return { inbound: await listen(this.inbound, this.options.inbound, false), outbound: await listen(this.outbound, this.options.outbound, true) };
  }

  async handle(request: ControlRequest): Promise<Omit<ControlAnswer, "id">> {
    switch (request.op) {
      case "configure": {
        // Built whole before it replaces anything: a refused config leaves the running one as it was.
        const next = new TransportState(request.config, this.tls);
        const stale = await this.listenForProxy(next);
        this.state = next;
        for (const key of stale) this.closeProxyListener(key);
        this.pool.retire(next);
        const c = request.config;
        this.metrics.configured({ workloads: c.workloads.length, bundles: c.bundles.length, remotes: c.remotes.length, allow: c.allow.length });
        return { ok: true };
      }
      case "steer": {
        const destination = parseEndpoint(request.destination);
        if (!destination || !parseEndpoint(request.peer) || !isIPv4(request.source)) return { ok: false, error: "steer wants peer and destination as IPV4:PORT and source as IPV4" };
        this.origins.record(request.peer, { source: request.source, destination });
        return { ok: true };
      }
      case "metrics":
        return { ok: true, metrics: await this.metrics.text() };
      case "events":
        return { ok: true, ...this.outcomes.drain() };
    }
  }

  /**
   * Opens the sockets of `next`'s proxy targets that are not open yet, all or
   * none (a failure closes the ones just opened and refuses the config).
   * Answers the open ones `next` drops, for closing once it is in force.
   */
  private async listenForProxy(next: TransportState): Promise<string[]> {
    const dir = this.options.proxyDir;
    if (dir === undefined) return [];
    const opened: string[] = [];
    try {
      if (next.proxyTargets.size > 0) privateDirectory(dir);
      for (const [key, target] of next.proxyTargets) {
        if (this.proxyListeners.has(key)) continue;
        const path = proxyTargetPath(dir, target);
        rmSync(path, { force: true });
        const server = proxyTargetListener({ state: () => this.state, pool: this.pool, metrics: this.metrics, outcomes: this.outcomes }, target);
        await new Promise<void>((resolve, reject) => {
          server.once("error", reject);
          server.listen(path, () => {
            server.off("error", reject);
            keepListening(server);
            resolve();
          });
        });
        chmodSync(path, 0o600);
        this.proxyListeners.set(key, server);
        opened.push(key);
      }
    } catch (err) {
      for (const key of opened) this.closeProxyListener(key);
      throw new ConfigError(`proxy target socket: ${(err as Error).message}`);
    }
    return [...this.proxyListeners.keys()].filter((key) => !next.proxyTargets.has(key));
  }

  private closeProxyListener(key: string): void {
    const server = this.proxyListeners.get(key);
    if (!server) return;
    this.proxyListeners.delete(key);
    const path = server.address();
    server.close();
    if (typeof path === "string") rmSync(path, { force: true });
  }

  close(): void {
    for (const key of [...this.proxyListeners.keys()]) this.closeProxyListener(key);
    this.outbound.close();
    this.inbound.close();
    this.pool.closeAll();
  }
}
