/** The flow flags on the agent's command line: defaults, flags over the environment, and every bad value refused as a usage error. */
import { constants } from "@weft/codec";
import { FLOW_RATE_MAX } from "../../nodeagent/src/flows/config.ts";
import { describe, expect, it } from "vitest";
import { parseArgs, UsageError } from "../../nodeagent/src/agent/config.ts";
import { DEFAULT_FLOW_CONFIG, FLOW_BUFFER_MAX } from "../../nodeagent/src/flows/config.ts";

const base = ["--api", "http://127.0.0.1:8080", "--name", "n1"];

describe("flow flags", () => {
  it("defaults: on, 1000 events/s per CPU, burst 200, allowed flows too, the last 4096 kept, 1 s intervals", () => {
    expect(parseArgs(base, {}).flows).toEqual({ enabled: true, rate: 1000, burst: 200, allowed: true, buffer: 4096, intervalMs: 1000 });
    expect(DEFAULT_FLOW_CONFIG).toEqual(parseArgs(base, {}).flows);
  });

  it("reads each flag, or its environment variable, the flag winning", () => {
    const cfg = parseArgs([...base, "--flows", "off", "--flow-rate", "50", "--flow-burst=5", "--flow-allowed", "off", "--flow-buffer", "10", "--flow-interval", "3"], { WEFT_FLOW_RATE: "7" });
    expect(cfg.flows).toEqual({ enabled: false, rate: 50, burst: 5, allowed: false, buffer: 10, intervalMs: 3000 });
    expect(parseArgs(base, { WEFT_FLOWS: "off", WEFT_FLOW_BUFFER: "65536", WEFT_FLOW_INTERVAL: "60" }).flows).toMatchObject({ enabled: false, buffer: 65536, intervalMs: 60_000 });
    expect(parseArgs([...base, "--flow-rate", String(FLOW_RATE_MAX), "--flow-burst", String(constants.FLOW_BURST_MAX)], {}).flows).toMatchObject({ rate: FLOW_RATE_MAX, burst: constants.FLOW_BURST_MAX });
  });

  it("refuses values the kernel or the agent's memory bounds do not take, naming the flag", () => {
    const bad: [string, string, RegExp][] = [
      ["--flows", "yes", /--flows "yes" is not on or off/],
      ["--flow-allowed", "1", /--flow-allowed "1" is not on or off/],
      ["--flow-rate", "0", /--flow-rate "0" is not 1\.\.1000000/],
      ["--flow-rate", String(FLOW_RATE_MAX + 1), /--flow-rate/],
      ["--flow-rate", "1e3", /--flow-rate "1e3"/],
      ["--flow-rate", "-5", /--flow-rate "-5"/],
      ["--flow-burst", String(constants.FLOW_BURST_MAX + 1), /--flow-burst/],
      ["--flow-buffer", "0", /--flow-buffer "0"/],
      ["--flow-buffer", String(FLOW_BUFFER_MAX + 1), /--flow-buffer/],
      ["--flow-interval", "0.5", /--flow-interval "0.5" is not 1\.\.60 seconds/],
      ["--flow-interval", "61", /--flow-interval/],
    ];
    for (const [flag, value, message] of bad) {
      expect(() => parseArgs([...base, flag, value], {}), `${flag} ${value}`).toThrow(UsageError);
      expect(() => parseArgs([...base, flag, value], {})).toThrow(message);
    }
    expect(() => parseArgs([...base, "--flows", "on", "--flows", "off"], {})).toThrow(/--flows given twice/);
  });
});
