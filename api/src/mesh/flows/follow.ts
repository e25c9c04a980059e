/**
 * Follow streams: each open stream reads the rows committed after the last
 * one it sent (ids grow in commit order: ingest.ts), woken by NOTIFY when a
 * batch commits on any replica, and every few seconds anyway in case a
 * notification is lost. A wake of a stream already reading marks it to read
 * again when done, so a burst of batches costs one read at a time per
 * stream; each read takes a bounded number of rows.
 */
import type { Database, Db } from "../../db/client.ts";
import { FLOWS_CHANNEL } from "./ingest.ts";
import { flowsAfter, lastFlowId, toFlow, type FlowFilters, type FlowReader } from "./query.ts";
import type { Flow } from "./specs.ts";

/** Rows one read of one stream takes; more wait for the next read, at once. */
const ROWS_PER_READ = 200;
/** Reads without a notification, in case one was lost. */
const SAFETY_POLL_MS = 5_000;

export interface StreamSink {
  /** Sends one flow; false when the client is too slow (its buffer is full): the stream waits for drain. */
  send(flow: Flow): boolean;
  /** Checked before each read: a revoked or expired token ends the stream. */
  stillAllowed(): boolean;
  /** Ends the stream from the server's side (close, revoked token, an error). */
  end(): void;
}

interface Stream {
  reader: FlowReader;
  filters: FlowFilters;
  sink: StreamSink;
  afterId: number;
  reading: boolean;
  again: boolean;
  key: string;
}

export class FlowStreams {
  private readonly streams = new Set<Stream>();
  private readonly perKey = new Map<string, number>();
  private unlisten: (() => Promise<void>) | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Db,
    /** Open streams per tenant (and the operator's), per replica; past it open() refuses. */
    readonly maxPerTenant: number,
    private readonly onError: (err: unknown) => void,
  ) {}

  async start(database: Database): Promise<void> {
    this.unlisten = await database.listen(FLOWS_CHANNEL, () => this.wakeAll());
    this.timer = setInterval(() => this.wakeAll(), SAFETY_POLL_MS);
    this.timer.unref();
  }

  /** How many streams are open, in all. */
  get size(): number {
    return this.streams.size;
  }

  /**
   * Opens a stream for a reader, starting after the newest row now; null
   * when the reader's tenant has maxPerTenant open on this replica already.
   * Answers the function that closes it (idempotent).
   */
  async open(reader: FlowReader, filters: FlowFilters, sink: StreamSink): Promise<(() => void) | null> {
    const key = reader.kind === "tenant" ? `tenant:${reader.tenantId}` : "operator";
    const open = this.perKey.get(key) ?? 0;
    if (open >= this.maxPerTenant) return null;
    this.perKey.set(key, open + 1);
    const stream: Stream = { reader, filters, sink, afterId: 0, reading: false, again: false, key };
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      this.streams.delete(stream);
      const n = (this.perKey.get(key) ?? 1) - 1;
      if (n === 0) this.perKey.delete(key);
      else this.perKey.set(key, n);
    };
    try {
      stream.afterId = await lastFlowId(this.db, reader);
    } catch (err) {
      close();
      throw err;
    }
    if (!closed) this.streams.add(stream);
    return close;
  }

  /** A batch committed on this replica: its streams need not wait for the notification. */
  wakeAll(): void {
    for (const stream of this.streams) void this.read(stream);
  }

  private async read(stream: Stream): Promise<void> {
    if (stream.reading) {
      stream.again = true;
      return;
    }
    stream.reading = true;
    try {
      do {
        stream.again = false;
        if (!this.streams.has(stream)) return;
        if (!stream.sink.stillAllowed()) return stream.sink.end();
        const { rows, upTo } = await flowsAfter(this.db, stream.reader, stream.filters, stream.afterId, ROWS_PER_READ);
        for (const row of rows) {
          if (!this.streams.has(stream)) return;
          stream.sink.send(toFlow(row));
        }
        stream.afterId = upTo;
        if (rows.length === ROWS_PER_READ) stream.again = true;
      } while (stream.again);
    } catch (err) {
      this.onError(err);
      stream.sink.end();
    } finally {
      stream.reading = false;
    }
  }

  /** Ends every stream (the app is closing) and stops listening. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const stream of [...this.streams]) stream.sink.end();
    await this.unlisten?.();
    this.unlisten = undefined;
  }
}
