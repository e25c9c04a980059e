// SPDX-License-Identifier: Apache-2.0
// One request record as HAProxy writes it (render.ts LOG_FORMAT) read into
// the agent's AccessRecord (nodeagent/src/l7/access-log.ts): HAProxy's "-"
// read as "", the server's port and the retries as numbers, and anything
// that is not a whole record of that format refused.
import { describe, expect, it } from "vitest";
import { parseAccessRecord } from "../../nodeagent/src/l7/access-log.ts";

/** A record the proxy wrote (README's L7 section). */
const LINE = `{"startMs":1796622359633,"src":"127.0.0.30","srcPort":37259,"caller":"spiffe://shop.weft/ns/shop/sa/client","frontend":"f-1-80","service":"shop/web","vip":"127.0.0.1","vport":18123,"route":"canary/1","backend":"b-1-1-0","server":"v1-a","serverAddress":"127.0.0.1","serverPort":"34683","status":200,"durationMs":8,"retries":"0","bytesIn":134,"bytesOut":103,"method":"GET","path":"\\/api\\/items","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"b74dc594342340ad","parentSpanId":"-","refused":"-"}`;

describe("reading a request record", () => {
  it("reads every field, unset ones as '', the server's port and retries as numbers", () => {
    expect(parseAccessRecord(LINE)).toEqual({
      startMs: 1796622359633,
      src: "127.0.0.30",
      srcPort: 37259,
      caller: "spiffe://shop.weft/ns/shop/sa/client",
      frontend: "f-1-80",
      service: "shop/web",
      vip: "127.0.0.1",
      vport: 18123,
      route: "canary/1",
      backend: "b-1-1-0",
      server: "v1-a",
      serverAddress: "127.0.0.1",
      serverPort: 34683,
      status: 200,
      durationMs: 8,
      retries: 0,
      bytesIn: 134,
      bytesOut: 103,
      method: "GET",
      path: "/api/items",
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      spanId: "b74dc594342340ad",
      parentSpanId: "",
      refused: "",
    });
  });

  it("reads a refusal without a server, and a redispatch's retries", () => {
    const refused = LINE.replace(`"server":"v1-a","serverAddress":"127.0.0.1","serverPort":"34683"`, `"server":"<NOSRV>","serverAddress":"-","serverPort":"-"`).replace(`"refused":"-"`, `"refused":"forbidden"`);
    expect(parseAccessRecord(refused)).toMatchObject({ server: "<NOSRV>", serverAddress: "", serverPort: 0, refused: "forbidden" });
    expect(parseAccessRecord(LINE.replace(`"retries":"0"`, `"retries":"+1"`))).toMatchObject({ retries: 1 });
    expect(parseAccessRecord(LINE.replace(`"retries":"0"`, `"retries":"-1"`))).toMatchObject({ retries: 0 });
    expect(parseAccessRecord(LINE.replace(`"serverPort":"34683"`, `"serverPort":"70000"`))).toMatchObject({ serverPort: 0 });
  });

  it("refuses what is not a whole record of the format", () => {
    for (const bad of [LINE.slice(0, 200), "Proxy f stopped", "{}", "null", LINE.replace(`"status":200`, `"status":"200"`), LINE.replace(`,"refused":"-"`, ""), LINE.replace(`"retries":"0"`, `"retries":"x"`)]) {
      expect(parseAccessRecord(bad), bad).toBeNull();
    }
  });
});
