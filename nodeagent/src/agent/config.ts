// SPDX-License-Identifier: Apache-2.0
/**
 * The agent's command line: flags first, then the environment, then
 * defaults. A bad invocation is a UsageError: main prints its one line and
 * exits 2, so a typo in a unit file is not mistaken for a crash.
 */
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
  /** Base URL of the API, e.g. http://127.0.0.1:8080; required to run. */
  api: string;
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
}

/** Flag name -> [config key, environment variable]. */
const FLAGS = {
  "--api": ["api", "WEFT_API"],
  "--api-ca": ["apiCa", "WEFT_API_CA"],
  "--api-ca-sha256": ["apiCaSha256", "WEFT_API_CA_SHA256"],
  "--join-token": ["joinToken", "WEFT_JOIN_TOKEN"],
  "--name": ["name", "WEFT_NODE_NAME"],
  "--zone": ["zone", "WEFT_ZONE"],
  "--cgroup": ["cgroup", "WEFT_CGROUP"],
  "--pin-dir": ["pinDir", "WEFT_PIN_DIR"],
  "--state-dir": ["stateDir", "WEFT_STATE_DIR"],
  "--metrics-port": ["metricsPort", "WEFT_METRICS_PORT"],
  "--host-routing": ["hostRouting", "WEFT_HOST_ROUTING"],
  "--lb-host-traffic": ["lbHostTraffic", "WEFT_LB_HOST_TRAFFIC"],
  "--status-interval": ["statusInterval", "WEFT_STATUS_INTERVAL"],
  "--workload-api-socket": ["workloadApiSocket", "WEFT_WORKLOAD_API_SOCKET"],
  "--svid-files": ["svidFiles", "WEFT_SVID_FILES"],
  "--uplink": ["uplink", "WEFT_UPLINK"],
} as const;
/** Flags that may stand alone, meaning "on". */
const SWITCHES: ReadonlySet<string> = new Set(["--lb-host-traffic", "--svid-files"]);
type Key = (typeof FLAGS)[keyof typeof FLAGS][0];

export const USAGE =
  "usage: agent [cleanup] --api URL --name N [--api-ca FILE | --api-ca-sha256 HEX] [--join-token T] [--zone Z] [--cgroup PATH] [--pin-dir DIR] [--state-dir DIR] [--metrics-port P] [--host-routing on|off] [--uplink DEV|auto|off] [--lb-host-traffic [on|off]] [--status-interval SECONDS] [--workload-api-socket PATH|off] [--svid-files [on|off]] (each also WEFT_API, WEFT_NODE_NAME, ...)";

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

  const api = get("api") ?? "";
  const name = get("name") ?? "";
  if (command === "run") {
    if (!api) throw new UsageError("--api (or WEFT_API) is required");
    if (!name) throw new UsageError("--name (or WEFT_NODE_NAME) is required");
  }
  if (api) {
    let url: URL;
    try {
      url = new URL(api);
    } catch {
      throw new UsageError(`--api ${JSON.stringify(api)} is not a URL`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new UsageError(`--api must be http(s), not ${url.protocol}`);
    for (const flag of ["apiCa", "apiCaSha256"] as const) {
      if (get(flag) !== undefined && url.protocol !== "https:") throw new UsageError(`--${flag === "apiCa" ? "api-ca" : "api-ca-sha256"} needs an https:// --api`);
    }
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
  return {
    command,
    api: api.replace(/\/+$/, ""),
    ...(get("apiCa") !== undefined ? { apiCa: get("apiCa") } : {}),
    ...(pinText !== undefined ? { apiCaSha256: pinText } : {}),
    joinToken: get("joinToken"),
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
    // Left out when off, so a configuration without an uplink reads as before.
    ...(uplink === "off" ? {} : { uplink }),
  };
}
