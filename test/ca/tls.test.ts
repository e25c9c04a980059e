// Real validators: a Node TLS server and client, each holding an issued SVID
// and trusting only the bundle, complete mutual TLS and read each other's
// SPIFFE ID; a client with another trust domain's SVID is refused.
import { afterAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { connect, createServer, type PeerCertificate, type TLSSocket } from "node:tls";
import type { AddressInfo } from "node:net";
import { makeCsr, newService, tempDir } from "./helpers.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

async function svid(ca: ReturnType<typeof newService>["ca"], tenantId: string, spiffeId: string) {
  const { keyPath, csrPem } = makeCsr(tmp.dir, { uri: spiffeId });
  const out = await ca.issueX509Svid({ tenantId, identityName: spiffeId.split("/").pop()!, spiffeId, csrPem });
  return { key: readFileSync(keyPath), cert: out.certificate + out.chain.join("") };
}

const uriSan = (c: PeerCertificate): string | undefined => /URI:([^,]+)/.exec(c.subjectaltname ?? "")?.[1];

describe("mutual TLS with issued SVIDs", () => {
  it("server and client authenticate each other and read the peer's SPIFFE ID; a foreign SVID is refused", async () => {
    const { ca } = newService();
    await ca.ensure("acme", "acme.test");
    await ca.ensure("evil", "evil.test");
    const bundle = (await ca.bundle("acme"))!.pem;
    const serverId = "spiffe://acme.test/ns/prod/sa/api";
    const clientId = "spiffe://acme.test/ns/prod/sa/web";
    const server = await svid(ca, "acme", serverId);
    const client = await svid(ca, "acme", clientId);
    const foreign = await svid(ca, "evil", "spiffe://evil.test/ns/prod/sa/web");

    const seenByServer: string[] = [];
    // Why the server refused each client: its chain verification error.
    const serverRefusals: (Error | undefined)[] = [];
    const srv = createServer({ ...server, ca: bundle, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3" }, (s) => {
      seenByServer.push(uriSan(s.getPeerCertificate())!);
      s.end("hello");
    });
    srv.on("tlsClientError", (_e, s) => serverRefusals.push(s.authorizationError));
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as AddressInfo).port;

    // SPIFFE peers authenticate by SPIFFE ID, not DNS name: replace the
    // hostname check with a check of the URI SAN. Resolves on close with
    // what the client saw; TLS 1.3 reports the server's refusal of a client
    // certificate after the client's side of the handshake, as an alert.
    const dial = (creds: { key: Buffer; cert: string }) =>
      new Promise<{ peerId: string | undefined; data: string; error: Error | undefined }>((resolve) => {
        const sock: TLSSocket = connect({
          host: "127.0.0.1",
          port,
          ...creds,
          ca: bundle,
          rejectUnauthorized: true,
          checkServerIdentity: (_h, cert) => (uriSan(cert) === serverId ? undefined : new Error(`unexpected server ${uriSan(cert)}`)),
        });
        let data = "";
        let error: Error | undefined;
        let peerId: string | undefined;
        sock.on("secureConnect", () => (peerId = uriSan(sock.getPeerCertificate())));
        sock.on("data", (d) => (data += d));
        sock.on("error", (e) => (error = e));
        sock.on("close", () => resolve({ peerId, data, error }));
      });

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
      await new Promise<void>((r) => srv.close(() => r()));
    }
  });
});
