// SPDX-License-Identifier: Apache-2.0
/**
 * The flow flags of the agent's command line (issue #17 item 2), parsed
 * apart from the rest so src/agent/config.ts only spreads this table in and
 * calls parseFlowConfig. Bounds are the ABI's (weft_flow_cfg) where the
 * kernel reads the value, and memory bounds where the agent keeps it.
 */
import { constants } from "@weft/codec";

export interface FlowConfig {
  /** false: the kernel emits no events (weft_flow_cfg rate 0) and nothing is drained, kept or sent. */
  enabled: boolean;
  /** Events per second per CPU the programs may emit (token bucket rate). */
  rate: number;
  /** Most events at once per CPU (the bucket's depth). */
  burst: number;
  /** Also emit allowed new connections; drops and audits always are. */
  allowed: boolean;
  /** The last N flows kept in memory (GET /flows). */
  buffer: number;
  /** Aggregation and upload interval, ms. */
  intervalMs: number;
}

export const DEFAULT_FLOW_CONFIG: Readonly<FlowConfig> = { enabled: true, rate: 1000, burst: 200, allowed: true, buffer: 4096, intervalMs: 1000 };
/** 256 Ki flows is about 150 MiB of JavaScript objects: beyond that the flag is a typo, not a wish. */
export const FLOW_BUFFER_MAX = 262_144;
/** The kernel takes an interval between events of at least FLOW_INTERVAL_MIN ns: a million a second per CPU. */
export const FLOW_RATE_MAX = Math.floor(1e9 / constants.FLOW_INTERVAL_MIN);

/** weft_flow_cfg's interval for a rate (events per second per CPU); 0n turns events off. */
export const flowIntervalNs = (rate: number): bigint => (rate > 0 ? BigInt(Math.floor(1e9 / rate)) : 0n);

/** Flag name -> [config key, environment variable, value shown in --help, what it is], as the agent's own table. */
export const FLOW_FLAGS = {
  "--flows": ["flows", "WEFT_FLOWS", "on|off", "flow events from the datapath, kept and shipped to the API (default on)"],
  "--flow-rate": ["flowRate", "WEFT_FLOW_RATE", "N", "most flow events per second per CPU; the rest are counted as lost (default 1000)"],
  "--flow-burst": ["flowBurst", "WEFT_FLOW_BURST", "N", "flow events at once per CPU above the rate (default 200)"],
  "--flow-allowed": ["flowAllowed", "WEFT_FLOW_ALLOWED", "on|off", "also report allowed new connections, not only drops and audits (default on)"],
  "--flow-buffer": ["flowBuffer", "WEFT_FLOW_BUFFER", "N", "the last N flows kept for GET /flows (default 4096)"],
  "--flow-interval": ["flowInterval", "WEFT_FLOW_INTERVAL", "SECONDS", "aggregation and upload interval (default 1)"],
} as const;
type FlowKey = (typeof FLOW_FLAGS)[keyof typeof FLOW_FLAGS][0];


/**
 * `get` answers a key's value from the flags or the environment, undefined
 * when neither gives it; `usage` makes the caller's error for a bad value
 * (the agent's UsageError, kept there so the two modules do not import each other).
 */
export function parseFlowConfig(get: (key: FlowKey) => string | undefined, usage: (message: string) => Error): FlowConfig {
  const d = DEFAULT_FLOW_CONFIG;
  const onOff = (key: FlowKey, flag: string, fallback: boolean): boolean => {
    const v = get(key);
    if (v === undefined) return fallback;
    if (v !== "on" && v !== "off") throw usage(`${flag} ${JSON.stringify(v)} is not on or off`);
    return v === "on";
  };
  const integer = (key: FlowKey, flag: string, fallback: number, min: number, max: number, unit = ""): number => {
    const text = get(key);
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < min || n > max) throw usage(`${flag} ${JSON.stringify(text)} is not ${min}..${max}${unit}`);
    return n;
  };
  const rate = integer("flowRate", "--flow-rate", d.rate, 1, FLOW_RATE_MAX, " events/s per CPU");
  const burst = integer("flowBurst", "--flow-burst", d.burst, 1, constants.FLOW_BURST_MAX);
  return {
    enabled: onOff("flows", "--flows", d.enabled),
    rate,
    burst,
    allowed: onOff("flowAllowed", "--flow-allowed", d.allowed),
    buffer: integer("flowBuffer", "--flow-buffer", d.buffer, 1, FLOW_BUFFER_MAX, " flows"),
    intervalMs: integer("flowInterval", "--flow-interval", d.intervalMs / 1000, 1, 60, " seconds") * 1000,
  };
}
