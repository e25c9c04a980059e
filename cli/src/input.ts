/** Reading what the user hands the CLI: a file, or standard input for "-". */
import { readFileSync } from "node:fs";
import { CommandError } from "./errors.ts";

export async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === "string" ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString("utf8");
}

/** The file's text ("-": standard input), or a command error naming the file and why. */
export async function readInput(file: string, stdin: NodeJS.ReadableStream): Promise<string> {
  if (file === "-") return readAll(stdin);
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw new CommandError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
