// SPDX-License-Identifier: Apache-2.0
/**
 * What the agent does with each message of the proxy (a record from the
 * record socket, a line of HAProxy's stdout): a record is parsed, counted
 * on /metrics, shown to outlier ejection, and kept for the next batch of
 * flows and spans; HAProxy's note of records its ring dropped is counted;
 * any other line is HAProxy's own notice, logged. One place for it, so
 * that the driver and bench/l7/records.ts run the same code per record.
 */
import type { Log } from "../agent/agent.ts";
import { parseAccessRecord, type AccessRecord } from "./access-log.ts";
import type { L7Metrics } from "./metrics.ts";
import { dropNotice } from "./record-socket.ts";

/** Records kept for one batch at most; more until the next take() are counted as lost (stage "agent"). */
export const RECORD_BATCH_MAX = 4_096;

export interface RecordIntakeOptions {
  metrics: L7Metrics;
  /** Outlier ejection's view of each record (outlier-driver.ts observe). */
  observe: (r: AccessRecord) => void;
  /** Whether records are kept for batches (someone takes them: flows, spans). */
  batches: boolean;
  /**
   * Where a server the proxy reaches through the node's transport is: its
   * record names the transport's unix socket ("unix", no port), while flows,
   * spans and outlier ejection want the backend the server stands for.
   */
  serverAt?: (backend: string, server: string) => { address: string; port: number } | undefined;
  log: Log;
}

export class RecordIntake {
  private pending: AccessRecord[] = [];
  private lost = 0;

  constructor(private readonly o: RecordIntakeOptions) {}

  message = (line: string): void => {
    if (!line.startsWith("{")) {
      const dropped = dropNotice(line);
      if (dropped !== null) return void this.o.metrics.recordsDropped.inc({ stage: "proxy" }, dropped);
      return this.o.log("info", "haproxy", { line: line.slice(0, 1024) });
    }
    const r = parseAccessRecord(line);
    if (!r) {
      // A record cut at LOG_RECORD_MAX, or a format this agent does not know.
      this.o.metrics.unreadable.inc();
      return;
    }
    if (r.serverPort === 0 && r.serverAddress !== "") {
      const at = this.o.serverAt?.(r.backend, r.server);
      if (at) {
        r.serverAddress = at.address;
        r.serverPort = at.port;
      }
    }
    this.o.metrics.record(r);
    this.o.observe(r);
    if (!this.o.batches) return;
    if (this.pending.length < RECORD_BATCH_MAX) this.pending.push(r);
    else {
      this.lost++;
      this.o.metrics.recordsDropped.inc({ stage: "agent" });
    }
  };

  /** The records kept since the last take, and how many were left out; null when there are none of either. */
  take(): { batch: AccessRecord[]; lost: number } | null {
    if (!this.pending.length && !this.lost) return null;
    const taken = { batch: this.pending, lost: this.lost };
    this.pending = [];
    this.lost = 0;
    return taken;
  }
}
