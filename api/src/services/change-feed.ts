import type { Database } from "../db/client.ts";
import { CHANGES_CHANNEL, type Change } from "../db/transactions.ts";

export type ChangeEvent = Change & { revision: number };
type Subscriber = (event: ChangeEvent) => void;

/**
 * Every committed write, as seen by this replica: from its own commits at
 * once, and from other replicas through LISTEN/NOTIFY. Caches and long polls
 * subscribe here; a replica may see its own change twice, so subscribers must
 * be idempotent.
 */
export class ChangeFeed {
  private readonly subscribers = new Set<Subscriber>();
  private unlisten: (() => Promise<void>) | undefined;

  async start(database: Database): Promise<void> {
    this.unlisten = await database.listen(CHANGES_CHANNEL, (payload) => {
      let event: ChangeEvent;
      try {
        event = JSON.parse(payload) as ChangeEvent;
      } catch {
        return;
      }
      this.publish([event]);
    });
  }

  subscribe(fn: Subscriber): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  publish(events: ChangeEvent[]): void {
    for (const event of events) for (const fn of this.subscribers) fn(event);
  }

  async stop(): Promise<void> {
    await this.unlisten?.();
    this.unlisten = undefined;
  }
}
