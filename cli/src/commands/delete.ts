/** weft delete KIND NAME... or -f FILE: deletes, stopping at the first refusal. */
import { call } from "../client.ts";
import { connection, ENDPOINT_OPTION, requireTenant, string, TENANT_OPTION, type Command, type Values } from "../command.ts";
import { currentSettings } from "../config.ts";
import { readDocuments } from "../documents.ts";
import { readInput } from "../input.ts";
import { CommandError, UsageError } from "../errors.ts";
import { kindArgument, kindParams, label, singularOf, type Kind } from "../kinds.ts";

const HELP = `Usage: weft delete KIND NAME... [--tenant NAME] [--dry-run]
       weft delete -f FILE [--tenant NAME] [--dry-run]

Deletes resources, stopping at the first the API refuses (exit 1). With -f,
the documents of FILE (as weft apply reads them; - for stdin) are deleted in
reverse order, so that what a file declares first (an identity) goes after
what depends on it (its workloads). Tokens are deleted (revoked) by id.

Options:
  -f, --filename FILE  delete what FILE declares
  -t, --tenant NAME    the tenant (default: the document's, then the login's)
  --dry-run            ask the API what would happen; delete nothing
  --ignore-not-found   a resource that does not exist is not an error
  --endpoint URL       the API
  -h, --help           this help`;

interface Target {
  kind: Kind;
  tenant: string | undefined;
  name: string;
  /** The document it came from, with -f. */
  from?: string;
}

function targets(values: Values, positionals: string[], text: string | undefined, file: string | undefined, defaultTenant: string | undefined): Target[] {
  if (text !== undefined) {
    if (positionals.length) throw new UsageError("give -f FILE or KIND NAME, not both", "delete");
    const docs = readDocuments(text, file!, { tenantFlag: string(values, "tenant"), defaultTenant, needs: "delete" });
    return docs.reverse().map((d) => ({ kind: d.kind, tenant: d.kind.scope === "tenant" ? d.tenant : undefined, name: d.name, from: d.where }));
  }
  const [rawKind, ...names] = positionals;
  const kind = kindArgument(rawKind, "delete");
  if (!kind.routes.delete) throw new UsageError(`${kind.plural} cannot be deleted`, "delete");
  if (names.length === 0) throw new UsageError(`which ${singularOf(kind)}? weft delete ${kind.plural} NAME`, "delete");
  const tenant = kind.scope === "tenant" ? requireTenant(values, { tenant: defaultTenant }, "delete") : undefined;
  return names.map((name) => ({ kind, tenant, name }));
}

export const del: Command = {
  name: "delete",
  summary: "Delete resources by kind and name, or those a file declares",
  help: HELP,
  options: {
    filename: { type: "string", short: "f" },
    "dry-run": { type: "boolean" },
    "ignore-not-found": { type: "boolean" },
    ...TENANT_OPTION,
    ...ENDPOINT_OPTION,
  },
  async run(session, values, positionals) {
    const file = string(values, "filename");
    const text = file === undefined ? undefined : await readInput(file, session.stdin);
    const list = targets(values, positionals, text, file, currentSettings(session.env).tenant);
    const dryRun = values["dry-run"] === true;
    for (const t of list) {
      if (dryRun && !t.kind.routes.delete!.query?.includes("dryRun")) throw new UsageError(`${t.kind.plural} have no dry run`, "delete");
    }
    const { conn } = connection(session, values);
    const suffix = dryRun ? " (dry run)" : "";
    for (const t of list) {
      const shown = label(t.kind, t.name, t.tenant);
      try {
        const answer = await call(conn, t.kind.routes.delete!, {
          params: kindParams(t.kind, t.tenant, t.name),
          query: dryRun ? { dryRun: true } : {},
          expect: values["ignore-not-found"] ? [404] : [],
        });
        session.out(answer.status === 404 ? `${shown} not found${suffix}\n` : `${shown} deleted${suffix}\n`);
      } catch (err) {
        if (err instanceof CommandError) throw new CommandError(`${shown}${t.from ? ` from ${t.from}` : ""}: ${err.message}`, err.details);
        throw err;
      }
    }
  },
};
