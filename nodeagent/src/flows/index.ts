// SPDX-License-Identifier: Apache-2.0
/**
 * Flows on the node (issue #17 item 2): configure the kernel's events, then
 * drain, keep, aggregate, count and ship them. startFlows is the one entry
 * the runtime calls.
 */
import type { Log } from "../agent/agent.ts";
import type { BackoffOptions } from "../agent/backoff.ts";
import type { ApiClient } from "../agent/client.ts";
import type { AgentMetrics } from "../agent/metrics.ts";
import { RingBufferReader } from "../kernel/ringbuf.ts";
import type { KernelDatapath } from "../loader/loader.ts";
import { SystemClock } from "./clock.ts";
import { FlowCollector } from "./collector.ts";
import { flowIntervalNs, type FlowConfig } from "./config.ts";
import { flowsRoute, FLOWS_PATH } from "./local-read.ts";
import { FlowMetrics } from "./metrics.ts";
import { FlowUploader } from "./uploader.ts";

export { DEFAULT_FLOW_CONFIG, FLOW_FLAGS, parseFlowConfig, type FlowConfig } from "./config.ts";
export { identitiesOf } from "./address-identities.ts";
export { outcomeEvents } from "./transport-outcomes.ts";

const STOP_GRACE_MS = 1_000;

export interface FlowsOptions {
  config: FlowConfig;
  datapath: Pick<KernelDatapath, "configureFlows" | "flowStats" | "flowRingFd">;
  node: string;
  /** Where batches go: the agent's API client (tests may hand one for another base URL). */
  client: Pick<ApiClient, "postFlows">;
  metrics: AgentMetrics;
  log: Log;
  backoff?: BackoffOptions;
}

export interface RunningFlows {
  collector: FlowCollector | null;
  uploader: FlowUploader | null;
  stop(): Promise<void>;
}

/**
 * Writes weft_flow_cfg (rate 0 when flows are off: a pinned configuration
 * from an earlier agent must not keep filling a ring nobody drains), and
 * when on, starts the collector and serves GET /flows.
 */
export function startFlows(o: FlowsOptions): RunningFlows {
  const c = o.config;
  o.datapath.configureFlows({ intervalNs: flowIntervalNs(c.enabled ? c.rate : 0), burst: c.burst, allowed: c.allowed });
  if (!c.enabled) return { collector: null, uploader: null, stop: async () => undefined };

  const metrics = new FlowMetrics(o.metrics.registry);
  const reader = new RingBufferReader(o.datapath.flowRingFd);
  const uploader = new FlowUploader({
    send: (batch, signal) => o.client.postFlows(o.node, batch, signal),
    metrics,
    log: o.log,
    ...(o.backoff ? { backoff: o.backoff } : {}),
  });
  const collector = new FlowCollector({
    source: { drain: (maxBytes) => reader.drain(maxBytes), stats: () => o.datapath.flowStats() },
    clock: new SystemClock(),
    metrics,
    uploader,
    buffer: c.buffer,
    intervalMs: c.intervalMs,
    log: o.log,
  });
  o.metrics.serve(FLOWS_PATH, flowsRoute((limit) => collector.last(limit), c.buffer));
  collector.start();
  let stopped: Promise<void> | null = null;
  return {
    collector,
    uploader,
    stop: () =>
      (stopped ??= (async () => {
        collector.stop();
        // The interval so far, and one last second to send what is queued: a restart need not lose it.
        collector.seal();
        await uploader.close(STOP_GRACE_MS);
        reader.close();
      })()),
  };
}
