// When to rotate: a timer that asks CaService.runSchedule (SPIRE's
// thresholds, ca/rotation.ts) what is due for each tenant. The mechanics
// live in the CA library; this only decides how often to ask. Every replica
// may run it: the store's compare-and-swap makes concurrent runs harmless.
import type { FastifyBaseLogger } from "fastify";
import { systemCaller, type CaService } from "./service.ts";
import type { Db } from "../db/client.ts";
import { tenants } from "../db/schema.ts";
import { read } from "../db/transactions.ts";
import { repeatEvery, type Repeating } from "../services/repeating.ts";

/** A CA lives 24 h and acts at 12 h and 20 h; checking every minute is close enough and cheap. */
export const ROTATION_INTERVAL_MS = 60_000;
const CALLER = systemCaller("system:ca-rotation");

export class CaRotationScheduler {
  #repeating: Repeating | undefined;
  /** Read by a pass between tenants: stop() does not wait for the rest of a long pass. */
  #stopped = false;

  constructor(
    private readonly db: Db,
    private readonly ca: CaService,
    private readonly log: FastifyBaseLogger,
    private readonly intervalMs = ROTATION_INTERVAL_MS,
  ) {}

  /** One pass over every tenant; also bootstraps a CA for a tenant that has none. */
  async runOnce(): Promise<void> {
    const all = await read(this.db, null, (tx) => tx.select({ id: tenants.id, trustDomain: tenants.trustDomain }).from(tenants));
    for (const t of all) {
      if (this.#stopped) return;
      try {
        const done = await this.ca.runSchedule(String(t.id), t.trustDomain, CALLER);
        if (done.length) this.log.info({ tenantId: t.id, actions: done.map((a) => a.kind) }, "CA rotation");
      } catch (err) {
        // One tenant's failure (a deleted tenant, a lost race) must not stop the others.
        this.log.error({ err, tenantId: t.id }, "CA rotation failed for a tenant");
      }
    }
  }

  start(): void {
    this.#repeating = repeatEvery(this.intervalMs, () => this.runOnce(), (err) => this.log.error({ err }, "CA rotation pass failed"));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#repeating?.stop();
  }
}
