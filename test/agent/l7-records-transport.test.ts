// A request the node's proxy sends through the transport (issue 21): HAProxy's
// record names the transport's unix socket as its server ("unix", no port).
// The agent reads it as the backend the server stands for, so that flows,
// spans and outlier ejection see where the request went; and a record it
// cannot place never stops the records' consumers (it had crashed the
// agent: parseIPv4("unix") in the flows of a batch).
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import type { AccessRecord } from "../../nodeagent/src/l7/access-log.ts";
import { accessEvents } from "../../nodeagent/src/l7/flows.ts";
import { L7Metrics } from "../../nodeagent/src/l7/metrics.ts";
import { RecordIntake } from "../../nodeagent/src/l7/record-intake.ts";

const line = (over: Record<string, unknown> = {}) =>
  JSON.stringify({
    startMs: Date.now(),
    src: "198.18.0.10",
    srcPort: 40000,
    caller: "spiffe://acme.test/ns/a/sa/client",
    frontend: "s1-p80",
    service: "acme/web",
    vip: "198.19.0.5",
    vport: 80,
    route: "web/0",
    backend: "s1-p80-default",
    server: "b7",
    serverAddress: "unix",
    serverPort: "-",
    status: 200,
    durationMs: 3,
    retries: "0",
    bytesIn: 100,
    bytesOut: 200,
    method: "GET",
    path: "/",
    traceId: "-",
    spanId: "-",
    parentSpanId: "-",
    refused: "-",
    ...over,
  });

function intake(serverAt?: (backend: string, server: string) => { address: string; port: number } | undefined) {
  const observed: AccessRecord[] = [];
  const i = new RecordIntake({ metrics: new L7Metrics(new Registry()), observe: (r) => observed.push(r), batches: true, log: () => {}, ...(serverAt ? { serverAt } : {}) });
  return { i, observed };
}

describe("records of servers reached through the transport", () => {
  it("reads a unix server as the backend it stands for, for outlier ejection and flows alike", () => {
    const { i, observed } = intake((backend, server) => (backend === "s1-p80-default" && server === "b7" ? { address: "198.18.1.20", port: 8080 } : undefined));
    i.message(line());
    expect(observed[0]).toMatchObject({ serverAddress: "198.18.1.20", serverPort: 8080 });
    const events = accessEvents(i.take()!.batch, () => ({ identity: 0, tenant: 0 }));
    expect(events[0]).toMatchObject({ reason: "http-forwarded", destination: { address: "198.18.1.20", port: 8080 } });
    // A server with an address of its own is left as HAProxy wrote it.
    i.message(line({ serverAddress: "198.18.0.30", serverPort: "8080", server: "b8" }));
    expect(observed[1]).toMatchObject({ serverAddress: "198.18.0.30", serverPort: 8080 });
  });

  it("turns a server it cannot place into the VIP's flow, and never throws", () => {
    const { i } = intake(() => undefined);
    i.message(line());
    const events = accessEvents(i.take()!.batch, () => ({ identity: 0, tenant: 0 }));
    expect(events[0]).toMatchObject({ reason: "http-forwarded", destination: { address: "198.19.0.5", port: 80 } });
  });
});
