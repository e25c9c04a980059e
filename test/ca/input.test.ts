// Bad input is refused with errors that name the field: CSRs, SPIFFE paths,
// trust domains, audiences.
import { afterAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { verifyCsr } from "../../api/src/ca/csr.ts";
import { fromPem, toPem } from "@weft/pki/der";
import { CaInputError } from "../../api/src/ca/errors.ts";
import { validateAudience } from "../../api/src/ca/jwt-svid.ts";
import { parseSpiffeId, validatePath, validateSpiffeId, validateTrustDomain } from "../../api/src/ca/spiffe-id.ts";
import { CALLER, makeCsr, newService, tempDir } from "./helpers.ts";

const ID = "spiffe://acme.weft.test/ns/prod/sa/web";
const tmp = tempDir();
afterAll(() => tmp.cleanup());

function csrError(fn: () => unknown): { field: string; message: string } {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CaInputError);
    const errors = (e as CaInputError).errors;
    expect(errors).toHaveLength(1);
    return errors[0]!;
  }
  throw new Error("expected a CaInputError");
}

describe("CSR checks", () => {
  it("accepts EC P-256, P-384 and RSA-2048 keys, returning the key for the leaf", () => {
    for (const key of ["ec-p256", "ec-p384", "rsa-2048"] as const) {
      const { csrPem } = makeCsr(tmp.dir, { key, uri: ID });
      const out = verifyCsr(csrPem, ID);
      expect(out.keyType).toBe(key.startsWith("ec") ? "ec" : "rsa");
      expect(out.spkiDer[0]).toBe(0x30);
    }
  });

  it("accepts a CSR without any SAN (the CA adds the SPIFFE ID)", () => {
    expect(() => verifyCsr(makeCsr(tmp.dir).csrPem, ID)).not.toThrow();
  });

  it("refuses text that is not a PEM CSR", () => {
    const e = csrError(() => verifyCsr("hello", ID));
    expect(e.field).toBe("csr");
    expect(e.message).toMatch(/BEGIN CERTIFICATE REQUEST/);
  });

  it("refuses a PEM CSR whose DER is malformed", () => {
    const der = fromPem(makeCsr(tmp.dir).csrPem, ["CERTIFICATE REQUEST"])!;
    const e = csrError(() => verifyCsr(toPem("CERTIFICATE REQUEST", der.subarray(0, der.length - 7)), ID));
    expect(e).toMatchObject({ field: "csr" });
    expect(e.message).toMatch(/not a valid PKCS#10 request/);
  });

  it("refuses an RSA-1024 key", () => {
    const e = csrError(() => verifyCsr(makeCsr(tmp.dir, { key: "rsa-1024" }).csrPem, ID));
    expect(e).toEqual({ field: "csr", message: expect.stringMatching(/RSA key of 1024 bits is not accepted/) });
  });

  it("refuses other key types", () => {
    const e = csrError(() => verifyCsr(makeCsr(tmp.dir, { key: "ed25519" }).csrPem, ID));
    expect(e.message).toMatch(/ed25519 keys are not accepted/);
  });

  it("refuses a CSR whose signature does not verify (one byte flipped)", () => {
    const der = Buffer.from(fromPem(makeCsr(tmp.dir, { uri: ID }).csrPem, ["CERTIFICATE REQUEST"])!);
    // The signature's BIT STRING is last; flip a byte inside its r value.
    der[der.length - 10]! ^= 0x01;
    const e = csrError(() => verifyCsr(toPem("CERTIFICATE REQUEST", der), ID));
    expect(e).toEqual({ field: "csr", message: expect.stringMatching(/signature does not verify/) });
  });

  it("refuses a P-256 key whose point is not on the curve", () => {
    const der = Buffer.from(fromPem(makeCsr(tmp.dir).csrPem, ["CERTIFICATE REQUEST"])!);
    // The uncompressed point follows this SPKI prefix; flip the last byte of y.
    const at = der.indexOf(Buffer.from("2a8648ce3d03010703420004", "hex")) + 12 + 63;
    der[at]! ^= 0x01;
    expect(csrError(() => verifyCsr(toPem("CERTIFICATE REQUEST", der), ID))).toEqual({
      field: "csr",
      message: "the public key in the request cannot be read",
    });
  });

  it("refuses a CSR whose signed content was altered (subject byte changed)", () => {
    const pem = makeCsr(tmp.dir, { subject: "/O=workload/CN=aaaa" }).csrPem;
    const der = Buffer.from(fromPem(pem, ["CERTIFICATE REQUEST"])!);
    const at = der.indexOf(Buffer.from("aaaa"));
    der[at] = "b".charCodeAt(0);
    expect(csrError(() => verifyCsr(toPem("CERTIFICATE REQUEST", der), ID)).message).toMatch(/signature does not verify/);
  });

  it("refuses a CSR asking for another URI SAN, alone or beside the right one", () => {
    const other = "spiffe://acme.weft.test/ns/prod/sa/admin";
    for (const uri of [other, [ID, other]]) {
      const e = csrError(() => verifyCsr(makeCsr(tmp.dir, { uri }).csrPem, ID));
      expect(e.field).toBe("csr");
      expect(e.message).toContain(`requests URI SAN ${other}`);
    }
  });

  it("issues nothing and records nothing for a bad CSR", async () => {
    const { ca, store } = newService();
    await ca.ensure("t1", "acme.weft.test", CALLER);
    const csrPem = makeCsr(tmp.dir, { key: "rsa-1024" }).csrPem;
    await expect(ca.issueX509Svid({ tenantId: "t1", identityName: "web", spiffeId: ID, csrPem, caller: CALLER })).rejects.toBeInstanceOf(CaInputError);
    expect(store.issuances).toHaveLength(0);
  });
});

describe("SPIFFE ID rules", () => {
  it("accepts well-formed IDs", () => {
    expect(validateSpiffeId("acme.weft-1_x", "/ns/prod/sa/web.v2-a_b")).toEqual([]);
    expect(parseSpiffeId(ID)).toEqual({ ok: true, trustDomain: "acme.weft.test", path: "/ns/prod/sa/web" });
  });

  it("refuses a path with a '..' segment", () => {
    expect(validatePath("/ns/../sa/web")).toEqual([{ field: "path", message: "segment 2 is '..', which is not allowed" }]);
    expect(validatePath("/ns/./web")[0]!.message).toMatch(/'\.'/);
  });

  it("refuses percent-encoding such as %2F", () => {
    expect(validatePath("/ns%2Fprod/web")).toEqual([{ field: "path", message: "path must not contain percent-encoding ('%')" }]);
  });

  it("refuses empty segments, trailing slashes, a missing leading slash and odd characters", () => {
    expect(validatePath("/ns//web")[0]!.message).toMatch(/empty/);
    expect(validatePath("/ns/web/")[0]!.message).toMatch(/end with/);
    expect(validatePath("ns/web")[0]!.message).toMatch(/start with/);
    expect(validatePath("/ns/wé b")[0]!.message).toMatch(/only letters, digits/);
    expect(validatePath("/")[0]!.message).toMatch(/name a workload/);
  });

  it("refuses a trust domain with capitals, naming the field", () => {
    expect(validateTrustDomain("Acme.weft")).toEqual([
      {
        field: "trustDomain",
        message: "trust domain may contain only lowercase letters, digits, '.', '-' and '_' (capital letters are not allowed: use lowercase)",
      },
    ]);
    expect(validateTrustDomain("acme:8443")[0]!.field).toBe("trustDomain");
    expect(validateTrustDomain("")[0]!.message).toMatch(/empty/);
  });

  it("bounds the trust domain at 255 bytes and the whole ID at 2048", () => {
    expect(validateTrustDomain("a".repeat(255))).toEqual([]);
    expect(validateTrustDomain("a".repeat(256))[0]!.message).toMatch(/256 bytes/);
    const td = "a".repeat(100);
    const okPath = `/${"b".repeat(2048 - "spiffe://".length - 100 - 1)}`;
    expect(validateSpiffeId(td, okPath)).toEqual([]);
    expect(validateSpiffeId(td, `${okPath}c`)).toEqual([{ field: "path", message: "SPIFFE ID would be 2049 bytes; at most 2048 allowed" }]);
  });

  it("a validated path never contains a dot segment, '%' or an empty segment (property)", () => {
    const seg = fc.oneof(fc.constantFrom("", ".", "..", "%2F", "a", "B-9", "x_y.z"), fc.string({ maxLength: 4 }));
    fc.assert(
      fc.property(fc.array(seg, { minLength: 1, maxLength: 6 }), (segs) => {
        const path = `/${segs.join("/")}`;
        if (validatePath(path).length === 0) {
          const parts = path.slice(1).split("/");
          expect(parts.every((p) => /^[A-Za-z0-9._-]+$/.test(p) && p !== "." && p !== "..")).toBe(true);
        }
      }),
    );
  });
});

describe("JWT-SVID audience", () => {
  it("must be a non-empty array of non-empty strings", () => {
    expect(validateAudience(["a"])).toEqual([]);
    expect(validateAudience([])).toEqual([{ field: "audience", message: "audience must be a non-empty array of strings" }]);
    expect(validateAudience("a")[0]!.field).toBe("audience");
    expect(validateAudience(["a", ""])).toEqual([{ field: "audience[1]", message: "audience entries must be non-empty strings" }]);
  });
});
