// Real validators: a Node TLS server and client, each holding an issued SVID
// and trusting only the bundle, complete mutual TLS and read each other's
// SPIFFE ID; a client with another trust domain's SVID is refused.
import { afterAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { CALLER, makeCsr, mtlsServer, newService, tempDir } from "./helpers.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

async function svid(ca: ReturnType<typeof newService>["ca"], tenantId: string, spiffeId: string) {
  const { keyPath, csrPem } = makeCsr(tmp.dir, { uri: spiffeId });
  const out = await ca.issueX509Svid({ tenantId, identityName: spiffeId.split("/").pop()!, spiffeId, csrPem, caller: CALLER });
  return { key: readFileSync(keyPath), cert: out.certificate + out.chain.join("") };
}

describe("mutual TLS with issued SVIDs", () => {
  it("server and client authenticate each other and read the peer's SPIFFE ID; a foreign SVID is refused", async () => {
    const { ca } = newService();
    await ca.ensure("acme", "acme.test", CALLER);
    await ca.ensure("evil", "evil.test", CALLER);
    const bundle = (await ca.bundle("acme"))!.pem;
    const serverId = "spiffe://acme.test/ns/prod/sa/api";
    const clientId = "spiffe://acme.test/ns/prod/sa/web";
    const server = await svid(ca, "acme", serverId);
    const client = await svid(ca, "acme", clientId);
    const foreign = await svid(ca, "evil", "spiffe://evil.test/ns/prod/sa/web");

    const { seenByServer, refusals: serverRefusals, dial, close } = await mtlsServer(server, bundle, serverId);

    try {
      const ok = await dial(client);
      expect(ok).toEqual({ peerId: serverId, data: "hello", error: undefined });
      expect(seenByServer).toEqual([clientId]);
      expect(serverRefusals).toEqual([]);

      const refused = await dial(foreign);
      expect(refused.data).toBe("");
      expect(seenByServer).toEqual([clientId]);
      expect(serverRefusals).toHaveLength(1);
      expect(String(serverRefusals[0])).toMatch(/^(SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)$/);
    } finally {
      await close();
    }
  });
});
