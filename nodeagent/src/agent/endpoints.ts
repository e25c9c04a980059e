// SPDX-License-Identifier: Apache-2.0
/**
 * The API endpoints an agent may talk to: every --api URL, and for a URL
 * whose host is a name, each address the name resolves to. One endpoint is
 * current and every call starts there (sticky: a healthy replica keeps its
 * agents, and their held polls, instead of spreading each request); a
 * failed call moves the set to the next endpoint at once. The client
 * (client.ts) walks one round over the set per call and gives up, for its
 * caller's backoff, only when every endpoint failed.
 *
 * An address of a name is reached with the URL unchanged and only the
 * socket's lookup pinned to it: the Host header, the TLS server name and the
 * certificate's name check all stay the host name's.
 */
import { lookup as dnsLookup } from "node:dns/promises";
import { isIP, type LookupFunction } from "node:net";
import { Agent } from "undici";
import { fetchThrough } from "./api-trust.ts";

/** The addresses a host name resolves to, in the order to try them. */
export type Resolver = (host: string) => Promise<string[]>;

export const systemResolver: Resolver = async (host) => (await dnsLookup(host, { all: true })).map((a) => a.address);

/** More addresses than this per name are not tried (and not given a metrics index). */
export const MAX_ADDRESSES_PER_NAME = 16;

export interface Endpoint {
  /** Position in the set's order (URLs as configured, then each name's addresses): the metrics' index. */
  readonly index: number;
  /** The base URL as configured, host name kept. */
  readonly base: string;
  /** The address the socket connects to; null when the URL's host is an address, or its name did not resolve. */
  readonly address: string | null;
  /** The base URL, and the address when pinned, for logs and messages. */
  readonly label: string;
  /** fetch connecting to this endpoint, trusting the set's CA over https. */
  readonly fetch: typeof fetch;
  /** The same for node:http(s).request: the pinned lookup and the CA. */
  readonly requestOptions: { lookup?: LookupFunction; ca?: string };
}

export interface EndpointSetOptions {
  /** The CA every https endpoint's certificate must chain to (api-trust.ts); null: the system's roots. */
  caPem?: string | null;
  resolve?: Resolver;
  /** fetch for endpoints needing neither a CA nor a pinned address; Node's by default (tests inject one). */
  fetch?: typeof fetch;
  /** Called when the current endpoint changes after a failure. */
  onSwitch?: (from: Endpoint, to: Endpoint, reason: string) => void;
}

/** The lookup of a socket that must reach `address` whatever the host name says. */
function pinnedLookup(address: string): LookupFunction {
  const family = isIP(address);
  return ((_host: string, options: unknown, callback?: unknown) => {
    const cb = (typeof options === "function" ? options : callback) as (...args: unknown[]) => void;
    // Node asks for every address (all: true) when it tries families in turn (autoSelectFamily).
    if (typeof options === "object" && options !== null && (options as { all?: boolean }).all) cb(null, [{ address, family }]);
    else cb(null, address, family);
  }) as LookupFunction;
}

/** A URL's host as an address, or null when it is a name ([::1] without brackets). */
function hostAddress(url: URL): string | null {
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  return isIP(host) ? host : null;
}

export class EndpointSet {
  private endpoints: Endpoint[] = [];
  /** Dispatchers by endpoint label, kept across re-resolutions so connections survive them. */
  private readonly dispatchers = new Map<string, Agent>();
  private current: Endpoint | null = null;
  /** Re-resolve before the next round: never resolved, or a whole round failed (the names may point elsewhere now). */
  private stale = true;
  private resolving: Promise<void> | null = null;
  private readonly resolve: Resolver;
  /** Times the current endpoint changed after a failure (weft_agent_api_endpoint_switches_total). */
  switches = 0;

  constructor(
    readonly urls: readonly string[],
    private readonly o: EndpointSetOptions = {},
  ) {
    if (urls.length === 0) throw new Error("failed to configure the API endpoints: no URL");
    this.resolve = o.resolve ?? systemResolver;
  }

  /** The endpoint calls start from; null before the first round. */
  get active(): Endpoint | null {
    return this.current;
  }

  /** Every endpoint as last resolved. */
  get all(): readonly Endpoint[] {
    return this.endpoints;
  }

  /** One round: every endpoint once, the current one first, then the others in order after it. */
  async round(): Promise<Endpoint[]> {
    if (this.stale) await (this.resolving ??= this.refresh().finally(() => (this.resolving = null)));
    const list = this.endpoints;
    const at = Math.max(0, this.current ? list.findIndex((e) => e.label === this.current!.label) : 0);
    return [...list.slice(at), ...list.slice(0, at)];
  }

  /** `ep` failed a call: if it is still the current one, the next becomes current (a failure another call saw already moves nothing). */
  failed(ep: Endpoint, reason: string): void {
    if (this.current?.label !== ep.label || this.endpoints.length < 2) return;
    const next = this.endpoints[(this.endpoints.findIndex((e) => e.label === ep.label) + 1) % this.endpoints.length]!;
    this.current = next;
    this.switches++;
    this.o.onSwitch?.(ep, next, reason);
  }

  /** Every endpoint failed one call: resolve the names again before the next round. */
  roundFailed(): void {
    this.stale = true;
  }

  /** Closes the connections of every endpoint. */
  async close(): Promise<void> {
    const agents = [...this.dispatchers.values()];
    this.dispatchers.clear();
    await Promise.all(agents.map((a) => a.close().catch(() => undefined)));
  }

  private async refresh(): Promise<void> {
    const next: Endpoint[] = [];
    for (const base of this.urls) {
      const url = new URL(base);
      let addresses: (string | null)[] = [null];
      if (hostAddress(url) === null) {
        try {
          const found = [...new Set(await this.resolve(url.hostname))].slice(0, MAX_ADDRESSES_PER_NAME);
          if (found.length > 0) addresses = found;
        } catch {
          // Unresolved now: the endpoint stays, connecting by name, and fails (or succeeds) as a request would.
        }
      }
      for (const address of addresses) next.push(this.endpoint(next.length, base, address));
    }
    const keep = new Set(next.map((e) => e.label));
    for (const [label, agent] of this.dispatchers) {
      if (keep.has(label)) continue;
      this.dispatchers.delete(label);
      void agent.close().catch(() => undefined);
    }
    this.endpoints = next;
    // Sticky across re-resolution: the endpoint in use stays current while it still exists.
    this.current = next.find((e) => e.label === this.current?.label) ?? next[0]!;
    this.stale = false;
  }

  private endpoint(index: number, base: string, address: string | null): Endpoint {
    const label = address === null ? base : `${base} (${address})`;
    const ca = this.o.caPem ?? null;
    const lookup = address === null ? undefined : pinnedLookup(address);
    const requestOptions = { ...(lookup ? { lookup } : {}), ...(ca !== null ? { ca } : {}) };
    if (!lookup && ca === null) return { index, base, address, label, fetch: this.o.fetch ?? fetch, requestOptions };
    let dispatcher = this.dispatchers.get(label);
    if (!dispatcher) {
      dispatcher = new Agent({ connect: requestOptions });
      this.dispatchers.set(label, dispatcher);
    }
    return { index, base, address, label, fetch: fetchThrough(dispatcher), requestOptions };
  }
}
