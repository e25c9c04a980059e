/**
 * A rate-limited load for "p99 added at half the saturation rate": wrk2 is
 * not installed and wrk 4.1 has no -R, so wrk's own Lua `delay()` hook paces
 * it. One schedule per wrk thread: the k-th request after the first answer
 * is due at start + k / rate (a monotonic clock through LuaJIT's ffi), and
 * delay() returns how long until then (0 when late). Each connection holds
 * at most one request, so the rate holds while connections x latency leave
 * room; the achieved rate is reported beside the target and a run that fell
 * short is flagged, never passed off as the target's figure.
 *
 * wrk's timers have millisecond resolution: requests due within the same
 * millisecond leave together (bursts of rate/1000), the same for every path
 * measured. wrk times a request from when it is written, not from when it
 * was due, so a path that falls behind hides part of its queueing (the
 * coordinated omission wrk2 corrects): the flag says when that happened.
 */
import { driveScript, type LoadResult } from "../support/load.ts";

export interface PacedRun extends LoadResult {
  targetPerSecond: number;
  /** Achieved below 95% of the target: the path could not keep the pace. */
  fellShort: boolean;
}

/** The wrk Lua script: request headers, then the pacing (rate per wrk thread). */
export function pacedScript(ratePerThread: number, headers: Record<string, string>): string {
  if (!(ratePerThread > 0)) throw new Error(`pacedScript: the rate must be positive, not ${ratePerThread}`);
  return `${Object.entries(headers)
    .map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`)
    .join("\n")}
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } weft_timespec;
int clock_gettime(int clk, weft_timespec *ts);
]]
local ts = ffi.new("weft_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local period_ms = ${1000 / ratePerThread}
local due = nil
function delay()
  local now = now_ms()
  if due == nil then due = now end
  due = due + period_ms
  local wait = due - now
  if wait <= 0 then return 0 end
  return math.floor(wait)
end
`;
}

/** One paced wrk run (1 thread) of `seconds` at `perSecond` over `connections`. */
export async function paced(url: string, headers: Record<string, string>, o: { perSecond: number; connections: number; seconds: number; exec?: string[] }): Promise<PacedRun> {
  const r = await driveScript(url, pacedScript(o.perSecond, headers), { connections: o.connections, seconds: o.seconds, ...(o.exec ? { exec: o.exec } : {}) });
  return { ...r, targetPerSecond: o.perSecond, fellShort: r.requestsPerSecond < 0.95 * o.perSecond };
}
