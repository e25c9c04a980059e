import { createHash, randomBytes } from "node:crypto";
import { inArray } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { nodes } from "../db/schema.ts";
import { read } from "../db/transactions.ts";
import type { ChangeFeed } from "../services/change-feed.ts";

export const NODE_CREDENTIAL_PREFIX = "weft_node_";
export const JOIN_TOKEN_PREFIX = "weft_join_";

/** The change-feed kind of node rows (tenant id 0: platform resources no tenant sees). */
export const NODE_KIND = "node";
export const PLATFORM_TENANT_ID = 0;

/**
 * A backstop only: revocation (the node deleted or registered again) drops
 * the entry through the change feed, at once on this replica, through NOTIFY
 * on the others, and through the follower's periodic pull of the change log
 * (within 5 s) should a notification be lost. Longer than any long poll, so
 * that a polling agent is not looked up again every wait.
 */
const MAX_AGE_MS = 10 * 60_000;
/** Room for 50,000 nodes and more; past it the entry verified longest ago makes room (never the whole cache at once). */
const MAX_ENTRIES = 65_536;

/** Hex sha256: what the database keeps of node credentials and join tokens. */
export const secretHash = (secret: string): string => createHash("sha256").update(secret).digest("hex");

/** 256 random bits: a hash lookup is then as good as a constant-time compare (no secret to guess byte by byte). */
export const newSecret = (prefix: string): string => prefix + randomBytes(32).toString("base64url");

/**
 * Node credential -> node name. Agents call on every long poll and status
 * report, so a verified credential is cached and an unchanged poll reads no
 * database; the change feed drops the entry the moment its node is deleted
 * or re-registered (at once for this replica's own commits, through NOTIFY
 * for others', and again when the follower pulls the change log). Unknown
 * credentials are not cached: a node registered a moment ago must not be
 * refused by a stale miss.
 *
 * Misses are looked up together: one query at a time, and every miss that
 * arrives while it runs waits for the next, which asks for all of them. When
 * 1,000 agents come back at once (a restart, or entries aged out during a
 * slow minute) that is a handful of queries, not 1,000 transactions queued on
 * the pool (or on PGlite's one connection, ahead of every write).
 */
export class NodeCredentials {
  private readonly byHash = new Map<string, { node: string; at: number }>();
  private readonly hashOf = new Map<string, string>();
  private generation = 0;
  /** Misses waiting for the next lookup, by hash. */
  private queued = new Map<string, { resolve(node: string | null): void; reject(err: unknown): void }[]>();
  private looking = false;

  constructor(
    private readonly db: Db,
    feed: ChangeFeed,
  ) {
    feed.subscribe((event) => {
      if (event.kind !== NODE_KIND) return;
      this.generation++;
      const hash = this.hashOf.get(event.name);
      this.hashOf.delete(event.name);
      if (hash !== undefined) this.byHash.delete(hash);
    });
  }

  /** The node this credential belongs to, or null for an unknown (or deleted node's) credential. */
  async nodeOf(credential: string): Promise<string | null> {
    const hash = secretHash(credential);
    const hit = this.byHash.get(hash);
    if (hit && Date.now() - hit.at < MAX_AGE_MS) return hit.node;
    return new Promise((resolve, reject) => {
      const waiting = this.queued.get(hash);
      if (waiting) waiting.push({ resolve, reject });
      else this.queued.set(hash, [{ resolve, reject }]);
      void this.lookUp();
    });
  }

  private async lookUp(): Promise<void> {
    if (this.looking) return;
    this.looking = true;
    try {
      while (this.queued.size > 0) {
        const batch = this.queued;
        this.queued = new Map();
        const generation = this.generation;
        let rows: { name: string; hash: string }[];
        try {
          rows = await read(this.db, null, (tx) =>
            tx.select({ name: nodes.name, hash: nodes.credentialHash }).from(nodes).where(inArray(nodes.credentialHash, [...batch.keys()])),
          );
        } catch (err) {
          for (const waiters of batch.values()) for (const w of waiters) w.reject(err);
          continue;
        }
        const found = new Map(rows.map((r) => [r.hash, r.name]));
        // A node event that arrived during the read may concern these very rows: answer, but do not keep them.
        if (generation === this.generation) for (const [hash, node] of found) this.remember(hash, node);
        for (const [hash, waiters] of batch) for (const w of waiters) w.resolve(found.get(hash) ?? null);
      }
    } finally {
      this.looking = false;
    }
  }

  private remember(hash: string, node: string): void {
    // Re-inserted at the end: the Map's first entry is the one verified longest ago.
    this.byHash.delete(hash);
    const stale = this.hashOf.get(node);
    if (stale !== undefined && stale !== hash) this.byHash.delete(stale);
    while (this.byHash.size >= MAX_ENTRIES) {
      const [oldest, entry] = this.byHash.entries().next().value!;
      this.byHash.delete(oldest);
      if (this.hashOf.get(entry.node) === oldest) this.hashOf.delete(entry.node);
    }
    this.byHash.set(hash, { node, at: Date.now() });
    this.hashOf.set(node, hash);
  }
}
