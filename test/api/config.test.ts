import { availableParallelism } from "node:os";
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { ConfigError, configFromEnv } from "../../api/src/config.ts";

describe("configuration from the environment", () => {
  it("has defaults for everything", () => {
    const config = configFromEnv({});
    expect(config).toMatchObject({ port: 8080, host: "127.0.0.1", databaseUrl: undefined, operatorToken: undefined, logLevel: "info" });
    expect(config.dataDir).toMatch(/\.weft\/data$/);
  });

  it.each([
    ["PORT", "abc"],
    ["PORT", "65536"],
    ["PORT", "-1"],
    ["PORT", "80.5"],
    ["DATABASE_URL", "not a url"],
    ["DATABASE_URL", "mysql://db/weft"],
    ["LOG_LEVEL", "loud"],
    ["WEFT_OPERATOR_TOKEN", "too-short"],
    ["HOST", ""],
    ["WEFT_SERVICE_CIDR", "198.19.0.0"],
    ["WEFT_SERVICE_CIDR", "198.19.0.1/16"],
    ["WEFT_SERVICE_CIDR", "300.19.0.0/16"],
    ["WEFT_SERVICE_CIDR", "198.19.0.0/31"],
    ["WEFT_MAP_CAPACITY_POLICY", "many"],
    ["WEFT_MAP_CAPACITY_IPCACHE", "4294967296"],
    ["WEFT_DATAPATH_HISTORY", "0"],
    ["WEFT_FEDERATION_ENDPOINTS", "https://partner.example"],
    ["WEFT_FEDERATION_ENDPOINTS", "partner.example/bundle"],
    ["WEFT_FEDERATION_ENDPOINTS", "user@partner.example"],
    ["WEFT_FEDERATION_ENDPOINTS", "partner.example:99999"],
    ["WEFT_FEDERATION_ENDPOINTS", "a.example,,b.example"],
    ["WEFT_FLOW_RETENTION", "24"],
    ["WEFT_FLOW_RETENTION", "1.5h"],
    ["WEFT_FLOW_RETENTION", "30s"],
    ["WEFT_FLOW_RETENTION", "366d"],
    ["WEFT_FLOW_RETENTION", "1w"],
    ["WEFT_FLOW_STREAMS_PER_TENANT", "0"],
    ["WEFT_AUDIT_RETENTION", "forever"],
    ["WEFT_CHANGE_LOG_RETENTION", "30s"],
    ["WEFT_DB_POOL_MAX", "0"],
    ["WEFT_DB_POOL_MAX", "ten"],
    ["WEFT_DATABASE_DIRECT_URL", "postgres://weft@127.0.0.1/weft"],
    ["WEFT_LISTEN_BACKLOG", "0"],
    ["WEFT_LISTEN_BACKLOG", "lots"],
    ["WEFT_TLS", "on"],
    ["WEFT_TLS_CERT", "/etc/weft/tls.pem"],
    ["WEFT_TLS_SAN", "dns:weft.example"],
    ["WEFT_TLS_CERT_TTL", "3600"],
    ["WEFT_HTTP2", "yes"],
    ["WEFT_ALLOW_PLAINTEXT", "true"],
  ])("refuses %s=%j with a ConfigError naming it", (name, value) => {
    let caught: unknown;
    try {
      configFromEnv({ [name]: value });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as Error).message).toMatch(new RegExp(`^${name} `));
  });

  it("serves plain HTTP on loopback only, unless WEFT_ALLOW_PLAINTEXT=1 or TLS is on", () => {
    for (const host of ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"]) {
      expect(configFromEnv({ HOST: host }).tls, host).toBeUndefined();
    }
    for (const host of ["0.0.0.0", "::", "198.18.0.1", "10.0.0.1", "weft.example", "::ffff:127.0.0.1", "128.0.0.1"]) {
      expect(() => configFromEnv({ HOST: host }), host).toThrow(
        `HOST ${host} is not a loopback address and TLS is off: set WEFT_TLS=self (or WEFT_TLS_CERT and WEFT_TLS_KEY), or WEFT_ALLOW_PLAINTEXT=1 to serve plain HTTP there`,
      );
      expect(configFromEnv({ HOST: host, WEFT_ALLOW_PLAINTEXT: "1" }), host).toMatchObject({ host, allowPlaintext: true, tls: undefined });
      expect(configFromEnv({ HOST: host, WEFT_TLS: "self" }).tls?.source, host).toBe("self");
    }
  });

  it("reads TLS: PEM files, or a self-issued certificate whose names default to loopback and HOST", () => {
    expect(configFromEnv({ WEFT_TLS_CERT: "/c.pem", WEFT_TLS_KEY: "/k.pem", WEFT_HTTP2: "1" })).toMatchObject({
      tls: { source: "files", certFile: "/c.pem", keyFile: "/k.pem" },
      http2: true,
    });
    const names = (env: Record<string, string>) => {
      const tls = configFromEnv({ WEFT_TLS: "self", ...env }).tls;
      return tls?.source === "self" ? tls.sans.map((s) => `${s.type}:${s.value}`) : tls;
    };
    expect(names({})).toEqual(["dns:localhost", "ip:127.0.0.1", "ip:::1"]);
    expect(names({ HOST: "198.18.0.1" })).toEqual(["dns:localhost", "ip:127.0.0.1", "ip:::1", "ip:198.18.0.1"]);
    expect(names({ HOST: "Weft.Example" })).toEqual(["dns:localhost", "ip:127.0.0.1", "ip:::1", "dns:weft.example"]);
    // A wildcard address names no host: the operator says which names clients dial.
    expect(names({ HOST: "0.0.0.0" })).toEqual(["dns:localhost", "ip:127.0.0.1", "ip:::1"]);
    expect(names({ WEFT_TLS_SAN: "dns:weft.example, ip:198.18.0.1,DNS:*.mesh.example,ip:2001:db8::1" })).toEqual([
      "dns:weft.example",
      "ip:198.18.0.1",
      "dns:*.mesh.example",
      "ip:2001:db8::1",
    ]);
    expect(configFromEnv({ WEFT_TLS: "self" }).tls).toMatchObject({ certTtlSeconds: 7 * 24 * 3600 });
    expect(configFromEnv({ WEFT_TLS: "self", WEFT_TLS_CERT_TTL: "10" }).tls).toMatchObject({ certTtlSeconds: 10 });
    for (const [env, message] of [
      [{ WEFT_TLS: "self", WEFT_TLS_SAN: "weft.example" }, /^WEFT_TLS_SAN .*"weft.example" is not dns:NAME/],
      [{ WEFT_TLS: "self", WEFT_TLS_SAN: "dns:Weft.Example" }, /^WEFT_TLS_SAN /],
      [{ WEFT_TLS: "self", WEFT_TLS_SAN: "ip:198.18.0.300" }, /^WEFT_TLS_SAN /],
      [{ WEFT_TLS: "self", WEFT_TLS_SAN: "dns:a..b" }, /^WEFT_TLS_SAN /],
      [{ WEFT_TLS: "self", WEFT_TLS_CERT_TTL: "9" }, /^WEFT_TLS_CERT_TTL must be an integer from 10/],
      [{ WEFT_TLS: "self", WEFT_TLS_CERT: "/c.pem", WEFT_TLS_KEY: "/k.pem" }, /^WEFT_TLS=self and WEFT_TLS_CERT\/WEFT_TLS_KEY exclude each other/],
      [{ WEFT_TLS_CERT: "/c.pem" }, /^WEFT_TLS_CERT and WEFT_TLS_KEY go together/],
      [{ WEFT_TLS_KEY: "/k.pem" }, /^WEFT_TLS_CERT and WEFT_TLS_KEY go together/],
      [{ WEFT_HTTP2: "1" }, /^WEFT_HTTP2=1 needs TLS/],
    ] as const) {
      expect(() => configFromEnv(env), JSON.stringify(env)).toThrow(message);
    }
  });

  it("takes good values", () => {
    const config = configFromEnv({
      PORT: "0",
      DATABASE_URL: "postgresql://u@h:5432/db",
      LOG_LEVEL: "silent",
      WEFT_OPERATOR_TOKEN: "weft_op_" + "x".repeat(24),
    });
    expect(config).toMatchObject({ port: 0, databaseUrl: "postgresql://u@h:5432/db", logLevel: "silent" });
  });

  it("reads the federation endpoint allow-list: none by default, host[:port] entries as host:port", () => {
    expect(configFromEnv({}).federationEndpoints).toEqual([]);
    expect(configFromEnv({ WEFT_FEDERATION_ENDPOINTS: "Partner.Example, 127.0.0.1:8443,[::1]:9443" }).federationEndpoints).toEqual([
      "partner.example:443",
      "127.0.0.1:8443",
      "[::1]:9443",
    ]);
  });

  it("reads the service range, map capacities and datapath history, with defaults", () => {
    expect(configFromEnv({})).toMatchObject({ serviceCidr: "198.19.0.0/16", mapCapacity: {}, datapathHistory: 64 });
    const config = configFromEnv({
      WEFT_SERVICE_CIDR: "10.96.0.0/12",
      WEFT_POD_CIDR: "10.244.0.0/16",
      WEFT_MAP_CAPACITY_POLICY: "1000",
      WEFT_DATAPATH_HISTORY: "8",
    });
    expect(config).toMatchObject({ serviceCidr: "10.96.0.0/12", podCidr: "10.244.0.0/16", mapCapacity: { policy: 1000 }, datapathHistory: 8 });
  });

  it("reads the flow retention as a duration (default 24 h) and the follow streams per tenant (default 8)", () => {
    expect(configFromEnv({})).toMatchObject({ flowRetentionMs: 86_400_000, flowStreamsPerTenant: 8 });
    expect(configFromEnv({ WEFT_FLOW_RETENTION: "90m" }).flowRetentionMs).toBe(5_400_000);
    expect(configFromEnv({ WEFT_FLOW_RETENTION: "7d", WEFT_FLOW_STREAMS_PER_TENANT: "2" })).toMatchObject({ flowRetentionMs: 604_800_000, flowStreamsPerTenant: 2 });
    expect(configFromEnv({ WEFT_FLOW_RETENTION: "3600s" }).flowRetentionMs).toBe(3_600_000);
  });

  it("reads the database's pool size and direct URL, and the logs' retention (defaults 7 d and 365 d)", () => {
    expect(configFromEnv({})).toMatchObject({ dbPoolMax: undefined, databaseDirectUrl: undefined, changeLogRetentionMs: 7 * 86_400_000, auditRetentionMs: 365 * 86_400_000 });
    const pooled = { DATABASE_URL: "postgres://weft@pgbouncer:6432/weft", WEFT_DATABASE_DIRECT_URL: "postgres://weft@db:5432/weft", WEFT_DB_POOL_MAX: "25" };
    expect(configFromEnv(pooled)).toMatchObject({ databaseUrl: pooled.DATABASE_URL, databaseDirectUrl: pooled.WEFT_DATABASE_DIRECT_URL, dbPoolMax: 25 });
    expect(() => configFromEnv({ ...pooled, WEFT_DATABASE_DIRECT_URL: "mysql://db/weft" })).toThrow(/WEFT_DATABASE_DIRECT_URL must use the postgres:\/\/ scheme/);
    expect(configFromEnv({ WEFT_AUDIT_RETENTION: "90d", WEFT_CHANGE_LOG_RETENTION: "36h" })).toMatchObject({ auditRetentionMs: 90 * 86_400_000, changeLogRetentionMs: 36 * 3_600_000 });
  });

  it("reads the pod range and each node's block, and refuses one that overlaps the service range", () => {
    expect(configFromEnv({})).toMatchObject({ podCidr: "10.0.0.0/8", podCidrNodePrefix: 24 });
    expect(configFromEnv({ WEFT_POD_CIDR: "198.18.0.0/16", WEFT_POD_CIDR_NODE_PREFIX: "26" })).toMatchObject({ podCidr: "198.18.0.0/16", podCidrNodePrefix: 26 });
    expect(() => configFromEnv({ WEFT_SERVICE_CIDR: "10.96.0.0/12" })).toThrow(/WEFT_POD_CIDR 10.0.0.0\/8 overlaps WEFT_SERVICE_CIDR/);
    expect(() => configFromEnv({ WEFT_POD_CIDR: "198.18.0.0/16", WEFT_POD_CIDR_NODE_PREFIX: "8" })).toThrow(/WEFT_POD_CIDR_NODE_PREFIX/);
    expect(() => configFromEnv({ WEFT_POD_CIDR: "10.0.0.0/8", WEFT_POD_CIDR_NODE_PREFIX: "31" })).toThrow(/WEFT_POD_CIDR_NODE_PREFIX/);
    expect(() => configFromEnv({ WEFT_TOKEN_MAX_TTL: "59" })).toThrow(/WEFT_TOKEN_MAX_TTL/);
    expect(() => configFromEnv({ WEFT_TOKEN_MINT_LIMIT: "0" })).toThrow(/WEFT_TOKEN_MINT_LIMIT/);
    expect(() => configFromEnv({ WEFT_SIGNING_WORKERS: "-1" })).toThrow(/WEFT_SIGNING_WORKERS/);
    expect(() => configFromEnv({ WEFT_SIGNING_WORKERS: "two" })).toThrow(/WEFT_SIGNING_WORKERS/);
  });

  it("WEFT_SIGNING_WORKERS: 0 signs in-thread; unset, one worker per core beside the main thread's", () => {
    expect(configFromEnv({ WEFT_SIGNING_WORKERS: "0" }).signingWorkers).toBe(0);
    expect(configFromEnv({ WEFT_SIGNING_WORKERS: "3" }).signingWorkers).toBe(3);
    expect(configFromEnv({}).signingWorkers).toBe(Math.max(0, Math.min(8, availableParallelism() - 1)));
  });

  it("stops the server with exit code 2 and one line naming the variable", () => {
    const run = spawnSync(process.execPath, ["--import", "tsx", "api/src/server.ts"], {
      env: { ...process.env, PORT: "abc", DATABASE_URL: "" },
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(run.status).toBe(2);
    const lines = run.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^weft: configuration error: PORT must be/);
    expect(run.stdout).toBe("");
  });
});
