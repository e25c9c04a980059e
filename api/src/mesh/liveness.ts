/**
 * Node liveness, decided by the API and never by an agent guessing: a node
 * whose agent sent no status for the grace period (WEFT_NODE_GRACE_SECONDS)
 * is marked unreachable, and its next report marks it reachable again. Both
 * are writes (change log kind "node"), so every replica's follower recompiles
 * and every other node's LB tables withdraw or restore the backends on it
 * (compiler/services.ts). Agents keep their last good state meanwhile.
 *
 * Every replica sweeps; the conditional UPDATE under the write's revision
 * lock makes concurrent sweeps harmless. A replica sweeps only after it has
 * been up for one grace period: after an outage of the whole API every
 * report is old, and the agents need one heartbeat to say they are alive.
 */
import { and, eq, isNotNull, isNull, lt, sql } from "drizzle-orm";
import type { FastifyBaseLogger } from "fastify";
import { NODE_KIND, PLATFORM_TENANT_ID } from "../auth/node-credentials.ts";
import type { Db } from "../db/client.ts";
import { nodes } from "../db/schema.ts";
import { read, type WriteScope } from "../db/transactions.ts";

/** Runs a write as the system (no request): the app's writeSystem, which also tells this replica's caches. */
export type SystemWrite = <T>(actor: string, body: (w: WriteScope) => Promise<T>) => Promise<T>;

const silentSince = (graceSeconds: number) =>
  and(isNull(nodes.unreachableSince), lt(sql`coalesce(${nodes.statusAt}, ${nodes.createdAt})`, sql`now() - make_interval(secs => ${graceSeconds})`));

/** Marks every node silent for longer than the grace unreachable, in one write; answers their names. */
export async function markSilentNodes(db: Db, writeSystem: SystemWrite, graceSeconds: number): Promise<string[]> {
  // Most sweeps find nothing: a read first, so they take no revision.
  const any = await read(db, null, (tx) => tx.select({ name: nodes.name }).from(nodes).where(silentSince(graceSeconds)).limit(1));
  if (any.length === 0) return [];
  return writeSystem("system:liveness", async (w) => {
    const marked = await w.tx.update(nodes).set({ unreachableSince: sql`now()` }).where(silentSince(graceSeconds)).returning({ name: nodes.name });
    for (const { name } of marked) await w.record({ tenantId: PLATFORM_TENANT_ID, kind: NODE_KIND, name, op: "upsert" }, "node.unreachable");
    return marked.map((m) => m.name).sort();
  });
}

/** In the write of a status report: a node marked unreachable is reachable again. Answers whether it was marked. */
export async function markReachable(w: WriteScope, node: string): Promise<boolean> {
  const [cleared] = await w.tx
    .update(nodes)
    .set({ unreachableSince: null })
    .where(and(eq(nodes.name, node), isNotNull(nodes.unreachableSince)))
    .returning({ name: nodes.name });
  if (!cleared) return false;
  await w.record({ tenantId: PLATFORM_TENANT_ID, kind: NODE_KIND, name: node, op: "upsert" }, "node.reachable");
  return true;
}

/** The sweep on a timer: every fifth of the grace (at least once a second), after one grace of uptime. */
export class LivenessSweeper {
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(
    private readonly db: Db,
    private readonly writeSystem: SystemWrite,
    private readonly graceSeconds: number,
    private readonly log: FastifyBaseLogger,
  ) {}

  async sweep(): Promise<string[]> {
    const marked = await markSilentNodes(this.db, this.writeSystem, this.graceSeconds);
    if (marked.length > 0) this.log.warn({ nodes: marked, graceSeconds: this.graceSeconds }, "nodes unreachable: no status within the grace period; their backends are withdrawn");
    return marked;
  }

  start(): void {
    const every = Math.max(1_000, (this.graceSeconds * 1_000) / 5);
    const tick = (delay: number) => {
      this.#timer = setTimeout(() => {
        this.#running = this.sweep()
          .then(() => undefined)
          .catch((err: unknown) => this.log.error({ err }, "liveness sweep failed"))
          .finally(() => {
            this.#running = undefined;
            if (!this.#stopped) tick(every);
          });
      }, delay);
      this.#timer.unref();
    };
    tick(this.graceSeconds * 1_000);
  }

  /** Stops the timer and waits for a sweep in flight, so the database is not closed under it. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }
}
