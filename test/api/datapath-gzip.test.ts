import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { acceptsGzip, gzipPieces, storedMember } from "../../api/src/routes/datapath/gzip.ts";
import { ApiClient } from "../../nodeagent/src/agent/client.ts";
import { bearer, startApi, tenantWithToken } from "../support/api.ts";
import { freshAddress, identity, mustPut } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";

describe("Accept-Encoding", () => {
  it.each([
    [undefined, false],
    ["", false],
    ["gzip", true],
    ["gzip, deflate", true],
    ["gzip, deflate, br, zstd", true],
    ["GZIP;Q=0.5", true],
    ["x-gzip", true],
    ["deflate", false],
    ["identity", false],
    ["gzip;q=0", false],
    ["gzip; q=0.000", false],
    ["gzip;q=abc", false],
    ["*", true],
    ["*;q=0", false],
    ["*, gzip;q=0", false],
    ["gzip;q=0, *", false],
    ["br;q=1, *;q=0.1", true],
  ] as const)("%j takes gzip: %s", (header, expected) => {
    expect(acceptsGzip(header)).toBe(expected);
  });
});

describe("gzip members", () => {
  const shared = Buffer.from(JSON.stringify(Array.from({ length: 400 }, (_, i) => ({ key: { prefix: `198.18.${i >> 8}.${i & 255}/32` } }))));
  const pieces = () => [Buffer.from('{"revision":7,'), Buffer.from('"maps":['), shared, Buffer.from(","), shared, Buffer.from("]}")];

  it("gunzip to the pieces' concatenation, smaller", () => {
    const members = gzipPieces(pieces());
    const body = Buffer.concat(members);
    expect(gunzipSync(body).equals(Buffer.concat(pieces()))).toBe(true);
    expect(body.length).toBeLessThan(Buffer.concat(pieces()).length / 5);
  });

  it.each([0, 1, 100, 65535, 65536, 200_000])("stored member of %i bytes gunzips to its data", (size) => {
    const data = Buffer.from(Array.from({ length: size }, (_, i) => (i * 7919) & 0xff));
    const member = storedMember(data);
    expect(gunzipSync(member).equals(data)).toBe(true);
    // One after another, as the route sends them: zlib reads every member.
    expect(gunzipSync(Buffer.concat([member, member])).equals(Buffer.concat([data, data]))).toBe(true);
  });

  it("compress a large piece once and join the small ones between", () => {
    const first = gzipPieces(pieces());
    const second = gzipPieces(pieces());
    // framing, shared, framing, shared, framing: the small pieces between two large ones are one member.
    expect(first).toHaveLength(5);
    expect(second[1]).toBe(first[1]);
    expect(second[3]).toBe(first[1]);
    expect(second[0]).not.toBe(first[0]);
  });
});

// A route concern, the same on either database: PGlite alone.
describe("a large datapath answer, on the in-process API", () => {
  let app: WeftApp;
  let base: string;
  let node: { name: string; credential: string; podCidr: string };
  beforeAll(async () => {
    app = await startApi("pglite");
    base = await app.listen({ host: "127.0.0.1", port: 0 });
    const t = await tenantWithToken(app, ["write"]);
    node = await registeredNode(app);
    await identity(app, t.token, t.tenant, "web", { app: "web" });
    // ≈ 200 bytes of maps a workload: 150 make a full state well past the 16 KiB below which bodies are sent joined.
    const used = new Set<string>();
    for (let i = 0; i < 150; i++) {
      let address = freshAddress(node.podCidr);
      while (used.has(address)) address = freshAddress(node.podCidr);
      used.add(address);
      await mustPut(app, t.token, t.tenant, `workloads/w${i}`, { identity: "web", node: node.name, addresses: [address] });
    }
  }, 120_000);
  afterAll(async () => app?.close());

  const read = (headers: Record<string, string>, query = "") =>
    fetch(`${base}/v1/nodes/${node.name}/datapath${query}`, { headers: { ...bearer(node.credential), ...headers } });
  /** The body as sent: undici's fetch would decode it. */
  const raw = (headers: Record<string, string>, query = "") =>
    app.inject({ url: `/v1/nodes/${node.name}/datapath${query}`, headers: { ...bearer(node.credential), ...headers } });

  it("goes gzip-coded to a client that takes gzip, and decodes to the plain answer", async () => {
    const plain = await raw({});
    expect(plain.statusCode).toBe(200);
    expect(plain.headers["content-encoding"]).toBeUndefined();
    expect(plain.rawPayload.length).toBeGreaterThan(16 * 1024);
    const coded = await raw({ "accept-encoding": "gzip, deflate" });
    expect(coded.statusCode).toBe(200);
    expect(coded.headers).toMatchObject({ "content-encoding": "gzip", vary: "accept-encoding", etag: plain.headers.etag });
    expect(Number(coded.headers["content-length"])).toBe(coded.rawPayload.length);
    expect(coded.rawPayload.length).toBeLessThan(plain.rawPayload.length / 5);
    expect(gunzipSync(coded.rawPayload).equals(plain.rawPayload)).toBe(true);
    // Refused by weight: plain.
    const refused = await raw({ "accept-encoding": "gzip;q=0, deflate" });
    expect(refused.headers["content-encoding"]).toBeUndefined();
    expect(refused.rawPayload.equals(plain.rawPayload)).toBe(true);
  });

  it("leaves a small answer (a delta) plain", async () => {
    const full = (await raw({})).json() as { revision: number };
    const delta = await raw({ "accept-encoding": "gzip" }, `?since=${full.revision}`);
    expect(delta.statusCode).toBe(200);
    expect(delta.headers["content-encoding"]).toBeUndefined();
    expect(delta.headers.vary).toBe("accept-encoding");
  });

  it("reaches the agent's client decoded, over a socket", async () => {
    const res = await read({ "accept-encoding": "gzip" });
    expect(res.headers.get("content-encoding")).toBe("gzip");
    const plain = (await raw({})).json();
    expect(await res.json()).toEqual(plain);
    // The agent's own client asks for gzip (fetch does) and reads the same state.
    const client = new ApiClient(base, node.credential);
    expect(await client.datapath(node.name)).toEqual({ kind: "full", etag: `"${plain.hash}"`, body: plain });
  });
});
