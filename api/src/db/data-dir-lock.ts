import { closeSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";

/** The embedded database is one process's: a second one opening it would corrupt it, not share it. */
export class DataDirInUse extends Error {
  constructor(
    readonly dataDir: string,
    readonly pid: number,
  ) {
    super(`data directory ${dataDir} is in use by another Weft process (pid ${pid}): stop that one, or set WEFT_DATA_DIR to another directory`);
  }
}

export interface DataDirLock {
  readonly path: string;
  release(): void;
}

/** Beside the directory, not in it: PGlite's initdb wants the directory to itself. */
export const lockPathOf = (dataDir: string) => `${dataDir}.lock`;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else; only ESRCH means gone.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The PID a lock file names, or null when it names none (written by hand, or by no Weft). */
function holderOf(path: string): number | null {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
  return /^\d{1,10}\n$/.test(text) ? Number(text.trim()) : null;
}

/** Creates the lock file whole (written aside, then linked into place: link fails if it exists) or answers false. */
function create(path: string): boolean {
  const draft = `${path}.${process.pid}.draft`;
  const fd = openSync(draft, "w", 0o600);
  try {
    writeSync(fd, `${process.pid}\n`);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(draft, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  } finally {
    unlinkSync(draft);
  }
}

/**
 * Takes `<dataDir>.lock` (created exclusively, holding this process's PID) before
 * the embedded database is opened, or throws DataDirInUse at once. A lock
 * whose PID is dead (a crash, a kill -9) is taken over: moved aside by
 * rename, which only one contender can win for a given file, then checked to
 * be the stale one that was seen (a contender that lost puts a live lock
 * back where it was).
 */
export function lockDataDir(dataDir: string): DataDirLock {
  const path = lockPathOf(dataDir);
  for (let attempt = 0; attempt < 5; attempt++) {
    if (create(path)) {
      const release = () => {
        if (holderOf(path) === process.pid) unlinkSync(path);
        process.off("exit", release);
      };
      // A process that exits without closing (process.exit after a fatal error) leaves no lock behind.
      process.on("exit", release);
      return { path, release };
    }
    const holder = holderOf(path);
    if (holder !== null && holder !== process.pid && alive(holder)) throw new DataDirInUse(dataDir, holder);
    if (holder === process.pid) throw new DataDirInUse(dataDir, holder);
    const aside = `${path}.stale-${process.pid}`;
    try {
      renameSync(path, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue; // someone else moved it first
      throw err;
    }
    const moved = holderOf(aside);
    if (moved !== holder) {
      // Between our read and the rename another process took the lock over: give it back.
      try {
        linkSync(aside, path);
      } catch {
        // a third process holds the path now; either way the moved lock was live
      }
      unlinkSync(aside);
      if (moved !== null && alive(moved)) throw new DataDirInUse(dataDir, moved);
      continue;
    }
    unlinkSync(aside);
  }
  throw new Error(`could not take the lock ${path}: it keeps changing hands`);
}
