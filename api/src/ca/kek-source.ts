// Where the key-encryption key (sealing CA keys and the token signing key) comes from, in order:
//   1. WEFT_KEK (config.kek): what operators should use, from their secret store;
//   2. a key file beside the data directory (<dataDir>/../kek, mode 0600),
//      generated on the first start and reused after;
//   3. no data directory at all (tests, in-memory PGlite): a throwaway key,
//      which is safe because the database it protects dies with the process.
// On real Postgres without WEFT_KEK the key file is used too, with a warning:
// every replica must hold the same key, or a CA sealed by one cannot be
// opened by another. Refusing to start would be stricter, but would break the
// one-command start against a local Postgres.
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { Kek, KEK_BYTES, loadKek } from "./kek.ts";
import type { Config } from "../config.ts";

export interface KekChoice {
  kek: Kek;
  /** One line for the log; never the key. */
  note: string;
  level: "info" | "warn";
  /**
   * A throwaway key, gone with the process: nothing sealed under it can be
   * opened by another process, so secrets shared through the database (the
   * token signing key) must not be sealed under it (auth/token-keys.ts).
   */
  ephemeral: boolean;
}

export const kekFileFor = (dataDir: string): string => join(dirname(dataDir), "kek");

export function resolveKek(config: Pick<Config, "kek" | "dataDir" | "databaseUrl">): KekChoice {
  if (config.kek) return { kek: config.kek, note: "CA keys sealed under WEFT_KEK", level: "info", ephemeral: false };
  if (config.dataDir === undefined) {
    return { kek: new Kek(randomBytes(KEK_BYTES)), note: "CA keys sealed under a throwaway in-memory KEK", level: "info", ephemeral: true };
  }
  const keyFile = kekFileFor(config.dataDir);
  const { kek, source } = loadKek({ env: {}, keyFile });
  const how = source === "file-created" ? "generated KEK key file" : "KEK key file";
  if (config.databaseUrl) {
    return {
      kek,
      note: `CA keys sealed under the ${how} ${keyFile}: set WEFT_KEK to the same key on every replica sharing this database`,
      level: "warn",
      ephemeral: false,
    };
  }
  return { kek, note: `CA keys sealed under the ${how} ${keyFile}`, level: "info", ephemeral: false };
}
