import { createHash, randomBytes } from "node:crypto";
import { eq } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { nodes } from "../db/schema.ts";
import { read } from "../db/transactions.ts";
import type { ChangeFeed } from "../services/change-feed.ts";

export const NODE_CREDENTIAL_PREFIX = "weft_node_";
export const JOIN_TOKEN_PREFIX = "weft_join_";

/** The change-feed kind of node rows (tenant id 0: platform resources no tenant sees). */
export const NODE_KIND = "node";
export const PLATFORM_TENANT_ID = 0;

/** Entries expire even without a notification, in case a LISTEN connection was lost. */
const MAX_AGE_MS = 10_000;
const MAX_ENTRIES = 10_000;

/** Hex sha256: what the database keeps of node credentials and join tokens. */
export const secretHash = (secret: string): string => createHash("sha256").update(secret).digest("hex");

/** 256 random bits: a hash lookup is then as good as a constant-time compare (no secret to guess byte by byte). */
export const newSecret = (prefix: string): string => prefix + randomBytes(32).toString("base64url");

/**
 * Node credential -> node name. Agents call on every long poll and status
 * report, so a verified credential is cached; the change feed drops the entry
 * the moment its node is deleted or re-registered (at once for this replica's
 * own commits, through NOTIFY for others'). Unknown credentials are not
 * cached: a node registered a moment ago must not be refused by a stale miss.
 */
export class NodeCredentials {
  private readonly byHash = new Map<string, { node: string; at: number }>();
  private readonly hashOf = new Map<string, string>();
  private generation = 0;

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
    const generation = this.generation;
    const [row] = await read(this.db, null, (tx) =>
      tx.select({ name: nodes.name }).from(nodes).where(eq(nodes.credentialHash, hash)),
    );
    if (!row) return null;
    // A node event that arrived during the read may concern this very row: answer, but do not keep it.
    if (generation === this.generation) {
      if (this.byHash.size >= MAX_ENTRIES) {
        this.byHash.clear();
        this.hashOf.clear();
      }
      this.byHash.set(hash, { node: row.name, at: Date.now() });
      this.hashOf.set(row.name, hash);
    }
    return row.name;
  }
}
