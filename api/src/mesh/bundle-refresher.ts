/**
 * Keeps each endpoint federation's last good bundle in Postgres
 * (federation_endpoint_bundles), so the compiler's L7 documents carry its
 * jwt-svid keys (follower/jwt-keys.ts) whether or not anyone reads the
 * federation.
 *
 * Each pass fetches every federation that names an endpoint when its fetch
 * is due (BundleEndpoints.fresh: the refresh hint within the floor and the
 * ceiling, the allow-list checked before every fetch, the answer checked as
 * a pasted bundle). Its keys are stored only when they differ from the
 * stored ones, through the one write sequence (write.ts writeMeshRow:
 * change log kind "federation", so every replica's follower recompiles the
 * tenant's keys; an audit entry by "system:bundle-refresher"). A failed
 * fetch, or an endpoint that starts serving garbage, stores nothing: the
 * last good keys stay. A rotation at the endpoint reaches the documents at
 * the first refresh that sees it: the stored keys are replaced by the
 * endpoint's new set (the SPIFFE way is to publish a key before signing with
 * it). An endpoint the operator no longer allows loses its stored bundle, as
 * it loses its cached one.
 *
 * Every replica refreshes, each fetching on its own. The write is
 * conditional under the federation's row lock: replicas that fetched the same
 * new bundle store it once, and one that finds nothing to change rolls back
 * without taking a revision. Replicas told different bundles (an endpoint
 * mid-rotation behind a balancer) each store what they saw, until the
 * endpoint's settled bundle wins at the next refreshes.
 */
import { and, eq, sql } from "drizzle-orm";
import type { FastifyBaseLogger } from "fastify";
import type { Db } from "../db/client.ts";
import { platformRead } from "../db/platform-read.ts";
import { federationEndpointBundles, federations } from "../db/schema.ts";
import type { WriteScope } from "../db/transactions.ts";
import { endpointUrlProblem, sourceKey, type BundleEndpoints, type EndpointSource, type EndpointState, type Jwks } from "./bundle-endpoints.ts";
import type { SystemWrite } from "./liveness.ts";
import { writeMeshRow } from "./write.ts";
import { repeatEvery, type Repeating } from "../services/repeating.ts";

const ACTOR = "system:bundle-refresher";
/** Endpoints fetched at once in a pass: one that hangs costs its timeout, not the pass's. */
const PARALLEL_FETCHES = 8;

/** An endpoint federation as a pass sees it: its endpoint and what is stored for it. */
export interface EndpointFederation {
  tenantId: number;
  name: string;
  source: EndpointSource;
  stored: { source: string; bundle: unknown } | null;
}

/** What a pass does for one federation: store these keys, withdraw the stored ones, or nothing. */
export type RefreshStep = { op: "store"; keys: Jwks } | { op: "withdraw" } | null;

/** JSON text with object members sorted: Postgres gives jsonb back with its members reordered. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const o = value as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value);
}

/** Whether `stored` already holds `keys` from `source`. */
const holds = (stored: EndpointFederation["stored"], source: string, keys: Jwks): boolean =>
  stored !== null && stored.source === source && canonicalJson(stored.bundle) === canonicalJson(keys);

/**
 * The step for a federation, given its endpoint's state: a disallowed
 * endpoint withdraws what is stored; a good fetch stores its keys when they
 * differ (only the keys: a new spiffe_sequence or refresh hint alone changes
 * nothing the proxy verifies with); a failed one keeps what is stored.
 */
export function refreshStep(f: EndpointFederation, state: EndpointState, allowed: readonly string[]): RefreshStep {
  if (endpointUrlProblem(f.source.endpointUrl, allowed) !== null) return f.stored ? { op: "withdraw" } : null;
  if (!state.ok || state.jwks === null) return null;
  const keys = { keys: state.jwks.keys };
  return holds(f.stored, sourceKey(f.source), keys) ? null : { op: "store", keys };
}

/** Every federation naming an endpoint, with its stored bundle: across tenants, as the platform role. */
export function endpointFederations(db: Db): Promise<EndpointFederation[]> {
  return platformRead(db, async (tx) => {
    const rows = await tx
      .select({
        tenantId: federations.tenantId,
        name: federations.name,
        bundle: federations.bundle,
        storedSource: federationEndpointBundles.source,
        storedBundle: federationEndpointBundles.bundle,
      })
      .from(federations)
      .leftJoin(federationEndpointBundles, and(eq(federationEndpointBundles.tenantId, federations.tenantId), eq(federationEndpointBundles.name, federations.name)))
      .where(sql`${federations.bundle} ->> 'endpointUrl' IS NOT NULL`);
    return rows.map((r) => ({
      tenantId: r.tenantId,
      name: r.name,
      source: r.bundle as EndpointSource,
      stored: r.storedSource === null ? null : { source: r.storedSource, bundle: r.storedBundle },
    }));
  });
}

/** Thrown inside a write that finds nothing to change: it rolls back, and takes no revision. */
class Unchanged extends Error {}

/**
 * Applies a step in one write, bound to the federation's tenant (row-level
 * security: the row can only be the tenant's own), under the federation's
 * row lock, re-checking what the pass saw: the federation still names the
 * same endpoint, the stored keys still differ. Answers whether it wrote.
 */
export async function applyStep(writeSystem: SystemWrite, f: EndpointFederation, step: Exclude<RefreshStep, null>): Promise<boolean> {
  const source = sourceKey(f.source);
  const byName = (t: typeof federations | typeof federationEndpointBundles) => and(eq(t.tenantId, f.tenantId), eq(t.name, f.name));
  try {
    return await writeSystem(ACTOR, async (w: WriteScope) => {
      await w.setTenant(f.tenantId);
      return writeMeshRow(w, undefined, {
        kind: "federation",
        tenantId: f.tenantId,
        name: f.name,
        lock: async () => (await w.tx.select().from(federations).where(byName(federations)).for("update"))[0],
        apply: async (fed) => {
          const [stored] = await w.tx.select().from(federationEndpointBundles).where(byName(federationEndpointBundles));
          if (step.op === "withdraw") {
            if (!stored) throw new Unchanged();
            await w.tx.delete(federationEndpointBundles).where(byName(federationEndpointBundles));
            return { change: null, op: "upsert", action: "federation.bundle-withdrawn", result: true };
          }
          // The federation may have been pointed elsewhere, or deleted, since the fetch began.
          const now = fed?.bundle as Partial<EndpointSource> | undefined;
          if (typeof now?.endpointUrl !== "string" || sourceKey(now as EndpointSource) !== source) throw new Unchanged();
          if (holds(stored ?? null, source, step.keys)) throw new Unchanged();
          const values = { source, bundle: step.keys, updatedAt: new Date() };
          await w.tx
            .insert(federationEndpointBundles)
            .values({ tenantId: f.tenantId, name: f.name, ...values })
            .onConflictDoUpdate({ target: [federationEndpointBundles.tenantId, federationEndpointBundles.name], set: values });
          return { change: null, op: "upsert", action: "federation.bundle-fetched", result: true };
        },
      });
    });
  } catch (err) {
    if (err instanceof Unchanged) return false;
    throw err;
  }
}

/** What one pass did, as tenantId/name. */
export interface RefreshOutcome {
  stored: string[];
  withdrawn: string[];
}

/** The refresh on a timer, every replica; `refresh()` runs a pass now (after the one in flight). */
export class BundleRefresher {
  #repeating: Repeating | undefined;
  #last: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly db: Db,
    private readonly endpoints: BundleEndpoints,
    private readonly allowed: readonly string[],
    private readonly writeSystem: SystemWrite,
    private readonly log: FastifyBaseLogger,
    /** Between passes: the refresh floor is the most often any federation is due. */
    private readonly everyMs: number,
  ) {}

  /** One pass; passes never overlap. */
  refresh(): Promise<RefreshOutcome> {
    const run = this.#last.then(() => this.pass());
    this.#last = run.catch(() => undefined);
    return run;
  }

  private async pass(): Promise<RefreshOutcome> {
    const out: RefreshOutcome = { stored: [], withdrawn: [] };
    const queue = await endpointFederations(this.db);
    const worker = async () => {
      for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
        const state = await this.endpoints.fresh(f.tenantId, f.name, f.source);
        const step = refreshStep(f, state, this.allowed);
        if (step === null) {
          if (!state.ok) this.log.debug({ tenantId: f.tenantId, federation: f.name, reason: state.reason }, "bundle endpoint failed; the stored bundle is kept");
          continue;
        }
        try {
          if (!(await applyStep(this.writeSystem, f, step))) continue;
        } catch (err) {
          this.log.warn({ err, tenantId: f.tenantId, federation: f.name }, "storing a fetched bundle failed; retrying at the next pass");
          continue;
        }
        (step.op === "store" ? out.stored : out.withdrawn).push(`${f.tenantId}/${f.name}`);
        this.log.info({ tenantId: f.tenantId, federation: f.name, op: step.op }, "bundle endpoint: the stored bundle changed");
      }
    };
    await Promise.all(Array.from({ length: PARALLEL_FETCHES }, worker));
    return out;
  }

  start(): void {
    this.#repeating = repeatEvery(this.everyMs, () => this.refresh(), (err) => this.log.error({ err }, "bundle refresh failed"));
  }

  /** Stops the timer and waits for a pass in flight (refresh() included), so the database is not closed under it. */
  async stop(): Promise<void> {
    await this.#repeating?.stop();
    await this.#last;
  }
}
