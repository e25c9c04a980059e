// The provider's HTTP edge (terraform/src/weft/client.ts) against a server
// that closes the connection under a request, as an API does when a
// kept-alive connection hits its idle timeout just as a request goes out
// (CI saw "fetch failed: other side closed" on a PUT of the TLS e2e test):
// a PUT, GET or DELETE is sent once more on a new connection; a POST is not
// (it may not be repeated), and its failure says why.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { send, weftContext } from "../../terraform/src/weft/client.ts";

let server: Server;
let base: string;
/** Requests the server cut before answering, and the ones it answered. */
const seen = { cut: 0, answered: 0 };
let cutNext = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    if (cutNext > 0) {
      cutNext--;
      seen.cut++;
      req.socket.destroy();
      return;
    }
    seen.answered++;
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ ok: true, method: req.method }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe("the provider's requests when the API closes the connection under one", () => {
  it.each(["PUT", "GET", "DELETE"])("sends a %s once more and reads the answer", async (method) => {
    cutNext = 1;
    const before = { ...seen };
    const a = await send(weftContext(base, "t"), method, "/v1/tenants/x", method === "PUT" ? { body: { a: 1 } } : undefined);
    expect(a.status).toBe(200);
    expect(seen.cut - before.cut).toBe(1);
    expect(seen.answered - before.answered).toBe(1);
  });

  it("does not send a POST twice, and says the API could not be reached", async () => {
    cutNext = 1;
    const before = { ...seen };
    const a = await send(weftContext(base, "t"), "POST", "/v1/join-tokens", { body: {} });
    expect(a.status).toBe(0);
    expect(a.body).toMatchObject({ title: "Cannot reach the Weft API" });
    expect(seen.cut - before.cut).toBe(1);
    expect(seen.answered - before.answered).toBe(0);
  });

  it("gives up after the second try: a server that keeps cutting is unreachable", async () => {
    cutNext = 2;
    const a = await send(weftContext(base, "t"), "GET", "/v1/tenants/x");
    expect(a.status).toBe(0);
    cutNext = 0;
  });
});
