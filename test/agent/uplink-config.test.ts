/**
 * The agent's --uplink (bpf/README [R12]): off unless named, an interface
 * name or auto, and never attached with --host-routing off (an uplink link
 * an earlier agent left is detached instead). No kernel: a recording stand-in
 * for the loader.
 */
import { describe, expect, it } from "vitest";
import { parseArgs, UsageError } from "../../nodeagent/src/agent/config.ts";
import { configureUplink } from "../../nodeagent/src/agent/runtime.ts";

const base = ["--api", "http://127.0.0.1:8080/", "--name", "n1"];

function recorder() {
  const calls: string[] = [];
  return {
    calls,
    datapath: {
      attachUplink: (ifname: string) => (calls.push(`attach ${ifname}`), { program: "weft_from_uplink", pin: "", action: "created" as const }),
      detachUplinks: (keep?: number) => (calls.push(`detach${keep === undefined ? "" : ` but ${keep}`}`), 0),
    },
  };
}

describe("--uplink", () => {
  it("is off by default, and takes an interface name, auto or off, from the flag or WEFT_UPLINK", () => {
    expect(parseArgs(base, {}).uplink ?? null).toBeNull();
    expect(parseArgs([...base, "--uplink", "eth0"], {}).uplink).toBe("eth0");
    expect(parseArgs([...base, "--uplink=auto"], {}).uplink).toBe("auto");
    expect(parseArgs(base, { WEFT_UPLINK: "fab0" }).uplink).toBe("fab0");
    expect(parseArgs([...base, "--uplink", "off"], { WEFT_UPLINK: "fab0" }).uplink ?? null).toBeNull();
    for (const bad of ["a-name-longer-than-15", "../x", "a b", ".."]) expect(() => parseArgs([...base, "--uplink", bad], {})).toThrow(UsageError);
  });

  it("attaches to the named device with host routing on; detaches every uplink link when off, or with host routing off", () => {
    let r = recorder();
    expect(configureUplink(r.datapath, { uplink: "fab0", hostRouting: true })).toBe("fab0");
    expect(r.calls).toEqual(["attach fab0"]);
    r = recorder();
    expect(configureUplink(r.datapath, { uplink: "fab0", hostRouting: false })).toBeNull();
    expect(r.calls).toEqual(["detach"]);
    r = recorder();
    expect(configureUplink(r.datapath, { hostRouting: true })).toBeNull();
    expect(r.calls).toEqual(["detach"]);
  });
});
