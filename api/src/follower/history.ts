/**
 * Per-node history: the recent desired states of the nodes someone asked
 * about, the deltas between them, and the long polls waiting on them.
 *
 * Serving many pollers (bench/fanout: one write wakes 1,000 held polls; the
 * scale goal: 10,000 nodes of one tenant over 3 replicas, 3,334 polls woken
 * per replica): each delta is computed once per (base, newest) state, its
 * part comparisons are shared between nodes, and so is its content (nodes
 * receiving the same change get the same object, PartDiffs), so that the
 * encoded body is shared by routes/datapath/answers.ts. After a pull the
 * reached nodes are compiled in slices that yield to the event loop: the
 * polls a slice wakes are answered before the next slice starts, and no
 * request waits behind a loop over 10,000 nodes. A node asked about before
 * its turn is compiled at once (settle), so reads stay as fresh as the pull.
 */
import type { FastifyBaseLogger } from "fastify";
import { CompileError, PartDiffs, type DatapathDelta, type NodeDatapath, type Part } from "../compiler/index.ts";

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

/** A node's newest state, with the deltas to it. */
interface Newest {
  /** The revision this state was seen at; the one clients are given. */
  revision: number;
  /** The state may have changed at any revision from here to `revision` (a collapsed pull). */
  unsureFrom: number;
  datapath: NodeDatapath;
  /** Deltas to this state by base revision: computed once, shared by every poll. */
  deltas?: Map<number, NodeDelta>;
}

/**
 * An older state, kept only as a base for deltas: its parts (shared with
 * every node holding them) and nothing per node beyond the list, since
 * 10,000 nodes keep up to 64 of these each.
 */
interface Past {
  revision: number;
  unsureFrom: number;
  parts: readonly Part[];
}

interface NodeLog {
  /** Oldest first; at most historySize - 1. */
  past: Past[];
  newest: Newest;
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

/** A slice of recompiles ends past this much time, or once it has woken this many polls (their answers run right after it). */
const SLICE_MS = 8;
const SLICE_WAKES = 64;

export class NodeHistory {
  /** Nodes someone asked about: compiled after every pull, with their recent states. */
  private readonly tracked = new Map<string, NodeLog>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  /** Part comparisons shared between nodes: one changed part that 1,000 nodes hold is compared once. */
  private readonly partDiffs = new PartDiffs();
  /** Tracked nodes a pull reached that are not compiled again yet, with the lowest revision their state may have changed at. */
  private readonly due = new Map<string, number>();
  private draining: NodeJS.Immediate | undefined;
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

  /** The nodes whose history is kept (those polled or read): the only ones recordLater compiles. */
  get trackedNodes(): ReadonlyMap<string, unknown> {
    return this.tracked;
  }

  /**
   * Compiles the tracked nodes a pull reached (null: all) again, in slices
   * that yield to the event loop; `unsureFrom` is the pull's first revision.
   */
  recordLater(nodes: ReadonlySet<string> | null, unsureFrom: number): void {
    if (this.stopped) return;
    for (const node of nodes ?? this.tracked.keys()) {
      if (!this.tracked.has(node)) continue;
      const had = this.due.get(node);
      this.due.set(node, had === undefined ? unsureFrom : Math.min(had, unsureFrom));
    }
    if (this.due.size > 0) this.draining ??= setImmediate(() => this.drain());
  }

  private drain(): void {
    this.draining = undefined;
    const started = performance.now();
    let woken = 0;
    // A Map iterates in insertion order and tolerates deletes while it does.
    for (const [node, unsureFrom] of this.due) {
      this.due.delete(node);
      woken += this.record(node, unsureFrom);
      if (woken >= SLICE_WAKES || performance.now() - started > SLICE_MS) break;
    }
    if (this.due.size > 0 && !this.stopped) this.draining = setImmediate(() => this.drain());
  }

  /** A node whose turn has not come yet is compiled now: whoever asks sees what the applied pull says. */
  private settle(node: string): void {
    const unsureFrom = this.due.get(node);
    if (unsureFrom === undefined) return;
    this.due.delete(node);
    this.record(node, unsureFrom);
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
    this.due.clear();
    if (this.draining !== undefined) clearImmediate(this.draining);
    for (const set of this.waiters.values()) for (const w of set) w.done(false);
    this.waiters.clear();
  }

  /** Compiles a tracked node at the applied revision; appends a history entry and wakes waiters if it changed. Answers how many it woke. */
  private record(node: string, unsureFrom: number): number {
    const history = this.tracked.get(node);
    if (history === undefined) return 0;
    const revision = this.source.appliedRevision();
    let datapath: NodeDatapath | null = null;
    try {
      datapath = this.source.hasNode(node) ? this.source.compileNode(node) : null;
    } catch (err) {
      if (!(err instanceof CompileError)) throw err;
      this.log.error({ err, node }, "datapath: node does not compile");
    }
    if (datapath === null) {
      // Gone (deleted): its polls answer now, and find it missing.
      this.tracked.delete(node);
      return this.wake(node, Number.MAX_SAFE_INTEGER);
    }
    const had = history.newest;
    if (had.datapath.hash === datapath.hash) return 0;
    history.past.push({ revision: had.revision, unsureFrom: had.unsureFrom, parts: [...had.datapath.parts.values()] });
    if (history.past.length >= this.historySize) history.past.splice(0, history.past.length - this.historySize + 1);
    history.newest = { revision, unsureFrom: Math.min(unsureFrom, revision), datapath };
    return this.wake(node, revision);
  }

  private wake(node: string, revision: number): number {
    let woken = 0;
    for (const w of this.waiters.get(node) ?? []) {
      if (revision <= w.after) continue;
      w.done(true);
      woken++;
    }
    return woken;
  }

  private track(node: string): NodeLog | null {
    this.settle(node);
    let history = this.tracked.get(node);
    if (history) return history;
    if (!this.source.hasNode(node)) return null;
    const datapath = this.source.compileNode(node);
    const revision = this.source.appliedRevision();
    history = { past: [], newest: { revision, unsureFrom: revision, datapath } };
    this.tracked.set(node, history);
    return history;
  }

  state(node: string): NodeState | null {
    const newest = this.track(node)?.newest;
    return newest ? { revision: newest.revision, datapath: newest.datapath } : null;
  }

  delta(node: string, since: number): NodeDelta | "gone" | null {
    const history = this.track(node);
    if (!history) return null;
    const latest = history.newest;
    // Newer than this replica has applied: the client saw a state this replica cannot name.
    if (since > this.source.appliedRevision()) return "gone";
    let base: { revision: number; parts: ReadonlyMap<string, Part> } | undefined;
    if (since >= latest.revision) base = { revision: latest.revision, parts: latest.datapath.parts };
    else if (since >= latest.unsureFrom) return "gone";
    else {
      for (let i = history.past.length - 1; i >= 0; i--) {
        const e = history.past[i]!;
        if (since >= e.revision) {
          base = { revision: e.revision, parts: new Map(e.parts.map((p) => [p.owner, p])) };
          break;
        }
        // Inside a collapsed pull: the state at `since` was never seen here.
        if (since >= e.unsureFrom) return "gone";
      }
    }
    if (!base) return "gone";
    latest.deltas ??= new Map();
    let answer = latest.deltas.get(base.revision);
    if (answer === undefined) {
      answer = { revision: latest.revision, hash: latest.datapath.hash, delta: this.partDiffs.delta(base.parts, latest.datapath) };
      latest.deltas.set(base.revision, answer);
    }
    return answer;
  }

  async waitForChange(node: string, afterRevision: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.stopped || signal?.aborted) return false;
    const history = this.track(node);
    if (!history || history.newest.revision > afterRevision) return true;
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
