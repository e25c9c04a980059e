import { eq } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { tenants } from "../db/schema.ts";
import { read } from "../db/transactions.ts";
import type { ChangeFeed } from "./change-feed.ts";

export type TenantRow = typeof tenants.$inferSelect;

/** Entries expire even without a notification, in case a LISTEN connection was lost. */
const MAX_AGE_MS = 10_000;
const MAX_ENTRIES = 10_000;

/**
 * Tenant name -> row, cached because every tenant route resolves its path's
 * tenant first. Invalidated by the change feed; a generation counter keeps a
 * read that raced an invalidation from caching the old row.
 */
export class TenantDirectory {
  private readonly cache = new Map<string, { row: TenantRow | null; at: number }>();
  private generation = 0;

  constructor(
    private readonly db: Db,
    feed: ChangeFeed,
  ) {
    feed.subscribe((event) => {
      if (event.kind !== "tenant") return;
      this.generation++;
      this.cache.delete(event.name);
    });
  }

  async byName(name: string): Promise<TenantRow | null> {
    const hit = this.cache.get(name);
    if (hit && Date.now() - hit.at < MAX_AGE_MS) return hit.row;
    const generation = this.generation;
    const [row] = await read(this.db, null, (tx) => tx.select().from(tenants).where(eq(tenants.name, name)));
    if (generation === this.generation) {
      if (this.cache.size >= MAX_ENTRIES) this.cache.clear();
      this.cache.set(name, { row: row ?? null, at: Date.now() });
    }
    return row ?? null;
  }
}
