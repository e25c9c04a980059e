// The transport's policy routing, installed by the agent in its namespace
// (here a namespace of the test's own): a packet tc marks MARK_TO_TRANSPORT
// is routed to the local stack whatever its destination, an unmarked one is
// not, and installing again changes nothing. Run under the kernel lock.
import { afterAll, beforeAll, describe as vitestDescribe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { constants } from "@weft/codec";
import { installTransportRouting, transportRuleInstalled, type IpRunner } from "../../nodeagent/src/kernel/transport-routing.ts";
import { skipWithout } from "../support/prerequisites.ts";

const describe = vitestDescribe.skipIf(skipWithout("the transport routing suite", process.getuid?.() === 0 ? null : "network namespaces need root"));

const NS = `weft-txr-${randomBytes(3).toString("hex")}`;
const inNs: IpRunner = (args) => execFileSync("ip", ["-n", NS, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
const mark = `0x${constants.MARK_TO_TRANSPORT.toString(16)}`;

/** What the namespace's routing answers for a packet to `address` with `fwmark`, or the error it gives. */
function routeGet(address: string, fwmark?: string): string {
  try {
    return inNs(["-4", "route", "get", address, ...(fwmark ? ["mark", fwmark] : [])]).trim();
  } catch (err) {
    return `error: ${String((err as { stderr?: unknown }).stderr ?? "").trim()}`;
  }
}

describe("the transport's policy routing", () => {
  beforeAll(() => {
    execFileSync("ip", ["netns", "add", NS]);
    inNs(["link", "set", "lo", "up"]);
  });
  afterAll(() => {
    execFileSync("ip", ["netns", "del", NS], { stdio: "ignore" });
  });

  it("delivers marked packets locally, whatever their destination; unmarked ones are routed as before", () => {
    expect(transportRuleInstalled(inNs)).toBe(false);
    expect(routeGet("198.18.77.1", mark)).toMatch(/^error: .*unreachable/i);
    expect(installTransportRouting(inNs)).toEqual({ ruleAdded: true });
    expect(transportRuleInstalled(inNs)).toBe(true);
    expect(routeGet("198.18.77.1", mark)).toMatch(new RegExp(`^local 198\\.18\\.77\\.1 dev lo table ${constants.TRANSPORT_TABLE}\\b`));
    // Only the bit counts: another mark bit beside it changes nothing, a mark without it is not steered.
    expect(routeGet("198.18.77.1", `0x${(constants.MARK_TO_TRANSPORT | 0x1).toString(16)}`)).toMatch(/^local 198\.18\.77\.1 dev lo/);
    expect(routeGet("198.18.77.1", `0x${constants.MARK_TRANSPORT.toString(16)}`)).toMatch(/^error: .*unreachable/i);
    expect(routeGet("198.18.77.1")).toMatch(/^error: .*unreachable/i);
  });

  it("installs idempotently: one rule, one route, however often the agent starts", () => {
    expect(installTransportRouting(inNs)).toEqual({ ruleAdded: false });
    expect(installTransportRouting(inNs)).toEqual({ ruleAdded: false });
    const rules = JSON.parse(inNs(["-j", "-4", "rule", "show", "priority", String(constants.TRANSPORT_RULE_PRIORITY)])) as unknown[];
    expect(rules).toHaveLength(1);
    expect(inNs(["-4", "route", "show", "table", String(constants.TRANSPORT_TABLE)]).trim().split("\n")).toEqual(["local default dev lo scope host"]);
  });

  it("says why when it cannot install", () => {
    const failing: IpRunner = (args) => {
      if (args.includes("add")) throw Object.assign(new Error("Command failed"), { stderr: "RTNETLINK answers: Operation not permitted\n" });
      return inNs(args);
    };
    execFileSync("ip", ["-n", NS, "-4", "rule", "del", "priority", String(constants.TRANSPORT_RULE_PRIORITY)]);
    expect(() => installTransportRouting(failing)).toThrow("failed to install the transport's policy routing: RTNETLINK answers: Operation not permitted");
  });
});
