// verifySvid and the SPIFFE ID rules on their own: what a peer certificate
// proves, checked against certificates minted for each case.
import { describe, expect, it } from "vitest";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readCertificate } from "@weft/pki";
import { parseSpiffeId, verifySvid } from "../../nodeagent/src/transport/spiffe.ts";
import { mintCa, mintSvid } from "./pki.ts";

const root = mintCa("a.test");
const intermediate = mintCa("a.test", root);
const other = mintCa("b.test");
const bundles = new Map([
  ["a.test", [new X509Certificate(root.pem)]],
  ["b.test", [new X509Certificate(other.pem)]],
]);
const certs = (pem: string) => (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((b) => new X509Certificate(b));
const ID = "spiffe://a.test/ns/shop/sa/web";

describe("SPIFFE IDs", () => {
  it.each([
    ["spiffe://a.test/ns/shop/sa/web", "a.test"],
    ["spiffe://a.test", "a.test"],
  ])("accepts %s", (id, td) => expect(parseSpiffeId(id)).toEqual({ id, trustDomain: td }));

  it("refuses an ID longer than 2048 bytes", () => expect(parseSpiffeId(`spiffe://a.test/${"x".repeat(2040)}`)).toBeNull());

  it.each(["spiffe://A.test/x", "spiffe://a.test/", "spiffe://a.test//x", "spiffe://a.test/./x", "spiffe://a.test/../x", "spiffe://a.test/x?y", "spiffe://a.test/x#y", "spiffe://user@a.test/x", "https://a.test/x"])(
    "refuses %s",
    (id) => expect(parseSpiffeId(id)).toBeNull(),
  );
});

describe("verifySvid", () => {
  it("proves the ID for a leaf of the trust domain's root, and through a presented intermediate", () => {
    expect(verifySvid(certs(mintSvid(root, ID).chainPem)[0]!, [], bundles)).toEqual({ id: ID, trustDomain: "a.test" });
    const viaIntermediate = mintSvid(intermediate, ID);
    expect(verifySvid(certs(viaIntermediate.chainPem)[0]!, certs(intermediate.pem), bundles)).toEqual({ id: ID, trustDomain: "a.test" });
    // Without the intermediate the chain does not reach the bundle.
    expect(verifySvid(certs(viaIntermediate.chainPem)[0]!, [], bundles)).toBe("untrusted_chain");
  });

  it("refuses a leaf signed by another trust domain's CA, whatever intermediates come with it", () => {
    const forged = certs(mintSvid(other, ID).chainPem)[0]!;
    expect(verifySvid(forged, [new X509Certificate(other.pem)], bundles)).toBe("untrusted_chain");
    expect(verifySvid(certs(mintSvid(root, "spiffe://c.test/x").chainPem)[0]!, [], bundles)).toBe("unknown_trust_domain");
  });

  it("refuses a chain through a leaf: a workload's SVID cannot mint others", () => {
    const workload = mintSvid(root, "spiffe://a.test/ns/shop/sa/api");
    const workloadCert = certs(workload.chainPem)[0]!;
    const asIssuer = { trustDomain: "a.test", key: createPrivateKey(workload.keyPem), subject: readCertificate(workloadCert.raw).subjectDer, pem: workload.chainPem };
    const minted = certs(mintSvid(asIssuer, ID).chainPem)[0]!;
    expect(minted.verify(workloadCert.publicKey)).toBe(true); // signed by it indeed
    expect(verifySvid(minted, [workloadCert], bundles)).toBe("untrusted_chain");
  });

  it("judges validity at the time given", () => {
    const leaf = certs(mintSvid(root, ID).chainPem)[0]!;
    expect(verifySvid(leaf, [], bundles, Date.now() + 48 * 3_600_000)).toBe("expired");
    expect(verifySvid(leaf, [], bundles, Date.now() - 2 * 3_600_000)).toBe("not_yet_valid");
  });

  it("refuses no URI SAN and two", () => {
    expect(verifySvid(certs(mintSvid(root, []).chainPem)[0]!, [], bundles)).toBe("no_uri_san");
    expect(verifySvid(certs(mintSvid(root, [ID, `${ID}2`]).chainPem)[0]!, [], bundles)).toBe("several_uri_sans");
  });
});
