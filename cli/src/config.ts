/**
 * Where the CLI finds the API and its token: a config file written by
 * `weft login` (mode 0600 in a 0700 directory, since it holds a bearer
 * token), overridden field by field by WEFT_ENDPOINT, WEFT_TOKEN and
 * WEFT_TENANT, then by command-line flags.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { CommandError } from "./errors.ts";

export interface Settings {
  endpoint?: string;
  token?: string;
  /** The tenant commands use when --tenant is not given. */
  tenant?: string;
}

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.WEFT_CONFIG) return env.WEFT_CONFIG;
  const base = env.XDG_CONFIG_HOME || join(homedir(), ".config");
  return join(base, "weft", "config.json");
}

export function readConfigFile(path: string): Settings {
  if (!existsSync(path)) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new CommandError(`cannot read the config file ${path}: ${(err as Error).message}`);
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new CommandError(`the config file ${path} is not a JSON object`);
  const out: Settings = {};
  for (const key of ["endpoint", "token", "tenant"] as const) {
    const v = (parsed as Record<string, unknown>)[key];
    if (typeof v === "string" && v !== "") out[key] = v;
  }
  return out;
}

/**
 * Writes the file so that the token is never readable by others, not even
 * for a moment: a fresh 0600 file beside it, then a rename over the old one.
 */
export function writeConfigFile(path: string, settings: Settings): void {
  const dir = dirname(path);
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700); // mkdir's mode is masked by the umask
  } else if ((statSync(dir).mode & 0o077) !== 0 && dir.endsWith(join("/", "weft"))) {
    chmodSync(dir, 0o700); // our own directory, left open by something else
  }
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, "wx", 0o600);
  try {
    writeSync(fd, `${JSON.stringify(settings, null, 2)}\n`);
  } finally {
    closeSync(fd);
  }
  try {
    chmodSync(tmp, 0o600);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** The file's mode when others than its owner may read or write it (it holds a token), else null. */
export function exposedMode(path: string): number | null {
  if (!existsSync(path)) return null;
  const mode = statSync(path).mode & 0o777;
  return mode & 0o077 ? mode : null;
}

/** The settings in force: the file, then the environment over it. */
export function currentSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const file = readConfigFile(configPath(env));
  return {
    ...file,
    ...(env.WEFT_ENDPOINT ? { endpoint: env.WEFT_ENDPOINT } : {}),
    ...(env.WEFT_TOKEN ? { token: env.WEFT_TOKEN } : {}),
    ...(env.WEFT_TENANT ? { tenant: env.WEFT_TENANT } : {}),
  };
}

/** An http(s) URL without a trailing slash, or a command error saying what is wrong with it. */
export function normalEndpoint(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CommandError(`the endpoint "${raw}" is not a URL (e.g. http://127.0.0.1:8080)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new CommandError(`the endpoint "${raw}" must be http:// or https://`);
  if (url.username || url.password) throw new CommandError("the endpoint must not carry credentials: give the token with --token-file or --token-stdin");
  if (url.search || url.hash) throw new CommandError(`the endpoint "${raw}" must not have a query or fragment`);
  return url.toString().replace(/\/+$/, "");
}
