/**
 * SPIFFE federation bundle endpoints, https_web profile (issue #16): a
 * federation may name a URL from which its bundle is fetched. The URL is the
 * tenant's, the fetch is the API's, so everything here is about not letting
 * a tenant aim the API at something it should not reach (SSRF):
 *
 * - the host[:port] must be on the operator's allow-list
 *   (WEFT_FEDERATION_ENDPOINTS, exact match; empty by default, refusing all);
 * - https only, no userinfo; redirects are not followed; one request at most
 *   per refresh interval per federation, with a timeout and a size cap;
 * - the answer must be JSON and a SPIFFE bundle that passes the very checks
 *   a pasted one does (federations.ts authoritiesOfJwks).
 *
 * A failed fetch never fails a request: the federation reads `unavailable`
 * with the reason, and its last good bundle, if any, is still served. The
 * cache is in memory, per replica: each replica fetches on its own, and a
 * restarted one fetches again on its first read. The refresher
 * (bundle-refresher.ts) goes through this cache too, so reads and refreshes
 * together fetch a federation's endpoint at most once per refresh interval
 * per replica; it keeps the last good bundle in Postgres for the compiler.
 */
import { X509Certificate } from "node:crypto";
import { request as httpsRequest } from "node:https";
import { Value } from "@sinclair/typebox/value";
import { SpiffeBundleJwks } from "./specs.ts";

export type Jwks = { keys: Record<string, unknown>[] };

/** What a federation's endpoint gave: the last good bundle (if any) and whether the last try succeeded. */
export interface EndpointState {
  jwks: Jwks | null;
  ok: boolean;
  /** Why the last try failed; absent when it succeeded. */
  reason?: string;
}

export interface EndpointSource {
  endpointUrl: string;
  endpointCa?: string | undefined;
}

export interface BundleEndpointOptions {
  /** host:port entries (lowercase, port explicit) the operator allows. */
  allowed: readonly string[];
  /** Whole-request timeout; default 5 s. */
  timeoutMs?: number;
  /** Floor of the refresh interval (and the retry interval after a failure); default 30 s. */
  minRefreshMs?: number;
  /** Validates a fetched bundle; returns the first problem, or null. */
  validate(jwks: Jwks): string | null;
}

export const MAX_BUNDLE_BYTES = 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 5000;
/** The default floor of the refresh interval, and the refresher's pass interval (bundle-refresher.ts). */
export const MIN_REFRESH_MS = 30_000;
const MAX_REFRESH_MS = 3_600_000;
const DEFAULT_REFRESH_MS = 300_000;
/** Federations remembered per replica; the oldest entry goes first past it. */
const MAX_ENTRIES = 10_000;

/** "host:port" of an https URL or an allow-list entry, lowercase, the port explicit (443 by default). */
export function endpointHostOf(url: URL): string {
  return `${url.hostname.toLowerCase()}:${url.port || "443"}`;
}

/** An allow-list entry (host or host:port) in endpointHostOf's form, or null when it is not one. */
export function allowedEndpointEntry(raw: string): string | null {
  if (raw === "" || /[/?#@\s\\]/.test(raw)) return null;
  let url: URL;
  try {
    url = new URL(`https://${raw}`);
  } catch {
    return null;
  }
  if (url.pathname !== "/" || url.search !== "" || url.username !== "" || url.password !== "") return null;
  return endpointHostOf(url);
}

/** The certificates of a PEM text: at least one, each a parsable certificate; else the problem. */
export function certificatesOfPem(pem: string): string[] | string {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) return "holds no PEM CERTIFICATE block";
  for (const [i, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch {
      return `certificate ${i} does not parse`;
    }
  }
  return blocks;
}

/**
 * Why an endpoint URL is refused for writing (with the field's message), or
 * null when it may be fetched: https, no userinfo or fragment, an allowed host.
 */
export function endpointUrlProblem(raw: string, allowed: readonly string[]): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return "is not a URL";
  }
  if (url.protocol !== "https:") return "must be an https:// URL (the https_web profile)";
  if (url.username !== "" || url.password !== "") return "must not carry userinfo";
  if (url.hash !== "") return "must not carry a fragment";
  const host = endpointHostOf(url);
  if (!allowed.includes(host)) return `host ${host} is not allowed: the operator must allow it in WEFT_FEDERATION_ENDPOINTS`;
  return null;
}

interface Entry {
  fingerprint: string;
  state: EndpointState | null;
  /** When the next fetch is due (ms since the epoch). */
  due: number;
  inflight: Promise<EndpointState> | null;
}

class FetchFailure extends Error {}

/** Which endpoint a bundle came from: its URL and the CA trusted for it (another CA may reach another server). */
export const sourceKey = (source: EndpointSource): string => JSON.stringify([source.endpointUrl, source.endpointCa ?? null]);

/** The per-replica cache of endpoint bundles, keyed by tenant and federation. */
export class BundleEndpoints {
  private readonly entries = new Map<string, Entry>();
  private readonly timeoutMs: number;
  private readonly minRefreshMs: number;

  constructor(private readonly opts: BundleEndpointOptions) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.minRefreshMs = opts.minRefreshMs ?? MIN_REFRESH_MS;
  }

  /** Whether the operator allows this source's endpoint now (the allow-list may have changed since it was written). */
  allows(source: EndpointSource): boolean {
    return endpointUrlProblem(source.endpointUrl, this.opts.allowed) === null;
  }

  /** The cached state, without fetching: null when nothing was fetched yet for this source. */
  peek(tenantId: number, name: string, source: EndpointSource): EndpointState | null {
    const entry = this.entries.get(`${tenantId}/${name}`);
    return entry && entry.fingerprint === sourceKey(source) ? entry.state : null;
  }

  /**
   * The federation's state: the first read fetches (and waits); later reads
   * answer from the cache and, when it is stale, refresh in the background.
   */
  async state(tenantId: number, name: string, source: EndpointSource): Promise<EndpointState> {
    // An endpoint the operator no longer allows is no longer trusted: its last good bundle is not served either.
    const problem = endpointUrlProblem(source.endpointUrl, this.opts.allowed);
    if (problem) return { jwks: null, ok: false, reason: `endpointUrl ${problem}` };
    const entry = this.entryOf(tenantId, name, source);
    if (entry.state === null) return this.refresh(entry, source);
    if (Date.now() >= entry.due) void this.refresh(entry, source);
    return entry.state;
  }

  /**
   * For the refresher: the state after a fetch when one is due (waiting for
   * it), the cached state otherwise. The same floor and ceiling as reads, and
   * one fetch in flight per federation whoever asks.
   */
  async fresh(tenantId: number, name: string, source: EndpointSource): Promise<EndpointState> {
    const problem = endpointUrlProblem(source.endpointUrl, this.opts.allowed);
    if (problem) return { jwks: null, ok: false, reason: `endpointUrl ${problem}` };
    const entry = this.entryOf(tenantId, name, source);
    return entry.state === null || Date.now() >= entry.due ? this.refresh(entry, source) : entry.state;
  }

  /** The federation's entry, a new one when it had none or named another endpoint. */
  private entryOf(tenantId: number, name: string, source: EndpointSource): Entry {
    const key = `${tenantId}/${name}`;
    const fingerprint = sourceKey(source);
    let entry = this.entries.get(key);
    if (!entry || entry.fingerprint !== fingerprint) {
      this.entries.delete(key);
      if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
      entry = { fingerprint, state: null, due: 0, inflight: null };
      this.entries.set(key, entry);
    }
    return entry;
  }

  private refresh(entry: Entry, source: EndpointSource): Promise<EndpointState> {
    if (entry.inflight) return entry.inflight;
    entry.inflight = (async () => {
      let next: EndpointState;
      let waitMs = this.minRefreshMs;
      try {
        const jwks = await this.fetchBundle(source);
        next = { jwks, ok: true };
        const hint = (jwks as { spiffe_refresh_hint?: unknown }).spiffe_refresh_hint;
        const ms = typeof hint === "number" ? hint * 1000 : DEFAULT_REFRESH_MS;
        waitMs = Math.min(Math.max(ms, this.minRefreshMs), MAX_REFRESH_MS);
      } catch (err) {
        const reason = err instanceof FetchFailure ? err.message : `fetch failed: ${(err as Error).message}`;
        next = { jwks: entry.state?.jwks ?? null, ok: false, reason };
      }
      entry.state = next;
      entry.due = Date.now() + waitMs;
      entry.inflight = null;
      return next;
    })();
    return entry.inflight;
  }

  /** One GET: the allow-list checked again (it may have changed since the write), then the bundle validated. */
  private async fetchBundle(source: EndpointSource): Promise<Jwks> {
    const problem = endpointUrlProblem(source.endpointUrl, this.opts.allowed);
    if (problem) throw new FetchFailure(`endpointUrl ${problem}`);
    const body = await this.get(new URL(source.endpointUrl), source.endpointCa);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString("utf8"));
    } catch {
      throw new FetchFailure("the endpoint's answer is not JSON");
    }
    if (!Value.Check(SpiffeBundleJwks, parsed)) throw new FetchFailure("the endpoint's answer is not a SPIFFE bundle (a JWK set with 1 to 64 keys)");
    const invalid = this.opts.validate(parsed as Jwks);
    if (invalid) throw new FetchFailure(`the endpoint's bundle is not usable: ${invalid}`);
    return parsed as Jwks;
  }

  private get(url: URL, ca: string | undefined): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (message: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        reject(new FetchFailure(message));
      };
      const req = httpsRequest(
        url,
        {
          method: "GET",
          headers: { accept: "application/json" },
          // Given a CA, trust it instead of the Web PKI roots (Node's `ca` replaces the defaults).
          ...(ca ? { ca } : {}),
          agent: false,
          maxHeaderSize: 16 * 1024,
        },
        (res) => {
          const status = res.statusCode ?? 0;
          if (status >= 300 && status < 400) return fail(`the endpoint answered ${status}: redirects are not followed`);
          if (status !== 200) return fail(`the endpoint answered ${status}`);
          const type = String(res.headers["content-type"] ?? "");
          if (!/^application\/([a-z0-9.+-]*\+)?json\s*(;|$)/i.test(type)) return fail(`the endpoint's answer is not JSON (content-type "${type.slice(0, 100)}")`);
          const length = Number(res.headers["content-length"] ?? 0);
          if (length > MAX_BUNDLE_BYTES) return fail(`the endpoint's answer is larger than ${MAX_BUNDLE_BYTES} bytes`);
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_BUNDLE_BYTES) return fail(`the endpoint's answer is larger than ${MAX_BUNDLE_BYTES} bytes`);
            chunks.push(chunk);
          });
          res.on("end", () => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            resolve(Buffer.concat(chunks));
          });
          res.on("error", (err) => fail(`fetch failed: ${err.message}`));
        },
      );
      const timer = setTimeout(() => fail(`the endpoint did not answer within ${this.timeoutMs} ms`), this.timeoutMs);
      req.on("error", (err) => fail(`fetch failed: ${err.message}`));
      req.end();
    });
  }
}
