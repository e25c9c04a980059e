// The control channel as the agent (or anything that gets to write on it by
// mistake) uses it: bad lines are answered with an error and change nothing,
// a refused configuration leaves the running one in force, and the
// transport exits when the channel closes.
import { afterAll, beforeAll, describe as vitestDescribe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import type { TransportConfig } from "../../nodeagent/src/transport/control-schema.ts";
import { mintCa, mintSvid } from "./pki.ts";
import { dialInbound, echoWorkload, startTransport, TRANSPORT_MAIN, type RunningTransport, skipTransport } from "./support.ts";

const describe = vitestDescribe.skipIf(skipTransport);

const CLIENT = { id: "spiffe://a.test/ns/shop/sa/web", address: "127.0.12.1" };
const SERVER = { id: "spiffe://a.test/ns/shop/sa/api", address: "127.0.22.1" };
const ca = mintCa("a.test");
let t: RunningTransport;
let echo: Awaited<ReturnType<typeof echoWorkload>>;

const good = (): TransportConfig => ({
  workloads: [{ spiffeId: SERVER.id, addresses: [SERVER.address], ...mintSvid(ca, SERVER.id) }],
  bundles: [{ trustDomain: "a.test", caPem: ca.pem }],
  remotes: [{ address: CLIENT.address, spiffeId: CLIENT.id, node: "127.0.0.1:1" }],
  allow: [{ source: CLIENT.id, destination: SERVER.id }],
});
const stillServes = async () =>
  (await dialInbound(t.inbound, mintSvid(ca, CLIENT.id), { destinationId: SERVER.id, authority: `${SERVER.address}:${echo.port}`, caPem: ca.pem })).status;

beforeAll(async () => {
  if (skipTransport) return;
  echo = await echoWorkload(SERVER.address);
  t = await startTransport();
  expect((await t.configure(good())).ok).toBe(true);
});
afterAll(async () => {
  await t?.stop();
  await echo?.close();
});

describe("the control channel", () => {
  it("answers a line that is not JSON or not a request with an error, and keeps serving", async () => {
    t.child.stdin!.write("{not json\n");
    const bad = await t.request({ op: "reboot" } as never);
    expect(bad).toMatchObject({ ok: false, error: expect.any(String) });
    expect((await t.request({ op: "steer", peer: "127.0.0.1:99999999", source: "x", destination: "y" })).ok).toBe(false);
    expect(await stillServes()).toBe(200);
  });

  it.each([
    ["a key that is not the certificate's", (c: TransportConfig) => ({ ...c, workloads: [{ ...c.workloads[0]!, keyPem: mintSvid(ca, SERVER.id).keyPem }] }), /key does not belong/],
    ["an SVID for another ID", (c: TransportConfig) => ({ ...c, workloads: [{ ...c.workloads[0]!, ...mintSvid(ca, CLIENT.id) }] }), /is for spiffe:\/\/a.test\/ns\/shop\/sa\/web/],
    ["an SVID no bundle vouches for", (c: TransportConfig) => ({ ...c, workloads: [{ ...c.workloads[0]!, ...mintSvid(mintCa("a.test"), SERVER.id) }] }), /does not verify \(untrusted_chain\)/],
    ["an expired SVID", (c: TransportConfig) => ({ ...c, workloads: [{ ...c.workloads[0]!, ...mintSvid(ca, SERVER.id, { notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) }) }] }), /expired/],
    ["a bundle holding a leaf", (c: TransportConfig) => ({ ...c, bundles: [{ trustDomain: "a.test", caPem: mintSvid(ca, SERVER.id).chainPem }] }), /not a CA/],
    ["an address given to two workloads", (c: TransportConfig) => ({ ...c, remotes: [{ address: SERVER.address, spiffeId: CLIENT.id, node: "127.0.0.1:1" }] }), /given twice/],
    ["an address out of range", (c: TransportConfig) => ({ ...c, remotes: [{ address: "300.1.1.1", spiffeId: CLIENT.id, node: "127.0.0.1:1" }] }), /not an IPv4 address/],
    ["a malformed SPIFFE ID", (c: TransportConfig) => ({ ...c, allow: [{ source: "spiffe://A.test/../x", destination: SERVER.id }] }), /not a SPIFFE ID/],
    ["an unknown field", (c: TransportConfig) => ({ ...c, extra: true }), /./],
  ])("refuses a configuration with %s and keeps the running one", async (_what, mutate, error) => {
    const answer = await t.configure(mutate(good()) as TransportConfig);
    expect(answer.ok).toBe(false);
    expect(answer.error).toMatch(error);
    expect(await stillServes()).toBe(200);
  });

  it("stops carrying a pair the next configuration removes", async () => {
    expect((await t.configure({ ...good(), allow: [] })).ok).toBe(true);
    expect(await stillServes()).toBe(403);
    expect((await t.configure(good())).ok).toBe(true);
    expect(await stillServes()).toBe(200);
  });

  it.each([
    [["--inbound", "localhost:15008"], /--inbound wants IPV4:PORT/],
    [["--outbound", "127.0.0.1:70000"], /--outbound wants IPV4:PORT/],
    [["--key-exchange", "classical"], /--key-exchange is post-quantum or post-quantum-or-classical/],
    [["--deliver", "spoofed"], /--deliver is transparent or plain/],
  ])("refuses to start with %j, saying why", (args, message) => {
    const r = spawnSync(process.execPath, ["--import", "tsx", TRANSPORT_MAIN, ...args], { encoding: "utf8", input: "", timeout: 20_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe("");
  });

  it("exits when the channel closes: no transport outlives its agent", async () => {
    const x = await startTransport();
    const code = new Promise<number | null>((r) => x.child.once("exit", (c) => r(c)));
    x.child.stdin!.end();
    expect(await code).toBe(0);
  });
});
