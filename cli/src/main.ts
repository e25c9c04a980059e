/**
 * The `weft` command: picks the command, parses its options, runs it, and
 * turns what went wrong into an exit code: 0 done, 1 the API or the input
 * refused, 2 the command line is wrong.
 */
import { parseArgs } from "node:util";
import type { Command, Session } from "./command.ts";
import { apply } from "./commands/apply.ts";
import { del } from "./commands/delete.ts";
import { flows } from "./commands/flows.ts";
import { get } from "./commands/get.ts";
import { login } from "./commands/login.ts";
import { status } from "./commands/status.ts";
import { svid } from "./commands/svid.ts";
import { printable, printableLines } from "./printable.ts";
import { CommandError, EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError } from "./errors.ts";

export const COMMANDS: Command[] = [login, get, apply, del, status, svid, flows];

const HELP = `Usage: weft COMMAND [options]

The command line of Weft's API.

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(8)} ${c.summary}`).join("\n")}

Settings: weft login saves the endpoint and token ($WEFT_CONFIG, else
~/.config/weft/config.json); WEFT_ENDPOINT, WEFT_TOKEN and WEFT_TENANT
override them. Every command takes --help.

Exit codes: 0 done, 1 the API or the input refused, 2 a usage error.`;

const HELP_FLAGS = ["-h", "--help", "help"];

export async function main(argv: string[], session: Session): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    session.err(`${HELP}\n`);
    return EXIT_USAGE;
  }
  if (HELP_FLAGS.includes(name)) {
    const topic = name === "help" ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    session.out(`${topic ? topic.help : HELP}\n`);
    return EXIT_OK;
  }
  const command = COMMANDS.find((c) => c.name === name);
  try {
    if (!command) throw new UsageError(`unknown command "${name}" (commands: ${COMMANDS.map((c) => c.name).join(", ")})`);
    let parsed: ReturnType<typeof parseArgs>;
    try {
      parsed = parseArgs({ args: rest, options: { ...command.options, help: { type: "boolean", short: "h" } }, allowPositionals: true, strict: true });
    } catch (err) {
      throw new UsageError((err as Error).message.replace(/\. To specify a positional.*$/s, ""), command.name);
    }
    if (parsed.values.help) {
      session.out(`${command.help}\n`);
      return EXIT_OK;
    }
    return (await command.run(session, parsed.values, parsed.positionals)) ?? EXIT_OK;
  } catch (err) {
    if (err instanceof UsageError) {
      const which = err.command ?? command?.name;
      session.err(`weft${which ? ` ${which}` : ""}: ${err.message}\nRun 'weft${which ? ` ${which}` : ""} --help' for usage.\n`);
      return EXIT_USAGE;
    }
    if (err instanceof CommandError) {
      // Messages quote the API's problems, which quote what others wrote.
      session.err(`error: ${printableLines(err.message)}\n${err.details.map((d) => `  ${printable(d)}\n`).join("")}`);
      return EXIT_FAILED;
    }
    session.err(`weft: internal error: ${(err as Error).stack ?? String(err)}\n`);
    return EXIT_FAILED;
  }
}

/** The process around main: real streams, Ctrl-C, a closed pipe (`weft get ... | head`). */
export async function run(): Promise<void> {
  const interrupt = new AbortController();
  process.once("SIGINT", () => interrupt.abort());
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(EXIT_OK);
    throw err;
  });
  const code = await main(process.argv.slice(2), {
    out: (t) => void process.stdout.write(t),
    err: (t) => void process.stderr.write(t),
    env: process.env,
    stdin: process.stdin,
    interrupted: interrupt.signal,
  });
  process.exitCode = code;
}
