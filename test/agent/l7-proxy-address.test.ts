// SPDX-License-Identifier: Apache-2.0
// The node's proxy address on lo, in a network namespace of the test's own
// (run under the kernel lock): put there as a /32 a socket can bind and
// connect from, moved when the document moves it, and every other address
// of lo left alone.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe as vitestDescribe, expect, it } from "vitest";
import type { IpRunner } from "../../nodeagent/src/kernel/transport-routing.ts";
import { installProxyAddress } from "../../nodeagent/src/l7/proxy-address.ts";
import { skipWithout } from "../support/prerequisites.ts";

const describe = vitestDescribe.skipIf(skipWithout("the L7 proxy address suite", process.getuid?.() === 0 ? null : "network namespaces need root"));

const NS = `weft-l7a-${randomBytes(3).toString("hex")}`;
const inNs: IpRunner = (args) => execFileSync("ip", ["-n", NS, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
const loAddresses = () =>
  (JSON.parse(inNs(["-j", "-4", "addr", "show", "dev", "lo"])) as { addr_info: { local: string; prefixlen: number }[] }[])
    .flatMap((l) => l.addr_info)
    .map((a) => `${a.local}/${a.prefixlen}`)
    .sort();

describe("the proxy address on lo (a namespace of the test's own)", () => {
  const state = mkdtempSync(join(tmpdir(), "weft-l7-addr-"));
  beforeAll(() => {
    execFileSync("ip", ["netns", "add", NS]);
    inNs(["link", "set", "lo", "up"]);
    // An address someone else put there: the agent never removes it.
    inNs(["-4", "addr", "add", "198.18.9.9/32", "dev", "lo"]);
  });
  afterAll(() => {
    execFileSync("ip", ["netns", "del", NS], { stdio: "ignore" });
    rmSync(state, { recursive: true, force: true });
  });

  it("puts the address there, moves it, and leaves every other one", () => {
    installProxyAddress("198.18.4.1", state, inNs);
    expect(loAddresses()).toEqual(["127.0.0.1/8", "198.18.4.1/32", "198.18.9.9/32"]);
    // Again: nothing changes.
    installProxyAddress("198.18.4.1", state, inNs);
    expect(loAddresses()).toEqual(["127.0.0.1/8", "198.18.4.1/32", "198.18.9.9/32"]);
    // A socket can use it as its source (the proxy's `source`).
    expect(execFileSync("ip", ["netns", "exec", NS, "ip", "-4", "route", "get", "198.18.4.1", "from", "198.18.4.1"], { encoding: "utf8" })).toMatch(/^local 198\.18\.4\.1 from 198\.18\.4\.1 dev lo/);
    expect(installProxyAddress("198.18.5.1", state, inNs)).toEqual({ removed: "198.18.4.1" });
    expect(loAddresses()).toEqual(["127.0.0.1/8", "198.18.5.1/32", "198.18.9.9/32"]);
  });
});
