// CA rotation: the pure scheduler and mechanics, then the whole flow with
// real certificates checked by openssl at moved clock times (no sleeping).
import { afterAll, describe, expect, it } from "vitest";
import { X509Certificate } from "node:crypto";
import { CaStateError } from "../../api/src/ca/errors.ts";
import {
  activate,
  activationThreshold,
  dueAction,
  emptyState,
  noteIssued,
  preparationThreshold,
  prepare,
  prune,
  type AuthorityState,
} from "../../api/src/ca/rotation.ts";
import { CALLER, HOUR, TestClock, makeCsr, newService, opensslStatus, tempDir } from "./helpers.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const T0 = Date.UTC(2030, 0, 1);
const at = (h: number) => new Date(T0 + h * HOUR);
const slot = (id: string, fromH: number, lifeH = 24) => ({ id, notBefore: at(fromH), notAfter: at(fromH + lifeH), material: id });

describe("thresholds and scheduler (pure)", () => {
  it("prepares at half life and activates at a sixth left", () => {
    expect(preparationThreshold(slot("a", 0))).toEqual(at(12));
    expect(activationThreshold(slot("a", 0))).toEqual(at(20));
  });

  it("walks bootstrap -> prepare -> activate -> prune as time passes", () => {
    let s: AuthorityState<string> = emptyState();
    expect(dueAction(s, at(0))).toEqual({ kind: "bootstrap" });
    s = activate(prepare(s, slot("a", 0)));
    expect(dueAction(s, at(11.9))).toBeNull();
    expect(dueAction(s, at(12))).toEqual({ kind: "prepare" });
    s = prepare(s, slot("b", 12));
    expect(dueAction(s, at(19.9))).toBeNull();
    expect(dueAction(s, at(20))).toEqual({ kind: "activate", slotId: "b" });
    s = noteIssued(activate(s), "a", at(21));
    expect(s.slots.map((x) => [x.id, x.status])).toEqual([["a", "old"], ["b", "active"]]);
    expect(dueAction(s, at(20.5))).toBeNull();
    expect(dueAction(s, at(21))).toEqual({ kind: "prune", slotIds: ["a"] });
  });

  it("catches up after downtime: an expired signer is replaced at once", () => {
    let s: AuthorityState<string> = activate(prepare(emptyState(), slot("a", 0)));
    expect(dueAction(s, at(30))).toEqual({ kind: "prepare" });
    s = prepare(s, slot("b", 30));
    expect(dueAction(s, at(30))).toEqual({ kind: "activate", slotId: "b" });
  });

  it("bumps the sequence only when the trusted key set changes", () => {
    const s1 = activate(prepare(emptyState<string>(), slot("a", 0)));
    const s2 = prepare(s1, slot("b", 12));
    const s3 = activate(s2);
    const s4 = prune(s3, at(25));
    expect([s1.sequence, s2.sequence, s3.sequence, s4.sequence]).toEqual([1, 2, 2, 3]);
    expect(prune(s4, at(26))).toBe(s4);
  });

  it("refuses a second prepare and an activate with nothing prepared", () => {
    const s = prepare(emptyState<string>(), slot("a", 0));
    expect(() => prepare(s, slot("b", 0))).toThrow(CaStateError);
    expect(() => activate(activate(s))).toThrow(/no authority is prepared/);
  });

  it("keeps an old slot while anything it signed is valid", () => {
    let s = activate(prepare(emptyState<string>(), slot("a", 0)));
    s = noteIssued(noteIssued(s, "a", at(5)), "a", at(3)); // max stays 5
    s = activate(prepare(s, slot("b", 1)));
    expect(prune(s, at(4.99)).slots.map((x) => x.id)).toEqual(["a", "b"]);
    expect(prune(s, at(5)).slots.map((x) => x.id)).toEqual(["b"]);
  });
});

describe("rotation with real certificates", () => {
  it("prepare adds a trusted CA that does not sign; activate switches; old SVIDs verify until they expire", async () => {
    const clock = new TestClock(Date.UTC(2030, 0, 1, 12));
    const { ca } = newService({ clock });
    const ID = "spiffe://acme.test/ns/prod/sa/web";
    const issue = async () =>
      ca.issueX509Svid({ tenantId: "t1", identityName: "web", spiffeId: ID, csrPem: makeCsr(tmp.dir, { uri: ID }).csrPem, caller: CALLER });
    const issuerOf = (pem: string) => new X509Certificate(pem).issuer;
    const verifyAt = (bundlePem: string, leafPem: string, ms: number) =>
      opensslStatus([
        "verify", "-x509_strict", "-attime", String(Math.floor(ms / 1000)),
        "-CAfile", tmp.file(`b-${ms}.pem`, bundlePem), tmp.file(`l-${ms}.pem`, leafPem),
      ]).ok;

    await ca.ensure("t1", "acme.test", CALLER);
    const first = await issue();
    const b1 = (await ca.bundle("t1"))!;

    await ca.prepare("t1", "acme.test", CALLER);
    const b2 = (await ca.bundle("t1"))!;
    expect(b2.json.keys.filter((k) => k.use === "x509-svid")).toHaveLength(2);
    expect(b2.json.keys.filter((k) => k.use === "jwt-svid")).toHaveLength(2);
    expect(b2.json.spiffe_sequence).toBeGreaterThan(b1.json.spiffe_sequence);
    const duringPrepare = await issue();
    expect(issuerOf(duringPrepare.certificate)).toBe(issuerOf(first.certificate));

    clock.advance(HOUR / 2);
    await ca.activate("t1", CALLER);
    const afterActivate = await issue();
    expect(issuerOf(afterActivate.certificate)).not.toBe(issuerOf(first.certificate));
    const b3 = (await ca.bundle("t1"))!;
    expect(b3.json.spiffe_sequence).toBe(b2.json.spiffe_sequence);
    expect(verifyAt(b3.pem, duringPrepare.certificate, clock.t)).toBe(true);
    expect(verifyAt(b3.pem, afterActivate.certificate, clock.t)).toBe(true);

    // The old CA's last SVID (duringPrepare) expires an hour after it was issued.
    const lastOld = duringPrepare.expiresAt.getTime();
    clock.t = lastOld - 1000;
    expect((await ca.runSchedule("t1", "acme.test", CALLER))).toEqual([]);
    const b4 = (await ca.bundle("t1"))!;
    expect(b4.json.keys.filter((k) => k.use === "x509-svid")).toHaveLength(2);
    expect(verifyAt(b4.pem, duringPrepare.certificate, clock.t)).toBe(true);

    clock.t = lastOld;
    expect((await ca.runSchedule("t1", "acme.test", CALLER)).map((a) => a.kind)).toEqual(["prune"]);
    const b5 = (await ca.bundle("t1"))!;
    expect(b5.json.keys.filter((k) => k.use === "x509-svid")).toHaveLength(1);
    expect(b5.json.spiffe_sequence).toBeGreaterThan(b4.json.spiffe_sequence);
    expect(verifyAt(b5.pem, afterActivate.certificate, clock.t)).toBe(true);
    expect(verifyAt(b5.pem, first.certificate, clock.t - 2 * HOUR)).toBe(false);
  });

  it("the automatic schedule rotates a 24 h CA on SPIRE's thresholds", async () => {
    const clock = new TestClock(Date.UTC(2030, 0, 1));
    const { ca } = newService({ clock });
    expect(await ca.runSchedule("t1", "acme.test", CALLER)).toEqual([{ kind: "bootstrap" }]);
    clock.advance(11 * HOUR);
    expect(await ca.runSchedule("t1", "acme.test", CALLER)).toEqual([]);
    clock.advance(1 * HOUR);
    expect((await ca.runSchedule("t1", "acme.test", CALLER)).map((a) => a.kind)).toEqual(["prepare"]);
    clock.advance(8 * HOUR);
    // Nothing was issued by the old CA, so it is dropped in the same run.
    expect((await ca.runSchedule("t1", "acme.test", CALLER)).map((a) => a.kind)).toEqual(["activate", "prune"]);
    expect((await ca.bundle("t1"))!.json.keys).toHaveLength(2);
  });
});
