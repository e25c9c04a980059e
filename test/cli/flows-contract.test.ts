// `weft flows` against the flows contract of issue #17 (GET
// /v1/tenants/{tenant}/flows and /v1/flows: pages of {items, nextCursor};
// ?follow=true: Server-Sent Events) while the API side is built on another
// branch. The server here is a fixed recording of that contract on loopback,
// so the client's paging, filters, stream decoding and Ctrl-C can be tested
// now; the end-to-end test against the real API replaces it when it lands.
import { spawn } from "node:child_process";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Flow } from "../../cli/src/flow-format.ts";
import { until } from "../support/until.ts";
import { runWeft, WEFT_BIN } from "../support/weft-cli.ts";

const TOKEN = "weft_op_contract-token-0123456789abcdef";

const flow = (n: number, verdict: Flow["verdict"] = "dropped"): Flow => ({
  id: `f${n}`,
  time: `2026-12-06T16:20:0${n}.12${n}Z`,
  node: "node-a",
  hook: "ingress",
  verdict,
  reason: verdict === "dropped" ? "policy-deny" : null,
  protocol: "tcp",
  source: { address: "198.18.1.2", port: 40000 + n, identity: "web", tenant: "acme" },
  destination: { address: "198.18.2.3", port: 5432, identity: "db", tenant: "acme" },
  policy: verdict === "dropped" ? { name: "db-ingress", rule: 0, direction: "ingress", mode: "enforce" } : null,
});

let server: Server;
let endpoint: string;
const requests: URL[] = [];
const streams = new Set<ServerResponse>();

function answer(req: IncomingMessage, res: ServerResponse) {
  const url = new URL(req.url!, "http://x");
  requests.push(url);
  if (req.headers.authorization !== `Bearer ${TOKEN}`) {
    res.writeHead(401, { "content-type": "application/problem+json" }).end(JSON.stringify({ type: "urn:weft:problem:unauthorized", title: "Unauthorized", status: 401 }));
    return;
  }
  if (url.pathname !== "/v1/tenants/acme/flows" && url.pathname !== "/v1/flows") {
    res.writeHead(404, { "content-type": "application/problem+json" }).end(JSON.stringify({ type: "urn:weft:problem:not-found", title: "Not Found", status: 404, detail: "tenant not found" }));
    return;
  }
  if (url.searchParams.get("follow") === "true") {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store" });
    streams.add(res);
    res.on("close", () => streams.delete(res));
    res.write(": heartbeat\n\n");
    res.write(`event: flow\ndata: ${JSON.stringify(flow(3))}\n\n`);
    // Split mid-event, as TCP may deliver it.
    const second = `event: flow\ndata: ${JSON.stringify(flow(4, "forwarded"))}\n\n`;
    res.write(second.slice(0, 20));
    setTimeout(() => res.write(second.slice(20)), 50);
    return;
  }
  const page = url.searchParams.get("cursor") === "p2" ? { items: [flow(2)] } : { items: [flow(1)], nextCursor: "p2" };
  res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(page));
}

beforeAll(async () => {
  server = createServer(answer);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

afterAll(async () => {
  for (const s of streams) s.destroy();
  await new Promise((resolve) => server?.close(resolve));
});

const env = () => ({ HOME: "/nonexistent", WEFT_CONFIG: "/nonexistent/config.json", WEFT_ENDPOINT: endpoint, WEFT_TOKEN: TOKEN });

describe("weft flows (against the contract)", { timeout: 60_000 }, () => {
  it("pages through the tenant's flows with the filters, one hubble-like line each", async () => {
    requests.length = 0;
    const r = await runWeft(["flows", "--tenant", "acme", "--verdict", "dropped", "--identity", "web", "--hook", "ingress", "--reason", "mtls-required", "--node", "node-a", "--since", "5m"], env());
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      [
        "Dec  6 16:20:01.121  node-a  acme/web 198.18.1.2:40001 -> acme/db 198.18.2.3:5432 tcp  DROPPED (policy-deny, policy db-ingress rule 0 ingress)",
        "Dec  6 16:20:02.122  node-a  acme/web 198.18.1.2:40002 -> acme/db 198.18.2.3:5432 tcp  DROPPED (policy-deny, policy db-ingress rule 0 ingress)",
        "",
      ].join("\n"),
    );
    expect(requests.map((u) => u.pathname)).toEqual(["/v1/tenants/acme/flows", "/v1/tenants/acme/flows"]);
    const first = Object.fromEntries(requests[0]!.searchParams);
    expect(first).toMatchObject({ verdict: "dropped", identity: "web", hook: "ingress", reason: "mtls-required", node: "node-a", since: "5m" });
    expect(requests[1]!.searchParams.get("cursor")).toBe("p2");
  });

  it("prints one JSON object per line with -o json, and reads every tenant's flows with --operator", async () => {
    requests.length = 0;
    const r = await runWeft(["flows", "--operator", "-o", "json"], env());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trimEnd().split("\n").map((l) => JSON.parse(l))).toEqual([flow(1), flow(2)]);
    expect(requests[0]!.pathname).toBe("/v1/flows");
  });

  it("follows the event stream until interrupted, then exits 0", async () => {
    const child = spawn(process.execPath, [WEFT_BIN, "flows", "-t", "acme", "--follow"], { env: { PATH: process.env.PATH, TZ: "UTC", ...env() } });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
    try {
      await until("two followed flows", 30_000, () => (out.split("\n").length > 2 ? true : undefined));
      expect(out.split("\n").slice(0, 2)).toEqual([
        "Dec  6 16:20:03.123  node-a  acme/web 198.18.1.2:40003 -> acme/db 198.18.2.3:5432 tcp  DROPPED (policy-deny, policy db-ingress rule 0 ingress)",
        "Dec  6 16:20:04.124  node-a  acme/web 198.18.1.2:40004 -> acme/db 198.18.2.3:5432 tcp  FORWARDED",
      ]);
      child.kill("SIGINT");
      expect(await closed).toBe(0);
      expect(err).toBe("");
      await until("the server to see the client leave", 5_000, () => (streams.size === 0 ? true : undefined));
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("prints the problem of a refusal and exits 1; a bad --verdict is a usage error", async () => {
    const missing = await runWeft(["flows", "-t", "nope"], env());
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe("error: Not Found (404): tenant not found\n");
    const usage = await runWeft(["flows", "-t", "acme", "--verdict", "denied"], env());
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("--verdict must be one of forwarded, dropped, audit, translated");
    const hook = await runWeft(["flows", "-t", "acme", "--hook", "tc"], env());
    expect(hook.code).toBe(2);
    expect(hook.stderr).toContain("--hook must be one of ingress, egress, sock, transport");
  });
});
