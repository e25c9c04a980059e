import { connect } from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { expectProblem, operator, startApi } from "../support/api.ts";

/** Writes raw bytes to the server and reads until it closes the connection (bounded). */
function raw(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let out = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no close within 5 s; got: ${out}`));
    }, 5000);
    socket.on("data", (d) => (out += d.toString("latin1")));
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(out);
    });
    socket.on("error", () => undefined);
    socket.write(bytes);
  });
}

// Errors raised before any route or hook runs (Fastify's router, Node's HTTP
// parser) used to leave as plain JSON, outside the problem+json contract.
describe("errors before routing", () => {
  let app: WeftApp;
  let port: number;
  beforeAll(async () => {
    app = await startApi("pglite");
    await app.listen({ port: 0, host: "127.0.0.1" });
    port = (app.server.address() as AddressInfo).port;
  });
  afterAll(async () => app?.close());

  it("answers a bad percent escape and an over-long path parameter as problems, with the request id", async () => {
    for (const [url, status] of [["/v1/tenants/%ff/policies", 400], [`/v1/tenants/${"a".repeat(300)}`, 414]] as const) {
      const res = await app.inject({ url, headers: operator });
      const problem = expectProblem(res, status);
      expect(problem.requestId).toBe(res.headers["x-request-id"]);
    }
  });

  it("answers what Node's HTTP parser refuses as a problem, and closes", async () => {
    const answer = await raw(port, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer.toLowerCase()).toContain("content-type: application/problem+json");
  });

  it("never writes the parser's 400 in the place of a pipelined request's own answer", async () => {
    const answer = await raw(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\x01 / HTTP/1.1\r\n\r\n");
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
  });
});
