/**
 * LISTEN on a connection of its own. A pooled connection cannot carry it: a
 * transaction-mode pooler (PgBouncer) hands each transaction whichever server
 * connection is free, so a LISTEN made through it hears nothing, and holding
 * one pool client per channel shrinks the pool the queries share. One client
 * carries every channel; when it drops, it reconnects and listens again.
 * Notifications sent while it was away are lost: the follower's periodic
 * refresh and the caches' expiry bound how late a replica learns of them.
 */
import pg from "pg";

export type NotificationHandler = (payload: string) => void;

/** Waits between reconnect attempts: doubling from the first, capped at the last. */
const RECONNECT_MS = { first: 100, max: 5000 } as const;

export class NotificationListener {
  private readonly handlers = new Map<string, Set<NotificationHandler>>();
  private client: pg.Client | undefined;
  private connecting: Promise<pg.Client> | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectMs: number = RECONNECT_MS.first;
  private closed = false;

  constructor(private readonly url: string) {}

  /** Subscribes to a channel; resolves once the server has the LISTEN, to an unsubscribe function. */
  async listen(channel: string, handler: NotificationHandler): Promise<() => Promise<void>> {
    let set = this.handlers.get(channel);
    const first = !set;
    if (!set) this.handlers.set(channel, (set = new Set()));
    set.add(handler);
    const client = await this.connected();
    if (first) await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    return async () => {
      const handlers = this.handlers.get(channel);
      if (!handlers?.delete(handler) || handlers.size > 0) return;
      this.handlers.delete(channel);
      await this.client?.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`).catch(() => {});
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.handlers.clear();
    const client = this.client ?? (await this.connecting?.catch(() => undefined));
    this.client = undefined;
    await client?.end().catch(() => {});
  }

  private connected(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= this.connect().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.url });
    client.on("notification", (msg) => {
      for (const handler of this.handlers.get(msg.channel) ?? []) handler(msg.payload ?? "");
    });
    // A dropped connection must not crash the process: listen again on a new one.
    client.on("error", () => this.lost(client));
    client.on("end", () => this.lost(client));
    await client.connect();
    if (this.closed) {
      await client.end();
      throw new Error("the notification listener is closed");
    }
    for (const channel of this.handlers.keys()) await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    this.client = client;
    this.reconnectMs = RECONNECT_MS.first;
    return client;
  }

  private lost(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = undefined;
    void client.end().catch(() => {});
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.handlers.size === 0 || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connected().catch(() => {
        this.reconnectMs = Math.min(this.reconnectMs * 2, RECONNECT_MS.max);
        this.scheduleReconnect();
      });
    }, this.reconnectMs);
    this.reconnectTimer.unref();
  }
}
