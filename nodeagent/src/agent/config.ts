// SPDX-License-Identifier: Apache-2.0
/**
 * The agent's command line: flags first, then the environment, then
 * defaults. A bad invocation is a UsageError: main prints its one line and
 * exits 2, so a typo in a unit file is not mistaken for a crash.
 */
import { readFileSync } from "node:fs";
import { isIPv4 } from "node:net";
import { tracesUrl } from "@weft/otlp";
import { FLOW_FLAGS, parseFlowConfig, type FlowConfig } from "../flows/config.ts";
import { DEFAULT_PIN_DIR } from "../loader/index.ts";
import { parsePin } from "./api-trust.ts";

export const DEFAULT_STATE_DIR = "/var/lib/weft";
/** The cgroup v2 root on these machines; socket LB there covers every process. */
export const DEFAULT_CGROUP = "/sys/fs/cgroup/unified";
export const DEFAULT_METRICS_PORT = 9469;
/** Seconds between status reports when nothing else prompts one (the API's node grace is 15 s by default). */
export const DEFAULT_STATUS_INTERVAL = 5;
/** Where the SPIFFE Workload API listens (SPIRE's agent: /run/spire/agent.sock). */
export const DEFAULT_WORKLOAD_API_SOCKET = "/run/weft/agent.sock";

export class UsageError extends Error {}

export interface AgentConfig {
  command: "run" | "cleanup";
  /** Base URL of the API, e.g. http://127.0.0.1:8080: the first of `apis`; required to run. */
  api: string;
  /**
   * Every API base URL given (--api A,B,C), in the order to try them; the
   * agent fails over between them, and between the addresses of a URL whose
   * host name resolves to several (endpoints.ts). Absent (as in-process
   * callers build it): `api` alone.
   */
  apis?: string[];
  /** A PEM file of the CA(s) the API's certificate must chain to (https only); unset: the system's roots. */
  apiCa?: string | undefined;
  /**
   * The SHA-256 of the operator CA's certificate (64 hex digits): the CA is
   * fetched from GET /v1/system/ca at the first start, checked against it,
   * and kept in the state directory (api-trust.ts).
   */
  apiCaSha256?: string | undefined;
  /** Needed only for the first start; later starts reuse the saved credential. */
  joinToken: string | undefined;
  /**
   * Where the join token is (--join-token-file), read only when the node has
   * no registration yet: a token spent and removed (a Secret's key deleted)
   * does not stop later starts. Absent when not given; never with joinToken.
   */
  joinTokenFile?: string;
  name: string;
  zone: string | undefined;
  cgroup: string;
  pinDir: string;
  stateDir: string;
  metricsPort: number;
  /** bpf/README [R10]: deliver packets between this node's workloads without the host's IP forwarding. */
  hostRouting: boolean;
  /**
   * bpf/README (socket LB and host traffic): also rewrite connections made in
   * the host's network namespace to a VIP. Off by default: the socket LB sits
   * on a cgroup holding host processes, and a tenant's VIP must not redirect them.
   */
  lbHostTraffic: boolean;
  /**
   * bpf/README [R12]: the device facing the other nodes, whose ingress gets
   * weft_from_uplink (packets for local workloads skip the host's
   * forwarding). Absent or null (the default, "off"): nothing is attached to it;
   * "auto": the device of the default route in the agent's namespace.
   * Ignored (and any attachment removed) with hostRouting off.
   */
  uplink?: string | null;
  /** A status report at least this often (seconds, 1..60), even when nothing changed: the API's heartbeat. */
  statusInterval: number;
  /**
   * The SPIFFE Workload API's Unix socket (src/workload-api/); null or absent:
   * not served. The command line defaults it to DEFAULT_WORKLOAD_API_SOCKET
   * (`--workload-api-socket off` turns it off).
   */
  workloadApiSocket?: string | null;
  /** Also write each workload's SVID as files under <stateDir>/svids (default off). */
  svidFiles?: boolean;
  /** Flow events (src/flows/); absent: DEFAULT_FLOW_CONFIG. */
  flows?: FlowConfig;
  /**
   * Run the node's mTLS transport (src/transport/, issue #18), driven by the
   * agent (transport-driver.ts). Absent (as in-process callers build it): off.
   */
  transport?: boolean;
  /** The transport's address on the fabric (--transport-address); absent: the uplink device's first IPv4 address. */
  transportAddress?: string;
  /**
   * Run the node's L7 proxy (src/l7/, issue 21). The command line's default
   * is on; absent (as in-process callers build it): off. On without an
   * haproxy binary, the proxy reports off and says why.
   */
  l7?: boolean;
  /** The haproxy binary (--haproxy); absent: `haproxy` on the PATH. */
  haproxy?: string;
  /** HAProxy's threads (--l7-threads); absent: the driver's default (l7/driver.ts proxyThreads). */
  l7Threads?: number;
  /** The OTLP/HTTP receiver of the L7 proxy's spans (src/l7/traces.ts); absent: no spans are made. */
  otlpEndpoint?: string;
}

/** Flag name -> [config key, environment variable, value shown in --help, what it is]. */
const FLAGS = {
  "--api": ["api", "WEFT_API", "URL[,URL...]", "the API's base URL, or several replicas' comma-separated; a host name with several addresses is tried at each (required to run)"],
  "--api-ca": ["apiCa", "WEFT_API_CA", "FILE", "PEM CA certificates that sign an https API's certificate (default: Node's roots and NODE_EXTRA_CA_CERTS)"],
  "--api-ca-sha256": ["apiCaSha256", "WEFT_API_CA_SHA256", "HEX", "pin the API's operator CA by its SHA-256, fetched once from GET /v1/system/ca and kept in the state directory"],
  "--name": ["name", "WEFT_NODE_NAME", "N", "this node's name (required to run)"],
  "--join-token": ["joinToken", "WEFT_JOIN_TOKEN", "T", "one-time join token for the first start; on the command line it shows in ps and npm's banner: prefer the file or the environment"],
  "--join-token-file": ["joinTokenFile", "WEFT_JOIN_TOKEN_FILE", "FILE", "read the join token from FILE (a mounted secret, a 0600 file), only when the node has no registration yet"],
  "--zone": ["zone", "WEFT_ZONE", "Z", "the node's zone (required to register)"],
  "--cgroup": ["cgroup", "WEFT_CGROUP", "PATH", `cgroup v2 directory of the socket load balancer (default ${DEFAULT_CGROUP})`],
  "--pin-dir": ["pinDir", "WEFT_PIN_DIR", "DIR", `bpffs directory of the pinned maps and links (default ${DEFAULT_PIN_DIR})`],
  "--state-dir": ["stateDir", "WEFT_STATE_DIR", "DIR", `the node's credential and SVIDs (default ${DEFAULT_STATE_DIR})`],
  "--metrics-port": ["metricsPort", "WEFT_METRICS_PORT", "P", `/metrics, /healthz and /readyz on 127.0.0.1 (default ${DEFAULT_METRICS_PORT}; 0: any free port)`],
  "--host-routing": ["hostRouting", "WEFT_HOST_ROUTING", "on|off", "deliver between this node's workloads without the host's forwarding (default on)"],
  "--uplink": ["uplink", "WEFT_UPLINK", "DEV|auto|off", "the device facing the other nodes, for the cross-node fast path (default off)"],
  "--lb-host-traffic": ["lbHostTraffic", "WEFT_LB_HOST_TRAFFIC", "[on|off]", "also balance connections made in the host's network namespace (default off)"],
  "--status-interval": ["statusInterval", "WEFT_STATUS_INTERVAL", "SECONDS", `a status report at least this often, 1..60 (default ${DEFAULT_STATUS_INTERVAL})`],
  "--workload-api-socket": ["workloadApiSocket", "WEFT_WORKLOAD_API_SOCKET", "PATH|off", `the SPIFFE Workload API's Unix socket (default ${DEFAULT_WORKLOAD_API_SOCKET})`],
  "--svid-files": ["svidFiles", "WEFT_SVID_FILES", "[on|off]", "also write each workload's SVID as files under the state directory (default off)"],
  "--transport": ["transport", "WEFT_TRANSPORT", "on|off", "run the node's mTLS transport (default on as root with an uplink or --transport-address, else off)"],
  "--transport-address": ["transportAddress", "WEFT_TRANSPORT_ADDRESS", "IPV4", "the transport's address on the fabric, where peers reach it (default: the uplink device's first IPv4 address)"],
  "--l7": ["l7", "WEFT_L7", "on|off", "run the node's L7 proxy (HAProxy) for services with HTTP routes (default on; off without haproxy)"],
  "--haproxy": ["haproxy", "WEFT_HAPROXY", "PATH", "the haproxy binary of the L7 proxy (default: haproxy on the PATH)"],
  "--l7-threads": ["l7Threads", "WEFT_L7_THREADS", "N", "threads of the L7 proxy, 1..64 (default: half the CPUs, at least 1)"],
  "--otlp-endpoint": ["otlpEndpoint", "WEFT_OTLP_ENDPOINT", "URL", "send the L7 proxy's spans to this OTLP/HTTP receiver (POST URL/v1/traces, protobuf; default: off)"],
  ...FLOW_FLAGS,
} as const;
/** Every environment variable the agent reads (deploy/ checks its unit and DaemonSet against it). */
export const ENVIRONMENT: readonly string[] = Object.values(FLAGS).map(([, envName]) => envName);

/** Flags that may stand alone, meaning "on". */
const SWITCHES: ReadonlySet<string> = new Set(["--lb-host-traffic", "--svid-files"]);
type Key = (typeof FLAGS)[keyof typeof FLAGS][0];

export const USAGE = "usage: weft-agent [run|cleanup] --api URL[,URL...] --name N [--join-token-file FILE] [--zone Z] [options]; weft-agent --help lists them";

/** `weft-agent --help`: every flag with its environment variable, from the same table the parser reads. */
export const HELP = [
  "weft-agent: the Weft node agent. Programs this node's eBPF maps from the API's compiled datapath state.",
  "",
  "usage: weft-agent [run] --api URL[,URL...] --name N [--join-token-file FILE] [--zone Z] [options]",
  "       weft-agent cleanup [--pin-dir DIR]     detach every program, remove every pin",
  "",
  "options (each also from its environment variable; a flag wins):",
  ...Object.entries(FLAGS).map(([flag, [, envName, value, what]]) => `  ${`${flag} ${value}`.padEnd(36)} ${envName.padEnd(26)} ${what}`),
  "",
  "The join token is needed only for the first start; the node's credential is kept in the state directory.",
  "Several API replicas: --api https://a:8443,https://b:8443, or one URL whose host name resolves to several",
  "addresses (each tried with the name kept for TLS). The agent stays on the endpoint that answers and moves to",
  "the next at once on a refused or reset connection, a timeout or a 5xx, backing off only after every endpoint",
  "failed; --api-ca and --api-ca-sha256 apply to each.",
  "GET /healthz, /readyz and /metrics answer on 127.0.0.1:<metrics port>.",
  "Exit codes: 0 stopped by a signal or cleanup done, 1 failed to start, 2 bad invocation.",
  "",
].join("\n");

/** Whether argv asks for the help text rather than a run. */
export function wantsHelp(argv: readonly string[]): boolean {
  return argv[0] === "help" || argv.includes("--help") || argv.includes("-h");
}

/** Whether the join token was given on the command line itself, where ps and npm's banner show it. */
export function joinTokenOnCommandLine(argv: readonly string[]): boolean {
  return argv.some((a) => a === "--join-token" || a.startsWith("--join-token="));
}

/**
 * The join token for a first start: given as it is, or read from its file
 * (one line; the newline an editor or `echo` leaves is dropped). undefined
 * when neither was given.
 */
export function joinTokenOf(cfg: Pick<AgentConfig, "joinToken" | "joinTokenFile">, readFile: (path: string) => string = (path) => readFileSync(path, "utf8")): string | undefined {
  if (cfg.joinToken !== undefined || cfg.joinTokenFile === undefined) return cfg.joinToken;
  const path = cfg.joinTokenFile;
  let text: string;
  try {
    text = readFile(path);
  } catch (err) {
    throw new Error(`failed to read the join token file ${JSON.stringify(path)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const token = text.trim();
  if (!token) throw new Error(`the join token file ${JSON.stringify(path)} is empty`);
  if (/\s/.test(token)) throw new Error(`the join token file ${JSON.stringify(path)} holds more than one token`);
  return token;
}

/** More API URLs than this is not a replica list (each may resolve to several addresses besides). */
export const MAX_API_URLS = 16;

/**
 * --api's value: one base URL or several, comma-separated, each http(s),
 * all of one scheme (the CA options apply to every one), none twice;
 * trailing slashes dropped.
 */
export function parseApis(text: string): string[] {
  if (text.trim() === "") return [];
  const items = text.split(",").map((t) => t.trim());
  if (items.length > MAX_API_URLS) throw new UsageError(`--api lists ${items.length} URLs; at most ${MAX_API_URLS}`);
  const urls: string[] = [];
  for (const item of items) {
    if (item === "") throw new UsageError(`--api ${JSON.stringify(text)} has an empty URL in its list; separate URLs with single commas`);
    let url: URL;
    try {
      url = new URL(item);
    } catch {
      throw new UsageError(`--api ${JSON.stringify(item)} is not a URL`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new UsageError(`--api must be http(s), not ${url.protocol}`);
    if (url.search || url.hash || url.username || url.password) throw new UsageError(`--api ${JSON.stringify(item)} must be a base URL: no query, fragment or user`);
    const base = item.replace(/\/+$/, "");
    if (urls.includes(base)) throw new UsageError(`--api lists ${JSON.stringify(base)} twice`);
    if (urls.length > 0 && new URL(urls[0]!).protocol !== url.protocol) throw new UsageError(`--api mixes http:// and https:// URLs: give every replica the same scheme`);
    urls.push(base);
  }
  return urls;
}

function isOtlpEndpoint(text: string): boolean {
  try {
    tracesUrl(text);
    return true;
  } catch {
    return false;
  }
}

export function parseArgs(argv: readonly string[], env: Readonly<Record<string, string | undefined>> = process.env): AgentConfig {
  const given: Partial<Record<Key, string>> = {};
  let command: AgentConfig["command"] = "run";
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (i === 0 && (arg === "cleanup" || arg === "run")) {
      command = arg;
      continue;
    }
    const eq = arg.indexOf("=");
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    if (!(flag in FLAGS)) throw new UsageError(`unknown argument ${JSON.stringify(arg)}; ${USAGE}`);
    const key = FLAGS[flag as keyof typeof FLAGS][0];
    const next = argv[i + 1];
    const value = eq > 0 ? arg.slice(eq + 1) : SWITCHES.has(flag) && (next === undefined || next.startsWith("--")) ? "on" : argv[++i];
    if (value === undefined || value === "" || (eq < 0 && value.startsWith("--"))) throw new UsageError(`${flag} needs a value`);
    if (given[key] !== undefined) throw new UsageError(`${flag} given twice`);
    given[key] = value;
  }
  const get = (key: Key): string | undefined => {
    if (given[key] !== undefined) return given[key];
    const envName = Object.values(FLAGS).find(([k]) => k === key)![1];
    const v = env[envName];
    return v === undefined || v === "" ? undefined : v;
  };

  const joinToken = get("joinToken");
  const joinTokenFile = get("joinTokenFile");
  if (joinToken !== undefined && joinTokenFile !== undefined) throw new UsageError("give the join token once: --join-token (WEFT_JOIN_TOKEN) or --join-token-file (WEFT_JOIN_TOKEN_FILE)");

  const apis = parseApis(get("api") ?? "");
  const name = get("name") ?? "";
  if (command === "run") {
    if (apis.length === 0) throw new UsageError("--api (or WEFT_API) is required");
    if (!name) throw new UsageError("--name (or WEFT_NODE_NAME) is required");
  }
  for (const flag of ["apiCa", "apiCaSha256"] as const) {
    if (get(flag) !== undefined && apis.some((u) => !u.startsWith("https:"))) throw new UsageError(`--${flag === "apiCa" ? "api-ca" : "api-ca-sha256"} needs an https:// --api (every URL of it)`);
  }
  if (get("apiCa") !== undefined && get("apiCaSha256") !== undefined) throw new UsageError("--api-ca and --api-ca-sha256 exclude each other: give the CA file, or its SHA-256 to fetch it");
  const pinText = get("apiCaSha256");
  if (pinText !== undefined && parsePin(pinText) === null) throw new UsageError("--api-ca-sha256 must be 64 hex digits (colons allowed), as `openssl x509 -noout -fingerprint -sha256` prints them");
  const portText = get("metricsPort");
  const metricsPort = portText === undefined ? DEFAULT_METRICS_PORT : Number(portText);
  // 0 asks the kernel for a free port (tests); the address is logged at start.
  if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535) throw new UsageError(`--metrics-port ${JSON.stringify(portText)} is not a port 0..65535`);
  const intervalText = get("statusInterval");
  const statusInterval = intervalText === undefined ? DEFAULT_STATUS_INTERVAL : Number(intervalText);
  if (!Number.isInteger(statusInterval) || statusInterval < 1 || statusInterval > 60) throw new UsageError(`--status-interval ${JSON.stringify(intervalText)} is not 1..60 seconds`);
  const hostRouting = get("hostRouting") ?? "on";
  if (hostRouting !== "on" && hostRouting !== "off") throw new UsageError(`--host-routing ${JSON.stringify(hostRouting)} is not on or off`);
  const lbHostTraffic = get("lbHostTraffic") ?? "off";
  if (lbHostTraffic !== "on" && lbHostTraffic !== "off") throw new UsageError(`--lb-host-traffic ${JSON.stringify(lbHostTraffic)} is not on or off`);
  const socketText = get("workloadApiSocket") ?? DEFAULT_WORKLOAD_API_SOCKET;
  if (socketText !== "off" && !socketText.startsWith("/")) throw new UsageError(`--workload-api-socket ${JSON.stringify(socketText)} is not an absolute path or off`);
  const svidFiles = get("svidFiles") ?? "off";
  if (svidFiles !== "on" && svidFiles !== "off") throw new UsageError(`--svid-files ${JSON.stringify(svidFiles)} is not on or off`);
  const uplink = get("uplink") ?? "off";
  // An interface name (IFNAMSIZ 16 with its NUL), or the two words.
  if (!/^[A-Za-z0-9_.@:-]{1,15}$/.test(uplink) || uplink === "." || uplink === "..") throw new UsageError(`--uplink ${JSON.stringify(uplink)} is not an interface name, auto or off`);
  const transportAddress = get("transportAddress");
  if (transportAddress !== undefined && !isIPv4(transportAddress)) throw new UsageError(`--transport-address ${JSON.stringify(transportAddress)} is not an IPv4 address`);
  const transportText = get("transport");
  if (transportText !== undefined && transportText !== "on" && transportText !== "off") throw new UsageError(`--transport ${JSON.stringify(transportText)} is not on or off`);
  const fabric = transportAddress !== undefined || uplink !== "off";
  // On by default only where it can work: IP_TRANSPARENT and SO_MARK need root (CAP_NET_ADMIN), and peers
  // reach the transport at the node's address on the fabric, named by --transport-address or found on the uplink.
  const transport = transportText === undefined ? process.getuid?.() === 0 && fabric : transportText === "on";
  if (transport && !fabric) throw new UsageError("--transport on needs the node's address on the fabric: --transport-address IPV4, or --uplink DEV|auto to take its first IPv4 address");
  const l7 = get("l7") ?? "on";
  if (l7 !== "on" && l7 !== "off") throw new UsageError(`--l7 ${JSON.stringify(l7)} is not on or off`);
  const haproxy = get("haproxy");
  if (haproxy !== undefined && !haproxy.startsWith("/")) throw new UsageError(`--haproxy ${JSON.stringify(haproxy)} is not an absolute path`);
  const threadsText = get("l7Threads");
  const l7Threads = threadsText === undefined ? undefined : Number(threadsText);
  if (l7Threads !== undefined && (!Number.isInteger(l7Threads) || l7Threads < 1 || l7Threads > 64)) throw new UsageError(`--l7-threads ${JSON.stringify(threadsText)} is not 1..64`);
  const otlpEndpoint = get("otlpEndpoint");
  if (otlpEndpoint !== undefined && !isOtlpEndpoint(otlpEndpoint)) throw new UsageError(`--otlp-endpoint ${JSON.stringify(otlpEndpoint)} is not an http:// or https:// URL`);
  return {
    command,
    api: apis[0] ?? "",
    apis,
    joinToken,
    ...(joinTokenFile === undefined ? {} : { joinTokenFile }),
    ...(get("apiCa") !== undefined ? { apiCa: get("apiCa") } : {}),
    ...(pinText !== undefined ? { apiCaSha256: pinText } : {}),
    name,
    zone: get("zone"),
    cgroup: get("cgroup") ?? DEFAULT_CGROUP,
    pinDir: get("pinDir") ?? DEFAULT_PIN_DIR,
    stateDir: get("stateDir") ?? DEFAULT_STATE_DIR,
    metricsPort,
    hostRouting: hostRouting === "on",
    lbHostTraffic: lbHostTraffic === "on",
    statusInterval,
    workloadApiSocket: socketText === "off" ? null : socketText,
    svidFiles: svidFiles === "on",
    flows: parseFlowConfig(get, (message) => new UsageError(message)),
    // Left out when off, so a configuration without an uplink reads as before.
    ...(uplink === "off" ? {} : { uplink }),
    ...(transport ? { transport } : {}),
    ...(transportAddress !== undefined ? { transportAddress } : {}),
    l7: l7 === "on",
    ...(haproxy !== undefined ? { haproxy } : {}),
    ...(l7Threads !== undefined ? { l7Threads } : {}),
    ...(otlpEndpoint !== undefined ? { otlpEndpoint } : {}),
  };
}
