/** The messages between bench/scale's driver (pollers.ts) and its client processes (poller.ts). */

export type PollMode = "delta" | "full";

/** A node as the driver hands it out: `index` is its place in the fleet, `home` the replica it polls first. */
export interface NodeSpec {
  index: number;
  name: string;
  credential: string;
  home: number;
}

/** One answered poll (timeouts included: `changed` false). */
export interface Answer {
  node: number;
  at: number;
  revision: number;
  changed: boolean;
  replica: number;
  /** A full-state answer (If-None-Match poll answered 200). */
  full: boolean;
  bytes: number;
}

/** A node whose poll failed on `from` and was next written to `to`. */
export interface Failover {
  node: number;
  from: number;
  to: number;
  failedAt: number;
  sentAt: number;
}

export interface NodeView {
  node: number;
  replica: number;
  revision: number;
  etag: string;
  /** A poll is written to its replica and not yet answered. */
  held: boolean;
  /** Its last request failed and it has not yet reached another replica. */
  failed: boolean;
}

export type PollerRequest = { id: number } & (
  | { op: "fetch"; endpoints: string[]; waitSeconds: number; nodes: NodeSpec[] }
  | { op: "hold" }
  | { op: "view" }
  | { op: "collect" }
  | { op: "mode"; nodes: number[]; mode: PollMode }
  /** Status reports every intervalMs from every node (0: stop); "reports" takes the times of those sent so far (NaN: failed). */
  | { op: "report"; intervalMs: number }
  | { op: "reports" }
  | { op: "stop" }
);

export type PollerReply = { id: number; result?: unknown; error?: string };

export interface Collected {
  answers: Answer[];
  failovers: Failover[];
  errors: string[];
}
