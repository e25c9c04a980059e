// SPDX-License-Identifier: Apache-2.0
/**
 * What the API does, as Prometheus metrics: SVIDs issued, the tenants' CA
 * expiry, long polls held, datapath compile times, how long writes hold the
 * revision lock.
 *
 * Two registries, because /metrics is open (any scraper, any tenant that can
 * reach it) and a tenant's name must not reach another tenant (DESIGN:
 * another tenant's resources answer 404, so names do not leak):
 * - `registry` (public GET /metrics): nothing names a tenant. SVIDs issued
 *   by kind, the soonest CA expiry over all tenants, held long polls, compile
 *   times.
 * - `tenantRegistry` (GET /v1/metrics/tenants, operator only): the same per
 *   tenant, labelled by tenant name (bounded by the number of tenants).
 *
 * The metrics exist before the app's parts do (the follower reports its
 * compile times from its first load): sources are attached later by watch().
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";

export type SvidKind = "x509-svid" | "jwt-svid";

/** The tenants' active CA certificates, read at each scrape. */
export interface CaExpiry {
  tenant: string;
  notAfter: Date;
}

export interface DomainSources {
  /** The active CA's notAfter of every tenant that has one. */
  caExpiries(): Promise<CaExpiry[]>;
  /** Long polls (GET .../datapath?wait=) this replica holds now. */
  heldLongPolls(): number;
  /** A failed read of the CA expiries (the scrape still answers, without those series). */
  onReadError?(err: Error): void;
  /** Milliseconds now (tests move it). */
  now?(): number;
}

/** One node's compile: from well under a millisecond (a small node) to seconds (100,000 entries). */
export const COMPILE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5] as const;

/** A write's hold of the revision lock: a few milliseconds is the norm; every writer queues behind it. */
export const WRITE_LOCK_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1] as const;

/** How long a read of the CA expiries serves scrapes. */
export const CA_READ_EVERY_MS = 30_000;

export class DomainMetrics {
  /** Public: served on GET /metrics beside the HTTP and process metrics. */
  readonly registry = new Registry();
  /** Operator only: series labelled by tenant name (GET /v1/metrics/tenants). */
  readonly tenantRegistry = new Registry();
  private sources: DomainSources | null = null;
  /** The last CA read and when: both CA gauges of one scrape, and scrapes close together, share one read. */
  private cached: { at: number; expiries: CaExpiry[] } | null = null;
  private readonly svids: Counter<"kind">;
  private readonly svidsByTenant: Counter<"tenant" | "kind">;
  private readonly compileSeconds: Histogram;
  private readonly writeLockSeconds: Histogram;

  constructor() {
    const owner = this;
    const pub = [this.registry];
    const operator = [this.tenantRegistry];
    this.svids = new Counter({ name: "weft_svids_issued_total", help: "SVIDs issued by this replica, by kind (x509-svid, jwt-svid)", labelNames: ["kind"], registers: pub });
    this.svidsByTenant = new Counter({
      name: "weft_tenant_svids_issued_total",
      help: "SVIDs issued by this replica, by tenant and kind",
      labelNames: ["tenant", "kind"],
      registers: operator,
    });
    this.compileSeconds = new Histogram({
      name: "weft_datapath_compile_seconds",
      help: "Time to compile one node's datapath state after a change that reaches it",
      buckets: [...COMPILE_BUCKETS],
      registers: pub,
    });
    this.writeLockSeconds = new Histogram({
      name: "weft_write_lock_seconds",
      help: "Time a write held the global revision lock (db/transactions.ts), from taking it to commit or rollback: all writes of all replicas queue on it",
      buckets: [...WRITE_LOCK_BUCKETS],
      registers: pub,
    });
    new Gauge({
      name: "weft_datapath_long_polls_held",
      help: "Node agents' long polls (GET /v1/nodes/{node}/datapath?wait=) this replica holds now",
      registers: pub,
      collect() {
        this.set(owner.sources?.heldLongPolls() ?? 0);
      },
    });
    new Gauge({
      name: "weft_ca_soonest_expiry_seconds",
      help: "Seconds until the first of the tenants' active CA certificates expires (negative: expired); NaN without any CA or when unreadable",
      registers: pub,
      async collect() {
        const expiries = await owner.caExpiries();
        // NaN rather than absent (an unlabelled gauge always prints): an alert on `< 7 * 86400` stays quiet.
        this.set(expiries.length ? Math.min(...expiries.map((e) => e.seconds)) : Number.NaN);
      },
    });
    new Gauge({
      name: "weft_tenant_ca_expiry_seconds",
      help: "Seconds until the tenant's active CA certificate expires (negative: expired)",
      labelNames: ["tenant"],
      registers: operator,
      async collect() {
        const expiries = await owner.caExpiries();
        this.reset();
        for (const e of expiries) this.set({ tenant: e.tenant }, e.seconds);
      },
    });
  }

  /** Attaches what the gauges read at each scrape. */
  watch(sources: DomainSources): void {
    this.sources = sources;
  }

  /** An SVID was issued for `tenant` (its name). */
  svidIssued(tenant: string, kind: SvidKind): void {
    this.svids.inc({ kind });
    this.svidsByTenant.inc({ tenant, kind });
  }

  /** A write held the revision lock for `seconds` (bound: passed as a callback). */
  readonly lockHeld = (seconds: number): void => {
    this.writeLockSeconds.observe(seconds);
  };

  /** One node's datapath compiled in `seconds`. */
  compiled(seconds: number): void {
    this.compileSeconds.observe(seconds);
  }

  /**
   * Each tenant's seconds to expiry now; [] when unreadable (said through
   * onReadError). The rows are read at most every CA_READ_EVERY_MS (a CA
   * changes by rotation, days apart; the read visits every tenant), the
   * seconds computed at each scrape.
   */
  private async caExpiries(): Promise<{ tenant: string; seconds: number }[]> {
    const s = this.sources;
    if (!s) return [];
    const now = s.now?.() ?? Date.now();
    if (!this.cached || now - this.cached.at >= CA_READ_EVERY_MS || now < this.cached.at) {
      try {
        this.cached = { at: now, expiries: await s.caExpiries() };
      } catch (err) {
        this.cached = null;
        s.onReadError?.(err as Error);
        return [];
      }
    }
    return this.cached.expiries.map((r) => ({ tenant: r.tenant, seconds: Math.round((r.notAfter.getTime() - now) / 1000) }));
  }
}
