/**
 * Per-node history: the recent desired states of the nodes someone asked
 * about, the deltas between them, and the long polls waiting on them.
 *
 * Serving many pollers (bench/fanout: one write wakes 1,000 held polls): each
 * delta is computed once per (base, newest) state and shared, and its part
 * comparisons are shared between nodes (PartDiffs): the encoded bodies are
 * shared the same way by routes/datapath/answers.ts.
 */
import type { FastifyBaseLogger } from "fastify";
import { CompileError, diff, PartDiffs, type DatapathDelta, type NodeDatapath } from "../compiler/index.ts";

/** A node's desired state as this replica last applied it. */
export interface NodeState {
  /** The revision this state was first seen at. */
  revision: number;
  datapath: NodeDatapath;
}

/** A delta to a node's newest state; one object per (base, newest) pair, shared by every poller asking for it. */
export interface NodeDelta {
  revision: number;
  hash: string;
  delta: DatapathDelta;
}

interface HistoryEntry {
  /** The revision this state was seen at; the one clients are given. */
  revision: number;
  /** The state may have changed at any revision from here to `revision` (a collapsed pull). */
  unsureFrom: number;
  datapath: NodeDatapath;
  /** Deltas to this state by base revision, while it is the newest: computed once, shared by every poll. */
  deltas?: Map<number, NodeDelta>;
}

interface Waiter {
  after: number;
  done(changed: boolean): void;
}

/** What the history reads from the follower: the applied revision and the live compiler's nodes. */
export interface CompiledNodes {
  /** The newest revision applied. */
  appliedRevision(): number;
  /** Whether the node is known. */
  hasNode(node: string): boolean;
  /** The node's datapath as of appliedRevision; throws CompileError if it does not compile. */
  compileNode(node: string): NodeDatapath;
}

export class NodeHistory {
  /** Nodes someone asked about: compiled after every pull, with their recent states. */
  private readonly tracked = new Map<string, HistoryEntry[]>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  /** Part comparisons shared between nodes: one changed part that 1,000 nodes hold is compared once. */
  private readonly partDiffs = new PartDiffs();
  private stopped = false;

  constructor(
    private readonly source: CompiledNodes,
    private readonly log: FastifyBaseLogger,
    private readonly historySize: number,
  ) {}

  /** Whether the node's history is kept (someone polls it). */
  tracks(node: string): boolean {
    return this.tracked.has(node);
  }

  /** The nodes whose history is kept. */
  trackedNodes(): string[] {
    return [...this.tracked.keys()];
  }

  /** Whether a long poll is held. */
  get waiting(): boolean {
    return this.waiters.size > 0;
  }

  /** How many long polls are held (the metrics). */
  get held(): number {
    let n = 0;
    for (const set of this.waiters.values()) n += set.size;
    return n;
  }

  /** Ends every held long poll, answering "unchanged". */
  stop(): void {
    this.stopped = true;
    for (const set of this.waiters.values()) for (const w of set) w.done(false);
    this.waiters.clear();
  }

  /** Compiles a tracked node at the applied revision; appends a history entry and wakes waiters if it changed. */
  record(node: string, unsureFrom: number): void {
    const history = this.tracked.get(node)!;
    const revision = this.source.appliedRevision();
    let datapath: NodeDatapath | null = null;
    try {
      datapath = this.source.hasNode(node) ? this.source.compileNode(node) : null;
    } catch (err) {
      if (!(err instanceof CompileError)) throw err;
      this.log.error({ err, node }, "datapath: node does not compile");
    }
    const last = history[history.length - 1];
    if (datapath === null) {
      // Gone (deleted): its polls answer now, and find it missing.
      this.tracked.delete(node);
      this.wake(node, Number.MAX_SAFE_INTEGER);
      return;
    }
    if (last?.datapath.hash === datapath.hash) return;
    if (last) delete last.deltas;
    history.push({ revision, unsureFrom: Math.min(unsureFrom, revision), datapath });
    if (history.length > this.historySize) history.splice(0, history.length - this.historySize);
    this.wake(node, revision);
  }

  private wake(node: string, revision: number): void {
    for (const w of this.waiters.get(node) ?? []) if (revision > w.after) w.done(true);
  }

  private track(node: string): HistoryEntry[] | null {
    let history = this.tracked.get(node);
    if (history) return history;
    if (!this.source.hasNode(node)) return null;
    const datapath = this.source.compileNode(node);
    const revision = this.source.appliedRevision();
    history = [{ revision, unsureFrom: revision, datapath }];
    this.tracked.set(node, history);
    return history;
  }

  state(node: string): NodeState | null {
    const last = this.track(node)?.at(-1);
    return last ? { revision: last.revision, datapath: last.datapath } : null;
  }

  delta(node: string, since: number): NodeDelta | "gone" | null {
    const history = this.track(node);
    if (!history) return null;
    const latest = history[history.length - 1]!;
    let base: HistoryEntry | undefined;
    for (let i = history.length - 1; i >= 0; i--) {
      const e = history[i]!;
      if (since >= e.revision) {
        base = e;
        break;
      }
      // Inside a collapsed pull: the state at `since` was never seen here.
      if (since >= e.unsureFrom) return "gone";
    }
    // Newer than this replica has applied: the client saw a state this replica cannot name.
    if (!base || since > this.source.appliedRevision()) return "gone";
    latest.deltas ??= new Map();
    let answer = latest.deltas.get(base.revision);
    if (answer === undefined) {
      answer = { revision: latest.revision, hash: latest.datapath.hash, delta: diff(base.datapath, latest.datapath, this.partDiffs) };
      latest.deltas.set(base.revision, answer);
    }
    return answer;
  }

  async waitForChange(node: string, afterRevision: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.stopped || signal?.aborted) return false;
    const history = this.track(node);
    if (!history || history[history.length - 1]!.revision > afterRevision) return true;
    return new Promise<boolean>((resolve) => {
      const set = this.waiters.get(node) ?? new Set<Waiter>();
      this.waiters.set(node, set);
      const waiter: Waiter = {
        after: afterRevision,
        done: (changed) => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          set.delete(waiter);
          if (set.size === 0 && this.waiters.get(node) === set) this.waiters.delete(node);
          resolve(changed);
        },
      };
      const onAbort = () => waiter.done(false);
      const timer = setTimeout(() => waiter.done(false), timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      set.add(waiter);
    });
  }
}
