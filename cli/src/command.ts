/**
 * What every command is: a name, its help, its options (node:util
 * parseArgs), and a run function over a Session: the streams, the
 * environment, and the settings in force.
 */
import type { ParseArgsConfig } from "node:util";
import type { Connection } from "./client.ts";
import { configPath, currentSettings, exposedMode, normalEndpoint, type Settings } from "./config.ts";
import { CommandError, UsageError } from "./errors.ts";

export type Options = NonNullable<ParseArgsConfig["options"]>;
export type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

export interface Session {
  out(text: string): void;
  err(text: string): void;
  env: NodeJS.ProcessEnv;
  stdin: NodeJS.ReadableStream;
  /** Aborted when the user interrupts (Ctrl-C): long-running commands stop cleanly. */
  interrupted: AbortSignal;
}

export interface Command {
  name: string;
  /** One line for `weft --help`. */
  summary: string;
  /** The whole of `weft NAME --help`. */
  help: string;
  options: Options;
  run(session: Session, values: Values, positionals: string[]): Promise<number | void>;
}

/** Options most commands take. */
export const ENDPOINT_OPTION = { endpoint: { type: "string" } } as const satisfies Options;
export const TENANT_OPTION = { tenant: { type: "string", short: "t" } } as const satisfies Options;
export const OUTPUT_OPTION = { output: { type: "string", short: "o" } } as const satisfies Options;

export const string = (values: Values, key: string): string | undefined => {
  const v = values[key];
  return typeof v === "string" ? v : undefined;
};

/** A string option limited to a few words; the first is the default. */
export function choice<T extends string>(values: Values, key: string, allowed: readonly T[], command: string): T {
  const v = string(values, key) ?? allowed[0]!;
  if (!allowed.includes(v as T)) throw new UsageError(`--${key} must be one of ${allowed.join(", ")} (got "${v}")`, command);
  return v as T;
}

/** The API endpoint and token in force (flag, then environment, then config file), or a command error saying how to set them. */
export function connection(session: Session, values: Values): { conn: Connection; settings: Settings } {
  const settings = currentSettings(session.env);
  const exposed = exposedMode(configPath(session.env));
  if (exposed !== null) {
    const path = configPath(session.env);
    session.err(`warning: ${path} holds a token and others may read it (mode ${exposed.toString(8).padStart(4, "0")}): chmod 600 ${path}\n`);
  }
  const endpoint = string(values, "endpoint") ?? settings.endpoint;
  if (!endpoint) throw new CommandError("no API endpoint: run `weft login --endpoint URL ...` or set WEFT_ENDPOINT");
  if (!settings.token) throw new CommandError("no token: run `weft login` or set WEFT_TOKEN");
  return { conn: { endpoint: normalEndpoint(endpoint), token: settings.token }, settings };
}

/** --tenant, else the login's tenant; a usage error naming the command if neither is set. */
export function requireTenant(values: Values, settings: Settings, command: string): string {
  const tenant = string(values, "tenant") ?? settings.tenant;
  if (!tenant) throw new UsageError("no tenant: pass --tenant NAME, or log in with --tenant", command);
  return tenant;
}
