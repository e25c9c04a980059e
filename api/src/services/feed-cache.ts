import type { ChangeEvent, ChangeFeed } from "./change-feed.ts";

/**
 * A read-through cache whose entries the change feed invalidates: at once
 * for this replica's own commits, through NOTIFY for other replicas', and by
 * age in case a LISTEN connection was lost. A generation counter keeps a load
 * that raced an invalidation from caching what it read before it.
 */
export class FeedCache<V> {
  readonly #entries = new Map<string, { value: V; at: number }>();
  #generation = 0;

  constructor(
    feed: ChangeFeed,
    /** The key an event invalidates, or null if it does not concern this cache. */
    keyOf: (event: ChangeEvent) => string | null,
    private readonly maxAgeMs = 10_000,
    private readonly maxEntries = 10_000,
  ) {
    feed.subscribe((event) => {
      const key = keyOf(event);
      if (key !== null) this.delete(key);
    });
  }

  async get(key: string, load: () => Promise<V>): Promise<V> {
    const hit = this.#entries.get(key);
    if (hit && Date.now() - hit.at < this.maxAgeMs) return hit.value;
    const generation = this.#generation;
    const value = await load();
    if (generation === this.#generation) this.set(key, value);
    return value;
  }

  set(key: string, value: V): void {
    if (this.#entries.size >= this.maxEntries) this.#entries.clear();
    this.#entries.set(key, { value, at: Date.now() });
  }

  peek(key: string): V | undefined {
    const hit = this.#entries.get(key);
    return hit && Date.now() - hit.at < this.maxAgeMs ? hit.value : undefined;
  }

  delete(key: string): void {
    this.#generation++;
    this.#entries.delete(key);
  }
}
