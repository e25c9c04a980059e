/**
 * weft login: checks an endpoint and token against the API and saves them
 * (mode 0600). The token may come from a file or stdin, so that it need not
 * appear in argv, where `ps` and shell history see it.
 */
import { readFileSync } from "node:fs";
import { call, type Connection } from "../client.ts";
import { string, type Command, type Session, type Values } from "../command.ts";
import { configPath, normalEndpoint, readConfigFile, writeConfigFile } from "../config.ts";
import { CommandError, UsageError } from "../errors.ts";
import { readAll } from "../input.ts";
import { ROUTES } from "../routes.ts";

const HELP = `Usage: weft login --endpoint URL [--token-file FILE | --token-stdin | --token TOKEN] [--tenant NAME]

Checks the token against the API and saves the endpoint, the token and a
default tenant in the config file ($WEFT_CONFIG, else
~/.config/weft/config.json; mode 0600 in a 0700 directory).
WEFT_ENDPOINT, WEFT_TOKEN and WEFT_TENANT override the file.

Options:
  --endpoint URL      the API, e.g. http://127.0.0.1:8080 (default: the saved one)
  --token-file FILE   read the token from FILE (first line)
  --token-stdin       read the token from standard input
  --token TOKEN       the token itself (visible to ps and shell history: prefer the two above)
  --tenant NAME       the tenant commands use when they are given no --tenant
  --no-verify         save without asking the API
  -h, --help          this help

With no token option, the saved token is kept (to change the endpoint or tenant).
Example:
  weft login --endpoint http://127.0.0.1:8080 --tenant acme --token-stdin <<< "$TOKEN"`;

const firstLine = (text: string): string => text.split(/\r?\n/).find((l) => l.trim() !== "")?.trim() ?? "";

async function tokenFrom(session: Session, values: Values, saved: string | undefined): Promise<string> {
  const sources = ["token", "token-file", "token-stdin"].filter((k) => values[k] !== undefined);
  if (sources.length > 1) throw new UsageError(`give the token one way: --${sources.join(", --")} were all given`, "login");
  let token: string | undefined;
  if (values["token-stdin"]) token = firstLine(await readAll(session.stdin));
  else if (string(values, "token-file")) {
    const file = string(values, "token-file")!;
    try {
      token = firstLine(readFileSync(file, "utf8"));
    } catch (err) {
      throw new CommandError(`cannot read the token file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  } else if (string(values, "token") !== undefined) {
    session.err("warning: a token given with --token is visible to ps and kept in shell history; prefer --token-file or --token-stdin\n");
    token = string(values, "token")!.trim();
  } else token = saved;
  if (!token) throw new UsageError("no token: give --token-file FILE, --token-stdin or --token TOKEN", "login");
  if (/\s/.test(token)) throw new CommandError("the token contains white space: is it the right file?");
  return token;
}

/** Asks the API who the token is: the operator (it may list tenants) or a tenant's token. */
async function verify(conn: Connection, tenant: string | undefined): Promise<string> {
  const refused = (why: string) => new CommandError(`the API at ${conn.endpoint} refused the token: ${why}`);
  if (tenant) {
    const answer = await call(conn, ROUTES.tenants.get, { params: { tenant }, expect: [401, 403, 404] });
    if (answer.status === 401) throw refused("it is unknown, expired or revoked");
    if (answer.status === 404) throw new CommandError(`tenant "${tenant}" does not exist, or this token is not one of its tokens`);
    if (answer.status === 403) throw refused(`it may not read tenant "${tenant}"`);
    return `tenant ${tenant}`;
  }
  const answer = await call(conn, ROUTES.tenants.list, { query: { limit: 1 }, expect: [401, 403] });
  if (answer.status === 401) throw refused("it is unknown, expired or revoked");
  return answer.status === 403 ? "a tenant token (pass --tenant to make its tenant the default)" : "the operator";
}

export const login: Command = {
  name: "login",
  summary: "Save the API endpoint, a token and a default tenant",
  help: HELP,
  options: {
    endpoint: { type: "string" },
    token: { type: "string" },
    "token-file": { type: "string" },
    "token-stdin": { type: "boolean" },
    tenant: { type: "string", short: "t" },
    "no-verify": { type: "boolean" },
  },
  async run(session, values) {
    const path = configPath(session.env);
    const saved = readConfigFile(path);
    const rawEndpoint = string(values, "endpoint") ?? saved.endpoint;
    if (!rawEndpoint) throw new UsageError("--endpoint URL is required", "login");
    const endpoint = normalEndpoint(rawEndpoint);
    const token = await tokenFrom(session, values, saved.token);
    const tenant = string(values, "tenant") ?? saved.tenant;
    const who = values["no-verify"] ? "an unchecked token" : await verify({ endpoint, token }, tenant);
    writeConfigFile(path, { endpoint, token, ...(tenant ? { tenant } : {}) });
    session.out(`Logged in to ${endpoint} as ${who}; saved in ${path}\n`);
  },
};
