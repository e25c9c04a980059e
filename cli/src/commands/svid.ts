/**
 * weft svid: mints an X.509-SVID for testing, as a workload would get one:
 * a fresh P-256 key, a CSR naming the identity's SPIFFE ID, the API's
 * signature, and the tenant's bundle, written as spiffe-helper names them
 * (svid.pem, svid_key.pem, svid_bundle.pem). The key is made here and never
 * leaves the machine.
 */
import { generateKeyPairSync } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildCsr } from "@weft/pki/csr";
import { call, json } from "../client.ts";
import { choice, connection, ENDPOINT_OPTION, OUTPUT_OPTION, requireTenant, string, TENANT_OPTION, type Command } from "../command.ts";
import { CommandError, UsageError } from "../errors.ts";
import { render } from "../output.ts";
import { ROUTES } from "../routes.ts";

const HELP = `Usage: weft svid --identity NAME [--tenant NAME] [--out DIR]

Mints an X.509-SVID for the identity (write scope) and writes, in DIR
(default: the current directory; created with mode 0700 if missing):
  svid.pem         the certificate chain, leaf first
  svid_key.pem     its private key (PKCS#8, mode 0600; generated here, never sent)
  svid_bundle.pem  the tenant's trust bundle (the CA certificates)
Existing files are replaced. Check them with:
  openssl verify -CAfile svid_bundle.pem svid.pem

Options:
  -i, --identity NAME  the identity
  -t, --tenant NAME    the tenant (default: the login's)
  --out DIR            where the files go
  -o, --output FMT     text (default) or json: the SPIFFE ID, expiry and paths
  --endpoint URL       the API
  -h, --help           this help`;

interface X509Svid {
  certificate: string;
  chain: string[];
  expiresAt: string;
  serial: string;
}

const pem = (s: string): string => (s.endsWith("\n") ? s : `${s}\n`);

/** Writes every file under a temporary name first, so that a failure leaves none of them half-written. */
function writeAll(files: { path: string; text: string; mode: number }[]): void {
  const written: string[] = [];
  try {
    for (const f of files) {
      const tmp = `${f.path}.${process.pid}.tmp`;
      rmSync(tmp, { force: true });
      writeFileSync(tmp, f.text, { mode: f.mode, flag: "wx" });
      chmodSync(tmp, f.mode);
      written.push(tmp);
    }
    files.forEach((f, i) => renameSync(written[i]!, f.path));
  } catch (err) {
    for (const tmp of written) rmSync(tmp, { force: true });
    throw new CommandError(`cannot write the SVID files: ${(err as Error).message}`);
  }
}

export const svid: Command = {
  name: "svid",
  summary: "Mint an X.509-SVID for testing and write key, chain and bundle",
  help: HELP,
  options: { identity: { type: "string", short: "i" }, out: { type: "string" }, ...TENANT_OPTION, ...OUTPUT_OPTION, ...ENDPOINT_OPTION },
  async run(session, values, positionals) {
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`, "svid");
    const identity = string(values, "identity");
    if (!identity) throw new UsageError("--identity NAME is required", "svid");
    const format = choice(values, "output", ["text", "json"], "svid");
    const { conn, settings } = connection(session, values);
    const tenant = requireTenant(values, settings, "svid");
    const dir = string(values, "out") ?? ".";

    const declared = json<{ spiffeId: string }>(await call(conn, ROUTES.identities.get, { params: { tenant, name: identity } }));
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const csr = buildCsr(privateKey, { commonName: identity, spiffeId: declared.spiffeId });
    const minted = json<X509Svid>(await call(conn, ROUTES.x509Svid, { params: { tenant, name: identity }, body: { csr } }));
    const bundle = (await call(conn, ROUTES.bundlePem, { params: { tenant } })).text;

    if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
    const files = {
      svid: join(dir, "svid.pem"),
      key: join(dir, "svid_key.pem"),
      bundle: join(dir, "svid_bundle.pem"),
    };
    writeAll([
      { path: files.svid, text: [minted.certificate, ...minted.chain].map(pem).join(""), mode: 0o644 },
      { path: files.key, text: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), mode: 0o600 },
      { path: files.bundle, text: pem(bundle), mode: 0o644 },
    ]);
    if (format === "json") return void session.out(render("json", { spiffeId: declared.spiffeId, expiresAt: minted.expiresAt, serial: minted.serial, files }));
    session.out(
      `${declared.spiffeId}  expires ${minted.expiresAt}\n` +
        `  ${files.svid}\n  ${files.key}  (mode 0600)\n  ${files.bundle}\n`,
    );
  },
};
