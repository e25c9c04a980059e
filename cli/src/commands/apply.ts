/**
 * weft apply -f FILE: creates or replaces what each document declares,
 * in order, through PUT. Each write is conditional on what was read just
 * before it (If-Match with the ETag read, or If-None-Match: * for a create),
 * so a change someone else made in between is refused (412), not
 * overwritten. Prints what changed, field by field; stops at the first
 * refusal with its field errors.
 */
import { call, json, type Connection } from "../client.ts";
import { connection, ENDPOINT_OPTION, string, TENANT_OPTION, type Command } from "../command.ts";
import { currentSettings } from "../config.ts";
import { diff, formatChange } from "../diff.ts";
import { readDocuments, type ResourceDocument } from "../documents.ts";
import { CommandError, UsageError } from "../errors.ts";
import { kindNames, kindParams, label } from "../kinds.ts";
import { readInput } from "../input.ts";
import { specField } from "../problem.ts";

const HELP = `Usage: weft apply -f FILE [-f FILE...] [--tenant NAME] [--dry-run]

Creates or replaces each resource FILE declares (- for stdin), in order, and
prints what changed, field by field. Stops at the first document the API
refuses (exit 1), printing the problem and each field error.

A file is YAML (documents separated by ---) or JSON (an object or an array
of them). Each document:

  kind: Service               # ${kindNames((k) => Boolean(k.routes.put))}
  metadata:
    name: web
    tenant: acme              # default: --tenant, then the login's tenant
  spec:                       # the body of PUT /v1/tenants/acme/services/web
    ports: [{port: 80, protocol: tcp, targetPort: 8080}]
    backends: {selector: {identity: web}}

(A Tenant document has metadata.name only: its spec is PUT /v1/tenants/{name}'s body.)

A dry run checks each document against what exists now, not against the
documents before it in the file: a dry run that declares a tenant and its
identities answers 404 for the identities until the tenant exists.

Options:
  -f, --filename FILE  the documents to apply (repeatable)
  -t, --tenant NAME    the tenant of documents that name none
  --dry-run            the API checks everything (capacity included) and writes nothing
  --endpoint URL       the API
  -h, --help           this help

Output per document: created / configured / unchanged, then one line per field:
  + path: value      added
  - path: value      removed
  ~ path: old -> new changed`;

/** Fields every resource carries that say nothing about its content. */
const BOOKKEEPING = ["etag", "createdAt", "updatedAt"];

type Outcome = "created" | "configured" | "unchanged";

async function applyOne(conn: Connection, doc: ResourceDocument, dryRun: boolean): Promise<{ outcome: Outcome; lines: string[] }> {
  const params = kindParams(doc.kind, doc.kind.scope === "tenant" ? doc.tenant : undefined, doc.name);
  const current = await call(conn, doc.kind.routes.get!, { params, expect: [404] });
  const before = current.status === 404 ? undefined : json(current);
  const etag = current.headers.get("etag");
  const precondition: Record<string, string> = before === undefined ? { "if-none-match": "*" } : etag ? { "if-match": etag } : {};
  const written = await call(conn, doc.kind.routes.put!, {
    params,
    query: dryRun ? { dryRun: true } : {},
    headers: precondition,
    body: doc.spec,
    field: specField,
  });
  const after = json(written);
  const changes = diff(before, after, BOOKKEEPING);
  const outcome: Outcome = before === undefined ? "created" : changes.length ? "configured" : "unchanged";
  // A create lists every field that has a value; the name is in the heading already.
  const shown = before === undefined ? diff({}, after, [...BOOKKEEPING, "name"]).filter((c) => c.op !== "add" || c.after !== null) : changes;
  return { outcome, lines: shown.map(formatChange) };
}

export const apply: Command = {
  name: "apply",
  summary: "Create or update the resources a YAML or JSON file declares",
  help: HELP,
  options: { filename: { type: "string", short: "f", multiple: true }, "dry-run": { type: "boolean" }, ...TENANT_OPTION, ...ENDPOINT_OPTION },
  async run(session, values, positionals) {
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}" (files go after -f)`, "apply");
    const files = (values.filename as string[] | undefined) ?? [];
    if (files.length === 0) throw new UsageError("-f FILE is required", "apply");
    const defaultTenant = currentSettings(session.env).tenant;
    const docs: ResourceDocument[] = [];
    // Every file is read and checked before anything is written.
    for (const file of files) {
      docs.push(...readDocuments(await readInput(file, session.stdin), file, { tenantFlag: string(values, "tenant"), defaultTenant, needs: "put" }));
    }
    if (docs.length === 0) throw new CommandError(`no documents in ${files.join(", ")}`);
    const { conn } = connection(session, values);
    const dryRun = values["dry-run"] === true;
    const counts: Record<Outcome, number> = { created: 0, configured: 0, unchanged: 0 };
    for (const doc of docs) {
      let result: Awaited<ReturnType<typeof applyOne>>;
      try {
        result = await applyOne(conn, doc, dryRun);
      } catch (err) {
        if (err instanceof CommandError) throw new CommandError(`${label(doc.kind, doc.name, doc.tenant)} from ${doc.where}: ${err.message}`, err.details);
        throw err;
      }
      counts[result.outcome]++;
      session.out(`${label(doc.kind, doc.name, doc.tenant)} ${result.outcome}${dryRun ? " (dry run)" : ""}\n${result.lines.map((l) => `    ${l}\n`).join("")}`);
    }
    const summary = (Object.entries(counts) as [Outcome, number][]).filter(([, n]) => n > 0).map(([o, n]) => `${n} ${o}`);
    session.out(`${docs.length} document${docs.length === 1 ? "" : "s"}: ${summary.join(", ")}${dryRun ? " (dry run: nothing written)" : ""}\n`);
  },
};
