import { afterAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { readFileSync, statSync, chmodSync } from "node:fs";
import { inspect } from "node:util";
import { join } from "node:path";
import { Kek, loadKek, parseKek } from "../../api/src/ca/kek.ts";
import { createAuthority, openAuthority } from "../../api/src/ca/authority.ts";
import { tempDir } from "./helpers.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe("KEK", () => {
  it("seals and opens a key; a wrong KEK or another context cannot open it", () => {
    const kek = new Kek(randomBytes(32));
    const secret = randomBytes(100);
    const sealed = kek.seal(secret, "weft/ca/t1/s1/x509-ca");
    expect(sealed).not.toContain(secret.toString("base64url"));
    expect(kek.open(sealed, "weft/ca/t1/s1/x509-ca").equals(secret)).toBe(true);
    expect(() => new Kek(randomBytes(32)).open(sealed, "weft/ca/t1/s1/x509-ca")).toThrow(/wrong KEK/);
    expect(() => kek.open(sealed, "weft/ca/t2/s1/x509-ca")).toThrow(/wrong KEK/);
  });

  it("round-trips a whole authority; the sealed material holds no clear private key", () => {
    const kek = new Kek(randomBytes(32));
    const slot = createAuthority({ tenantId: "t1", slotId: "s1", trustDomain: "acme.test", now: new Date(), kek });
    const open = openAuthority("t1", slot, kek);
    expect(open.leafTemplate.caKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(open.jwt.kid).toBe(slot.material.jwtKid);
    const pkcs8 = open.leafTemplate.caKey.export({ type: "pkcs8", format: "der" }).toString("base64");
    expect(JSON.stringify(slot)).not.toContain(pkcs8);
    expect(() => openAuthority("t1", slot, new Kek(randomBytes(32)))).toThrow(/wrong KEK/);
  });

  it("hides the key from JSON, inspect and string conversion", () => {
    const raw = randomBytes(32);
    const kek = new Kek(raw);
    for (const shown of [JSON.stringify({ kek }), inspect(kek), String(kek), inspect({ nested: { kek } })]) {
      expect(shown).toContain("redacted");
      expect(shown).not.toContain(raw.toString("hex"));
      expect(shown).not.toContain(raw.toString("base64"));
    }
  });

  it("parses WEFT_KEK as hex or base64 and names WEFT_KEK when it is bad", () => {
    const raw = randomBytes(32);
    const probe = (k: Kek) => k.open(new Kek(raw).seal(Buffer.from("x"), "c"), "c").toString();
    expect(probe(parseKek(raw.toString("hex")))).toBe("x");
    expect(probe(parseKek(raw.toString("base64")))).toBe("x");
    expect(probe(loadKek({ env: { WEFT_KEK: raw.toString("base64url") } }).kek)).toBe("x");
    for (const bad of ["short", randomBytes(16).toString("base64"), "zz".repeat(32)]) {
      expect(() => loadKek({ env: { WEFT_KEK: bad } })).toThrow(/^WEFT_KEK must be 32 bytes/);
    }
  });

  it("creates a key file with mode 0600 once and reuses it", () => {
    const keyFile = join(tmp.dir, "data", "kek");
    const first = loadKek({ env: {}, keyFile });
    expect(first.source).toBe("file-created");
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const content = readFileSync(keyFile, "utf8");
    const second = loadKek({ env: {}, keyFile });
    expect(second.source).toBe("file");
    expect(readFileSync(keyFile, "utf8")).toBe(content);
    const sealed = first.kek.seal(Buffer.from("ca key"), "ctx");
    expect(second.kek.open(sealed, "ctx").toString()).toBe("ca key");
  });

  it("prefers WEFT_KEK over the key file and refuses a world-readable key file", () => {
    const keyFile = join(tmp.dir, "loose", "kek");
    loadKek({ env: {}, keyFile });
    expect(loadKek({ env: { WEFT_KEK: "ab".repeat(32) }, keyFile }).source).toBe("env");
    chmodSync(keyFile, 0o644);
    expect(() => loadKek({ env: {}, keyFile })).toThrow(/mode 644.*chmod 600/);
  });
});
