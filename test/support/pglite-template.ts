import { createHash } from "node:crypto";
import { readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { MIGRATIONS_FOLDER, pgliteDatabase, type Database } from "../../api/src/db/client.ts";

/**
 * In-memory PGlite databases for the suites, started from a dump of a
 * migrated one: PGlite's initdb costs 2–4 s of CPU a database, loading a dump
 * about one, and the suites open one or more a file. The dump is kept in
 * memory for the unit project's files (one module graph) and on disk for the
 * others, each in a module graph of its own, and for the next run; its name
 * holds the migrations' and PGlite's digest, so a changed migration makes a
 * new one.
 */
const PGLITE_VERSION = JSON.parse(readFileSync(new URL("../../node_modules/@electric-sql/pglite/package.json", import.meta.url), "utf8")).version as string;

function migrationsDigest(): string {
  const hash = createHash("sha256").update(PGLITE_VERSION);
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else hash.update(entry.name).update(readFileSync(path));
    }
  };
  walk(MIGRATIONS_FOLDER);
  return hash.digest("hex").slice(0, 16);
}

let template: Promise<Blob> | undefined;

async function migratedDump(): Promise<Blob> {
  const path = join(tmpdir(), `weft-test-pglite-${migrationsDigest()}.tar`);
  try {
    return new Blob([readFileSync(path)]);
  } catch {
    // Not made yet: make it, and publish it whole (rename) for the files after this one.
  }
  const client = new PGlite();
  const database = pgliteDatabase(client);
  try {
    await database.migrate();
    const dump = await client.dumpDataDir("none");
    const partial = `${path}.${process.pid}`;
    writeFileSync(partial, new Uint8Array(await dump.arrayBuffer()));
    renameSync(partial, path);
    return dump;
  } finally {
    await database.close();
  }
}

/** A fresh, migrated, in-memory database of its own. */
export async function migratedPglite(): Promise<Database> {
  template ??= migratedDump();
  return pgliteDatabase(new PGlite({ loadDataDir: await template }));
}
