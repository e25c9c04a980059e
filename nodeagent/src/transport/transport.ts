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
import { outboundListener } from "./outbound.ts";
import { SessionPool } from "./pool.ts";
import { listeningSocket } from "./sockets.ts";
import { emptyConfig, TransportState } from "./state.ts";
import { tlsPolicy, type KeyExchange } from "./tls-policy.ts";

export interface TransportOptions {
  inbound: Endpoint;
  outbound: Endpoint;
  keyExchange: KeyExchange;
  deliver: Deliver;
  /** SO_MARK of every socket the transport listens on or opens (the codec's MARK_TRANSPORT). */
  mark: number;
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
    const listen = (s: Server, at: Endpoint, transparent: boolean) =>
      new Promise<number>((resolve, reject) => {
        s.once("error", reject);
        s.listen(listeningSocket(at, { mark: this.options.mark, transparent }), () => resolve((s.address() as AddressInfo).port));
      });
    return { inbound: await listen(this.inbound, this.options.inbound, false), outbound: await listen(this.outbound, this.options.outbound, true) };
  }

  async handle(request: ControlRequest): Promise<Omit<ControlAnswer, "id">> {
    switch (request.op) {
      case "configure": {
        // Built whole before it replaces anything: a refused config leaves the running one as it was.
        const next = new TransportState(request.config, this.tls);
        this.state = next;
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

  close(): void {
    this.outbound.close();
    this.inbound.close();
    this.pool.closeAll();
  }
}
