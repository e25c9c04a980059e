// Configuration and background machinery of the CA: the KEK's sources, and
// the rotation scheduler driving the drizzle store with a moved clock.
import { randomBytes } from "node:crypto";
import { statSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { Kek } from "../../api/src/ca/kek.ts";
import { CaService, systemCaller } from "../../api/src/ca/service.ts";
import { ConfigError, configFromEnv } from "../../api/src/config.ts";
import { CaRotationScheduler } from "../../api/src/ca/rotator.ts";
import { DrizzleCaStore } from "../../api/src/ca/store.ts";
import { kekFileFor, resolveKek } from "../../api/src/ca/kek-source.ts";
import { tempDir } from "../ca/helpers.ts";
import { BACKENDS, backendDatabase, skipBackend, startApi, tenantWithToken } from "../support/api.ts";

const HOUR = 3_600_000;
const ROTATION = systemCaller("system:ca-rotation");

/** Polls until `ok` holds (at most 5 s): for what another replica learns through NOTIFY. */
async function eventually<T>(get: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
  for (let i = 0; ; i++) {
    const v = await get();
    if (ok(v) || i >= 100) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("CA configuration", () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it("reads WEFT_KEK as hex or base64 and names it when it is bad, without echoing it", () => {
    const key = randomBytes(32);
    expect(configFromEnv({ WEFT_KEK: key.toString("hex") }).kek).toBeInstanceOf(Kek);
    expect(configFromEnv({ WEFT_KEK: key.toString("base64") }).kek).toBeInstanceOf(Kek);
    expect(configFromEnv({}).kek).toBeUndefined();
    const bad = () => configFromEnv({ WEFT_KEK: "not-a-key-s3cret" });
    expect(bad).toThrow(ConfigError);
    expect(bad).toThrow(/WEFT_KEK/);
    expect(bad).not.toThrow(/s3cret/);
  });

  it("reads WEFT_CA_ROTATION, auto unless told off", () => {
    expect(configFromEnv({}).caRotation).toBe("auto");
    expect(configFromEnv({ WEFT_CA_ROTATION: "off" }).caRotation).toBe("off");
    expect(() => configFromEnv({ WEFT_CA_ROTATION: "sometimes" })).toThrow(/WEFT_CA_ROTATION/);
  });

  it("without WEFT_KEK, generates a 0600 key file beside the data directory and reuses it", () => {
    const dataDir = join(tmp.dir, "weft", "data");
    const first = resolveKek({ kek: undefined, dataDir, databaseUrl: undefined });
    expect(kekFileFor(dataDir)).toBe(join(dirname(dataDir), "kek"));
    expect(statSync(kekFileFor(dataDir)).mode & 0o777).toBe(0o600);
    expect(first.note).toMatch(/generated KEK key file/);
    const again = resolveKek({ kek: undefined, dataDir, databaseUrl: undefined });
    expect(again.kek.open(first.kek.seal(Buffer.from("x"), "ctx"), "ctx").toString()).toBe("x");
    // On shared Postgres every replica needs the same key: the log says so.
    expect(resolveKek({ kek: undefined, dataDir, databaseUrl: "postgres://x/y" })).toMatchObject({ level: "warn", note: expect.stringMatching(/WEFT_KEK/) });
  });

  it("prefers WEFT_KEK, and uses a throwaway key with no data directory", () => {
    const kek = new Kek(randomBytes(32));
    expect(resolveKek({ kek, dataDir: "/nonexistent/data", databaseUrl: undefined }).kek).toBe(kek);
    expect(resolveKek({ kek: undefined, dataDir: undefined, databaseUrl: undefined }).note).toMatch(/throwaway/);
  });
});

describe.each(BACKENDS)("CA rotation schedule on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    beforeAll(async () => {
      app = await startApi(backend);
    });
    afterAll(async () => app?.close());

    it("prepares at half life and activates at a sixth left, through the stored state", async () => {
      const t = await tenantWithToken(app, ["admin"]);
      const tenant = (await app.weft.directory.byName(t.tenant))!;
      const bundle = async () => (await app.inject({ url: `/v1/tenants/${t.tenant}/bundle` })).json() as { spiffe_sequence: number; keys: { use: string }[] };
      const before = await bundle();
      let now = Date.now() + 13 * HOUR;
      // A second CaService over the same tables, with a clock the test moves; same KEK not needed: nothing is opened.
      const ca = new CaService({ store: new DrizzleCaStore(app.weft.db, app.weft.feed), kek: new Kek(randomBytes(32)), clock: () => new Date(now) });
      const scheduler = new CaRotationScheduler(app.weft.db, ca, app.log);
      // A pass over every tenant; the Postgres database is shared with other
      // suites, whose tenants must not rotate under them: there, this one only.
      if (backend === "pglite") await scheduler.runOnce();
      else await ca.runSchedule(String(tenant.id), tenant.trustDomain, ROTATION);
      // The app's CA is another replica here: it learns of the change through NOTIFY.
      const prepared = await eventually(bundle, (b) => b.spiffe_sequence > before.spiffe_sequence);
      expect(prepared.keys.filter((k) => k.use === "x509-svid")).toHaveLength(2);
      expect(await ca.runSchedule(String(tenant.id), tenant.trustDomain, ROTATION)).toEqual([]);
      now = Date.now() + 21 * HOUR;
      // The old CA signed nothing, so it is pruned as soon as it is no longer the signer.
      expect((await ca.runSchedule(String(tenant.id), tenant.trustDomain, ROTATION)).map((a) => a.kind)).toEqual(["activate", "prune"]);
      const rotated = await eventually(bundle, (b) => b.spiffe_sequence > prepared.spiffe_sequence);
      expect(rotated.keys.filter((k) => k.use === "x509-svid")).toHaveLength(1);
      const audit = (await app.inject({ url: `/v1/tenants/${t.tenant}/audit?limit=1000`, headers: { authorization: `Bearer ${t.token}` } })).json()
        .items as { action: string; actor: string }[];
      // The schedule is audited as itself, not as whoever happened to call the API last.
      expect(audit.filter((e) => ["ca.prepare", "ca.activate", "ca.prune"].includes(e.action)).map((e) => e.actor)).toEqual(
        Array(3).fill("system:ca-rotation"),
      );
      await scheduler.stop();
    });

    it("runs on a timer when WEFT_CA_ROTATION=auto and stops with the app", async () => {
      // The app's scheduler asks once a minute; on the app's own instance the
      // interval is cut to 25 ms, so the test sees its timer fire and re-arm.
      const startScheduler = CaRotationScheduler.prototype.start;
      const start = vi.spyOn(CaRotationScheduler.prototype, "start").mockImplementation(function (this: CaRotationScheduler) {
        (this as unknown as { intervalMs: number }).intervalMs = 25;
        startScheduler.call(this);
      });
      const runOnce = vi.spyOn(CaRotationScheduler.prototype, "runOnce");
      try {
        const off = await startApi(backend, { caRotation: "off" });
        await off.close();
        expect(start).not.toHaveBeenCalled();

        const auto = await startApi(backend, { caRotation: "auto" });
        expect(start).toHaveBeenCalledTimes(1);
        const t = await tenantWithToken(auto, ["admin"]);
        const tenant = (await auto.weft.directory.byName(t.tenant))!;
        // Passes visit every tenant; on the shared Postgres database other
        // suites' tenants are left alone, as in the test above.
        const runSchedule = auto.weft.ca.runSchedule.bind(auto.weft.ca);
        const visits: { trustDomain: string; caller: unknown; actions: unknown }[] = [];
        vi.spyOn(auto.weft.ca, "runSchedule").mockImplementation(async (tenantId, trustDomain, caller) => {
          if (tenantId !== String(tenant.id)) return [];
          const actions = await runSchedule(tenantId, trustDomain, caller);
          visits.push({ trustDomain, caller, actions });
          return actions;
        });
        // Two passes over this tenant: the timer fired, and fired again after the pass.
        await vi.waitFor(() => expect(visits.length).toBeGreaterThanOrEqual(2), { timeout: 20_000, interval: 25 });
        // A CA minted a moment ago has nothing due; each pass asked as the schedule itself.
        expect(visits.slice(0, 2)).toEqual(Array(2).fill({ trustDomain: tenant.trustDomain, caller: ROTATION, actions: [] }));

        await auto.close(); // must not hang on the timer or a pass in flight
        // close waited for the pass in flight, and no pass starts after it.
        const passes = runOnce.mock.calls.length;
        expect(runOnce.mock.settledResults.map((r) => r.type)).toEqual(Array(passes).fill("fulfilled"));
        await new Promise((r) => setTimeout(r, 250)); // ten intervals
        expect(runOnce).toHaveBeenCalledTimes(passes);
      } finally {
        start.mockRestore();
        runOnce.mockRestore();
      }
    });
  });
});
