import { availableParallelism } from "node:os";
import { tracesUrl } from "@weft/otlp";
import { resolve } from "node:path";
import { parseKek, type Kek } from "./ca/kek.ts";
import { DATAPATH_MAPS, type DatapathMap } from "./compiler/types.ts";
import { allowedEndpointEntry, MIN_REFRESH_MS } from "./mesh/bundle-endpoints.ts";
import { DEFAULT_POD_CIDR, DEFAULT_POD_CIDR_NODE_PREFIX, DEFAULT_SERVICE_CIDR } from "./mesh/addresses.ts";
import { defaultSans, isLoopbackHost, parseSans, type San } from "./tls/sans.ts";

/**
 * Where the API's serving certificate comes from: PEM files the operator
 * keeps (WEFT_TLS_CERT, WEFT_TLS_KEY; re-read when they change), or issued
 * by Weft itself from its operator CA (WEFT_TLS=self) and renewed in place.
 */
export type TlsConfig =
  | { source: "files"; certFile: string; keyFile: string }
  | { source: "self"; sans: San[]; certTtlSeconds: number };

/** WEFT_TLS_CERT_TTL's default: a week, renewed with a third of it left. */
export const DEFAULT_TLS_CERT_TTL_SECONDS = 7 * 24 * 3600;

export interface Config {
  port: number;
  host: string;
  /**
   * WEFT_LISTEN_BACKLOG: connections the kernel queues before the server
   * accepts them; the kernel caps it at net.core.somaxconn. Default 8192:
   * 10,000 agents reconnecting within 2 s overflowed Node's 511.
   */
  listenBacklog?: number;
  /** Unset: the embedded PGlite database stored in dataDir. May point at PgBouncer in transaction mode. */
  databaseUrl: string | undefined;
  /** WEFT_DATABASE_DIRECT_URL: Postgres itself, not a pooler, for LISTEN and the migration lock; default databaseUrl. */
  databaseDirectUrl?: string | undefined;
  /** WEFT_DB_POOL_MAX: connections this replica's query pool may open (default 10, db/client.ts). */
  dbPoolMax?: number | undefined;
  /** WEFT_DB_POOL_WAIT (seconds): how long a request waits for a pooled connection before a 503 (default 10, db/client.ts). */
  dbPoolWaitMs?: number | undefined;
  /** Where PGlite keeps its files; undefined keeps it in memory (tests). */
  dataDir: string | undefined;
  /** Plain operator token from the environment, if the operator set one. */
  operatorToken: string | undefined;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  /** Suffix of the default trust domain `<tenant>.<suffix>`. */
  trustDomainSuffix: string;
  /** How often each replica reloads revoked tokens; bounds revocation delay. */
  revocationPollMs: number;
  /** Key-encryption key for CA private keys (WEFT_KEK); where it comes from when unset: ca/kek-source.ts. */
  kek?: Kek | undefined;
  /** WEFT_CA_ROTATION: "auto" runs the CA rotation schedule; unset means "off" (tests). */
  caRotation?: "auto" | "off";
  /** WEFT_SERVICE_CIDR: where service VIPs are allocated when a service names none. Default 198.19.0.0/16. */
  serviceCidr?: string;
  /**
   * WEFT_MAP_CAPACITY_<MAP> (e.g. WEFT_MAP_CAPACITY_POLICY): entries a node's
   * map holds, for admission; unset maps use the ABI's max_entries.
   */
  mapCapacity?: Partial<Record<DatapathMap, number>>;
  /** WEFT_DATAPATH_HISTORY: compiled states kept per node for ?since deltas (default 64). */
  datapathHistory?: number;
  /** WEFT_JSON_MAX_DEPTH: deepest nesting a JSON body may have (default 64). */
  jsonMaxDepth?: number;
  /** WEFT_JSON_MAX_KEYS: object keys a JSON body may have in all (default 10000). */
  jsonMaxKeys?: number;
  /** WEFT_AUTH_FAILURE_LIMIT: failed authentications (401) per client address per window before 429 (default 30; 0: no limit). */
  authFailureLimit?: number;
  /** WEFT_AUTH_FAILURE_WINDOW_SECONDS, in ms here: the window of that limit (default 60 s). */
  authFailureWindowMs?: number;
  /** WEFT_POD_CIDR: workload addresses come from here, one block per node (default 10.0.0.0/8). */
  podCidr?: string;
  /** WEFT_POD_CIDR_NODE_PREFIX: the prefix length of each node's block (default 24). */
  podCidrNodePrefix?: number;
  /** WEFT_TOKEN_MAX_TTL: seconds; no tenant token lives longer, whatever its signature says (default 1 year). */
  tokenMaxTtlSeconds?: number;
  /** WEFT_TOKEN_MINT_LIMIT: tenant tokens one tenant may mint per minute (default 60). */
  tokenMintLimit?: number;
  /**
   * WEFT_NODE_GRACE_SECONDS: a node without a status report for this long is
   * marked unreachable and its backends withdrawn (default 15; 0 or unset in
   * process: never, mesh/liveness.ts).
   */
  nodeGraceSeconds?: number;
  /** WEFT_FEDERATION_ENDPOINTS: host:port entries (lowercase, port explicit) a federation's endpointUrl may name (default none). */
  federationEndpoints?: string[];
  /** In process only (tests): the bundle endpoint fetch timeout (default 5 s) and refresh floor (default 30 s). */
  federationFetchTimeoutMs?: number;
  federationMinRefreshMs?: number;
  /**
   * How often the refresher passes over every endpoint federation
   * (mesh/bundle-refresher.ts): the refresh floor, 30 s, when configured from
   * the environment. Unset in process (tests): it passes only when a test asks.
   */
  federationRefreshMs?: number;
  /**
   * WEFT_FLOW_RETENTION, in ms here: flows, aggregates and batch ids older
   * than this are pruned (default 24 h). Unset in process (tests): nothing
   * prunes unless a test asks (mesh/flows/retention.ts).
   */
  flowRetentionMs?: number;
  /**
   * WEFT_CHANGE_LOG_RETENTION and WEFT_AUDIT_RETENTION, in ms here: change-log
   * and audit rows older than these are pruned (defaults 7 d and 365 d). Unset
   * in process (tests): nothing prunes unless a test asks (db/log-retention.ts).
   */
  changeLogRetentionMs?: number;
  auditRetentionMs?: number;
  /** WEFT_FLOW_STREAMS_PER_TENANT: open ?follow=true streams per tenant (and the operator) per replica (default 8). */
  flowStreamsPerTenant?: number;
  /** In process only (tests): the follow streams' heartbeat interval (default 15 s). */
  flowHeartbeatMs?: number;
  /** HTTPS (tls/serving.ts); undefined: plain HTTP, which needs a loopback HOST or allowPlaintext. */
  tls?: TlsConfig | undefined;
  /** WEFT_HTTP2=1: HTTP/2 over TLS, HTTP/1.1 still offered through ALPN. */
  http2?: boolean;
  /** WEFT_ALLOW_PLAINTEXT=1: plain HTTP on a non-loopback HOST, with a warning. */
  allowPlaintext?: boolean;
  /** In process only (tests): how often WEFT_TLS_CERT/WEFT_TLS_KEY are checked for a change (default 30 s). */
  tlsFileCheckMs?: number;
  /**
   * WEFT_SIGNING_WORKERS: worker threads that verify CSRs and sign X.509-SVIDs
   * (ca/signing-pool.ts); 0 signs on the request's thread. Default from the
   * environment: one per core beside the main thread's (at most 8; 1 on two
   * cores, where bench/svid measured one worker about even with none and two
   * behind); 0 in process.
   */
  signingWorkers?: number;
  /** WEFT_OTLP_ENDPOINT: the OTLP/HTTP receiver of the API's request spans (plugins/tracing.ts); unset: no spans. */
  otlpEndpoint?: string;
}

export const DEFAULT_FLOW_RETENTION = "24h";
/** A week of ?since history for tenants; only a replica cut off from Postgres for longer falls behind (db/log-retention.ts). */
export const DEFAULT_CHANGE_LOG_RETENTION = "7d";
/** A year: deleting audit records by default would surprise more than keeping them. */
export const DEFAULT_AUDIT_RETENTION = "365d";
export const DEFAULT_FLOW_STREAMS_PER_TENANT = 8;

export const DEFAULT_NODE_GRACE_SECONDS = 15;
export const DEFAULT_LISTEN_BACKLOG = 8192;

/** The main thread keeps a core of its own (HTTP, the database); the rest sign. */
export const defaultSigningWorkers = (): number => Math.max(0, Math.min(8, availableParallelism() - 1));

export class ConfigError extends Error {}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

type Env = Record<string, string | undefined>;

function portFrom(env: Env): number {
  const raw = env.PORT ?? "8080";
  const port = Number(raw);
  if (!/^\d+$/.test(raw) || port < 0 || port > 65535) {
    throw new ConfigError(`PORT must be an integer from 0 to 65535, got "${raw}"`);
  }
  return port;
}

function postgresUrlFrom(env: Env, name: string): string | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`${name} must be a postgres:// URL, got an unparsable value`);
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new ConfigError(`${name} must use the postgres:// scheme, got "${url.protocol}"`);
  }
  return raw;
}

function databaseFrom(env: Env): Pick<Config, "databaseUrl" | "databaseDirectUrl" | "dbPoolMax" | "dbPoolWaitMs"> {
  const databaseUrl = postgresUrlFrom(env, "DATABASE_URL");
  const databaseDirectUrl = postgresUrlFrom(env, "WEFT_DATABASE_DIRECT_URL");
  if (databaseDirectUrl && !databaseUrl) throw new ConfigError("WEFT_DATABASE_DIRECT_URL needs DATABASE_URL: it is the direct way to the same Postgres");
  return {
    databaseUrl,
    databaseDirectUrl,
    dbPoolMax: env.WEFT_DB_POOL_MAX ? boundedIntegerFrom(env, "WEFT_DB_POOL_MAX", 0, 1, 1000) : undefined,
    dbPoolWaitMs: env.WEFT_DB_POOL_WAIT ? boundedIntegerFrom(env, "WEFT_DB_POOL_WAIT", 0, 1, 600) * 1000 : undefined,
  };
}

function logLevelFrom(env: Env): Config["logLevel"] {
  const raw = env.LOG_LEVEL ?? "info";
  if (!(LOG_LEVELS as readonly string[]).includes(raw)) {
    throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got "${raw}"`);
  }
  return raw as Config["logLevel"];
}

function operatorTokenFrom(env: Env): string | undefined {
  const raw = env.WEFT_OPERATOR_TOKEN;
  if (raw === undefined || raw === "") return undefined;
  if (raw.length < 24) {
    throw new ConfigError("WEFT_OPERATOR_TOKEN must be at least 24 characters long");
  }
  // Any such token authenticates (the weft_op_ prefix is usual, not needed), if a Bearer header can carry it.
  if (!/^[A-Za-z0-9._~+/-]+=*$/.test(raw)) {
    throw new ConfigError("WEFT_OPERATOR_TOKEN must consist of letters, digits and . _ ~ + / - (then optional '=' padding)");
  }
  if (raw.startsWith("weft_node_")) {
    throw new ConfigError("WEFT_OPERATOR_TOKEN must not start with weft_node_, the node credentials' prefix");
  }
  return raw;
}

function trustDomainSuffixFrom(env: Env): string {
  const raw = env.WEFT_TRUST_DOMAIN_SUFFIX ?? "weft.local";
  if (!/^[a-z0-9._-]{1,190}$/.test(raw)) {
    throw new ConfigError(
      `WEFT_TRUST_DOMAIN_SUFFIX must be lowercase letters, digits, '.', '-' or '_' (at most 190 bytes), got "${raw}"`,
    );
  }
  return raw;
}

function kekFrom(env: Env): Kek | undefined {
  const raw = env.WEFT_KEK;
  if (raw === undefined || raw === "") return undefined;
  try {
    return parseKek(raw);
  } catch (err) {
    // parseKek's message names WEFT_KEK and never echoes the value.
    throw new ConfigError((err as Error).message);
  }
}

function caRotationFrom(env: Env): "auto" | "off" {
  const raw = env.WEFT_CA_ROTATION ?? "auto";
  if (raw !== "auto" && raw !== "off") throw new ConfigError(`WEFT_CA_ROTATION must be "auto" or "off", got "${raw}"`);
  return raw;
}

const IPV4_PREFIX = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

/** An IPv4 prefix as [first address, length]; a ConfigError naming the variable when it is not one. */
function ipv4PrefixFrom(name: string, raw: string, example: string): [number, number] {
  const m = IPV4_PREFIX.exec(raw);
  const octets = m ? m.slice(1, 5).map(Number) : [];
  const len = m ? Number(m[5]) : -1;
  // At least 4 addresses: the network and broadcast addresses are never handed out.
  if (!m || octets.some((o) => o > 255) || len < 8 || len > 30) {
    throw new ConfigError(`${name} must be an IPv4 prefix from /8 to /30, e.g. ${example}, got "${raw}"`);
  }
  const addr = octets.reduce((a, o) => a * 256 + o, 0);
  if (addr % 2 ** (32 - len) !== 0) throw new ConfigError(`${name} has host bits set: "${raw}"`);
  return [addr, len];
}

function serviceCidrFrom(env: Env): string {
  const raw = env.WEFT_SERVICE_CIDR ?? DEFAULT_SERVICE_CIDR;
  ipv4PrefixFrom("WEFT_SERVICE_CIDR", raw, "198.19.0.0/16");
  return raw;
}

/** The pod CIDR and each node's block in it; neither may overlap the service CIDR (a VIP would shadow a workload). */
function podCidrFrom(env: Env, serviceCidr: string): { podCidr: string; podCidrNodePrefix: number } {
  const raw = env.WEFT_POD_CIDR ?? DEFAULT_POD_CIDR;
  const [addr, len] = ipv4PrefixFrom("WEFT_POD_CIDR", raw, "10.0.0.0/8");
  const rawPrefix = env.WEFT_POD_CIDR_NODE_PREFIX ?? String(DEFAULT_POD_CIDR_NODE_PREFIX);
  const prefix = Number(rawPrefix);
  if (!/^\d{1,2}$/.test(rawPrefix) || prefix < len || prefix > 30) {
    throw new ConfigError(`WEFT_POD_CIDR_NODE_PREFIX must be an integer from ${len} (WEFT_POD_CIDR's length) to 30, got "${rawPrefix}"`);
  }
  const [svc, svcLen] = ipv4PrefixFrom("WEFT_SERVICE_CIDR", serviceCidr, "198.19.0.0/16");
  const shorter = Math.min(len, svcLen);
  if (Math.floor(addr / 2 ** (32 - shorter)) === Math.floor(svc / 2 ** (32 - shorter))) {
    throw new ConfigError(`WEFT_POD_CIDR ${raw} overlaps WEFT_SERVICE_CIDR ${serviceCidr}`);
  }
  return { podCidr: raw, podCidrNodePrefix: prefix };
}

function boundedIntegerFrom(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name] ?? String(fallback);
  if (!/^\d{1,10}$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  }
  return Number(raw);
}

function mapCapacityFrom(env: Env): Partial<Record<DatapathMap, number>> {
  const out: Partial<Record<DatapathMap, number>> = {};
  for (const map of DATAPATH_MAPS) {
    const name = `WEFT_MAP_CAPACITY_${map.toUpperCase()}`;
    const raw = env[name];
    if (raw === undefined || raw === "") continue;
    if (!/^\d{1,10}$/.test(raw) || Number(raw) > 2 ** 32 - 1) {
      throw new ConfigError(`${name} must be an entry count from 0 to 4294967295, got "${raw}"`);
    }
    out[map] = Number(raw);
  }
  return out;
}

function datapathHistoryFrom(env: Env): number {
  const raw = env.WEFT_DATAPATH_HISTORY ?? "64";
  if (!/^\d{1,5}$/.test(raw) || Number(raw) < 1 || Number(raw) > 10_000) {
    throw new ConfigError(`WEFT_DATAPATH_HISTORY must be an integer from 1 to 10000, got "${raw}"`);
  }
  return Number(raw);
}

/** WEFT_JSON_MAX_*, WEFT_AUTH_FAILURE_*: an integer within [min, max], or the default when unset. */
function securityLimitFrom(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d{1,9}$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  }
  return Number(raw);
}

/** WEFT_FEDERATION_ENDPOINTS: comma-separated host[:port] entries, each normalized to host:port (443 when omitted). */
function federationEndpointsFrom(env: Env): string[] {
  const raw = env.WEFT_FEDERATION_ENDPOINTS ?? "";
  if (raw.trim() === "") return [];
  return raw.split(",").map((part) => {
    const entry = allowedEndpointEntry(part.trim());
    if (entry === null) throw new ConfigError(`WEFT_FEDERATION_ENDPOINTS must be comma-separated host[:port] entries, got "${part.trim()}"`);
    return entry;
  });
}

const DURATION_UNITS_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** A duration such as 90m, 24h or 7d, from one minute to 365 days, in ms. */
export function durationMs(name: string, raw: string): number {
  const m = /^(\d{1,6})(s|m|h|d)$/.exec(raw);
  const ms = m ? Number(m[1]) * DURATION_UNITS_MS[m[2] as keyof typeof DURATION_UNITS_MS] : NaN;
  if (!(ms >= 60_000 && ms <= 365 * 86_400_000)) {
    throw new ConfigError(`${name} must be a duration from 1m to 365d written as a number and one of s, m, h, d (e.g. 24h), got "${raw}"`);
  }
  return ms;
}

const flagFrom = (env: Env, name: string): boolean => {
  const raw = env[name] ?? "";
  if (raw !== "" && raw !== "0" && raw !== "1") throw new ConfigError(`${name} must be 1 or 0, got "${raw}"`);
  return raw === "1";
};

function tlsFrom(env: Env, host: string): TlsConfig | undefined {
  const mode = env.WEFT_TLS ?? "";
  const certFile = env.WEFT_TLS_CERT ?? "";
  const keyFile = env.WEFT_TLS_KEY ?? "";
  if (mode !== "" && mode !== "self" && mode !== "off") throw new ConfigError(`WEFT_TLS must be "self" or "off", got "${mode}"`);
  if ((certFile === "") !== (keyFile === "")) throw new ConfigError("WEFT_TLS_CERT and WEFT_TLS_KEY go together: give both PEM files or neither");
  if (certFile !== "") {
    if (mode !== "") throw new ConfigError(`WEFT_TLS=${mode} and WEFT_TLS_CERT/WEFT_TLS_KEY exclude each other: choose one`);
    return { source: "files", certFile: resolve(certFile), keyFile: resolve(keyFile) };
  }
  for (const name of ["WEFT_TLS_SAN", "WEFT_TLS_CERT_TTL"]) {
    if ((env[name] ?? "") !== "" && mode !== "self") throw new ConfigError(`${name} applies only with WEFT_TLS=self`);
  }
  if (mode !== "self") return undefined;
  const sanText = env.WEFT_TLS_SAN ?? "";
  const sans = sanText === "" ? defaultSans(host) : parseSans(sanText);
  if (typeof sans === "string") throw new ConfigError(`WEFT_TLS_SAN must be comma-separated dns:NAME or ip:ADDRESS entries: ${sans}`);
  // At least ten seconds, so that tests can watch a renewal; at most 397 days, the CA/Browser Forum's ceiling.
  const certTtlSeconds = boundedIntegerFrom(env, "WEFT_TLS_CERT_TTL", DEFAULT_TLS_CERT_TTL_SECONDS, 10, 397 * 24 * 3600);
  return { source: "self", sans, certTtlSeconds };
}

/**
 * Bearer tokens and node credentials must not cross a network in the clear:
 * plain HTTP is served on loopback only, unless the operator says otherwise.
 */
function transportFrom(env: Env, host: string): Pick<Config, "tls" | "http2" | "allowPlaintext"> {
  const tls = tlsFrom(env, host);
  const http2 = flagFrom(env, "WEFT_HTTP2");
  const allowPlaintext = flagFrom(env, "WEFT_ALLOW_PLAINTEXT");
  if (http2 && !tls) throw new ConfigError("WEFT_HTTP2=1 needs TLS (WEFT_TLS=self, or WEFT_TLS_CERT and WEFT_TLS_KEY): HTTP/2 is offered through ALPN");
  if (!tls && !allowPlaintext && !isLoopbackHost(host)) {
    throw new ConfigError(
      `HOST ${host} is not a loopback address and TLS is off: set WEFT_TLS=self (or WEFT_TLS_CERT and WEFT_TLS_KEY), or WEFT_ALLOW_PLAINTEXT=1 to serve plain HTTP there`,
    );
  }
  return { tls, http2, allowPlaintext };
}

/** Reads the configuration; a bad value throws a ConfigError naming the variable. */
function otlpEndpointFrom(env: Env): { otlpEndpoint?: string } {
  const raw = env.WEFT_OTLP_ENDPOINT;
  if (!raw) return {};
  try {
    tracesUrl(raw);
  } catch {
    throw new ConfigError(`WEFT_OTLP_ENDPOINT ${JSON.stringify(raw)} is not an http:// or https:// URL`);
  }
  return { otlpEndpoint: raw };
}

export function configFromEnv(env: Env = process.env): Config {
  const host = env.HOST ?? "127.0.0.1";
  if (host === "") throw new ConfigError("HOST must not be empty");
  const serviceCidr = serviceCidrFrom(env);
  return {
    port: portFrom(env),
    host,
    listenBacklog: boundedIntegerFrom(env, "WEFT_LISTEN_BACKLOG", DEFAULT_LISTEN_BACKLOG, 1, 1_000_000),
    ...databaseFrom(env),
    dataDir: resolve(env.WEFT_DATA_DIR || "./.weft/data"),
    operatorToken: operatorTokenFrom(env),
    logLevel: logLevelFrom(env),
    trustDomainSuffix: trustDomainSuffixFrom(env),
    revocationPollMs: 1000,
    kek: kekFrom(env),
    caRotation: caRotationFrom(env),
    serviceCidr,
    ...podCidrFrom(env, serviceCidr),
    mapCapacity: mapCapacityFrom(env),
    datapathHistory: datapathHistoryFrom(env),
    jsonMaxDepth: securityLimitFrom(env, "WEFT_JSON_MAX_DEPTH", 64, 1, 1000),
    jsonMaxKeys: securityLimitFrom(env, "WEFT_JSON_MAX_KEYS", 10_000, 1, 1_000_000),
    authFailureLimit: securityLimitFrom(env, "WEFT_AUTH_FAILURE_LIMIT", 30, 0, 1_000_000),
    authFailureWindowMs: securityLimitFrom(env, "WEFT_AUTH_FAILURE_WINDOW_SECONDS", 60, 1, 86_400) * 1000,
    tokenMaxTtlSeconds: boundedIntegerFrom(env, "WEFT_TOKEN_MAX_TTL", 31_536_000, 60, 31_536_000),
    tokenMintLimit: boundedIntegerFrom(env, "WEFT_TOKEN_MINT_LIMIT", 60, 1, 100_000),
    nodeGraceSeconds: boundedIntegerFrom(env, "WEFT_NODE_GRACE_SECONDS", DEFAULT_NODE_GRACE_SECONDS, 0, 86_400),
    federationEndpoints: federationEndpointsFrom(env),
    federationRefreshMs: MIN_REFRESH_MS,
    flowRetentionMs: durationMs("WEFT_FLOW_RETENTION", env.WEFT_FLOW_RETENTION || DEFAULT_FLOW_RETENTION),
    changeLogRetentionMs: durationMs("WEFT_CHANGE_LOG_RETENTION", env.WEFT_CHANGE_LOG_RETENTION || DEFAULT_CHANGE_LOG_RETENTION),
    auditRetentionMs: durationMs("WEFT_AUDIT_RETENTION", env.WEFT_AUDIT_RETENTION || DEFAULT_AUDIT_RETENTION),
    flowStreamsPerTenant: boundedIntegerFrom(env, "WEFT_FLOW_STREAMS_PER_TENANT", DEFAULT_FLOW_STREAMS_PER_TENANT, 1, 10_000),
    ...transportFrom(env, host),
    signingWorkers: boundedIntegerFrom(env, "WEFT_SIGNING_WORKERS", defaultSigningWorkers(), 0, 64),
    ...otlpEndpointFrom(env),
  };
}

/**
 * For programs that build the app in-process (the OpenAPI generator,
 * benchmarks, tests): loopback, the in-memory database unless a URL is given,
 * no logs, no CA rotation schedule.
 */
export function inProcessConfig(overrides: Partial<Config> & Pick<Config, "operatorToken">): Config {
  return {
    port: 0,
    host: "127.0.0.1",
    databaseUrl: undefined,
    dataDir: undefined,
    logLevel: "silent",
    trustDomainSuffix: "weft.local",
    revocationPollMs: 1000,
    ...overrides,
  };
}
