import { eq } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { tenants } from "../db/schema.ts";
import { read } from "../db/transactions.ts";
import type { ChangeFeed } from "./change-feed.ts";
import { FeedCache } from "./feed-cache.ts";

export type TenantDbRow = typeof tenants.$inferSelect;

/**
 * Tenant name -> row, cached because every tenant route resolves its path's
 * tenant first. A missing tenant is cached too (as null); creating it is a
 * change that invalidates the entry.
 */
export class TenantDirectory {
  private readonly cache: FeedCache<TenantDbRow | null>;

  constructor(
    private readonly db: Db,
    feed: ChangeFeed,
  ) {
    this.cache = new FeedCache(feed, (event) => (event.kind === "tenant" ? event.name : null));
  }

  /**
   * The cached answer of byName without a promise, or undefined when it is
   * not cached (or too old): the hot read path resolves its tenant here and
   * falls back to byName only on a miss.
   */
  peek(name: string): TenantDbRow | null | undefined {
    return this.cache.peek(name);
  }

  byName(name: string): Promise<TenantDbRow | null> {
    return this.cache.get(name, async () => {
      const [row] = await read(this.db, null, (tx) => tx.select().from(tenants).where(eq(tenants.name, name)));
      return row ?? null;
    });
  }
}
