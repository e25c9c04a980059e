// The operator CA as a file beside the data directory (as the KEK key file
// is), for the operator to hand to agents (--api-ca) and Terraform (ca_file).
import { chmodSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

export const operatorCaFileFor = (dataDir: string): string => join(dirname(dataDir), "operator-ca.pem");

/** Writes the PEM whole (a reader never sees half of it), readable by all: a certificate is public. */
export function writeOperatorCaFile(dataDir: string, pem: string): string {
  const file = operatorCaFileFor(dataDir);
  const partial = `${file}.${process.pid}.tmp`;
  writeFileSync(partial, pem, { mode: 0o644 });
  // The process umask (0077) narrowed the mode given above.
  chmodSync(partial, 0o644);
  renameSync(partial, file);
  return file;
}
