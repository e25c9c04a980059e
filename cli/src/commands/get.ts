/** weft get KIND [NAME]: one resource or every one of a kind (all pages), as a table, JSON or YAML. */
import { call, json, listAll } from "../client.ts";
import { choice, connection, ENDPOINT_OPTION, OUTPUT_OPTION, requireTenant, TENANT_OPTION, type Command } from "../command.ts";
import { CommandError, UsageError } from "../errors.ts";
import { kindArgument, kindNames, kindParams } from "../kinds.ts";
import { manifest, toDocument } from "../manifest.ts";
import { NotExpressible, toGatewayHttpRoute } from "../gateway-api.ts";
import { FORMATS, render, table } from "../output.ts";

const HELP = `Usage: weft get KIND [NAME] [--tenant NAME] [-o table|json|yaml|manifest|gateway]

Shows one resource, or every resource of a kind (the API's pages, all of them).
Kinds: ${kindNames()}
(singular and document names work too: service, Service).

Options:
  -t, --tenant NAME   the tenant (default: the login's); tenants and nodes need none
  -o, --output FMT    table (default: one row per item), json or yaml (the API's
                      objects), or manifest: YAML documents weft apply -f reads
                      back (the fields of the kind's PUT body only), or for
                      httpRoutes gateway: Gateway API HTTPRoute documents
                      (gateway.networking.k8s.io/v1), which weft apply -f reads too
  --endpoint URL      the API (default: the login's, or WEFT_ENDPOINT)
  -h, --help          this help

Examples:
  weft get services --tenant acme
  weft get policy db-ingress -o yaml
  weft get nodes -o json
  weft get httpRoutes web-canary -o gateway        # as a Gateway API HTTPRoute
  weft get services -o manifest > services.yaml   # edit, then weft apply -f services.yaml`;

const GET_FORMATS = [...FORMATS, "manifest", "gateway"] as const;

export const get: Command = {
  name: "get",
  summary: "Show resources of a kind (table, JSON, YAML, or documents to apply)",
  help: HELP,
  options: { ...TENANT_OPTION, ...OUTPUT_OPTION, ...ENDPOINT_OPTION },
  async run(session, values, positionals) {
    const [rawKind, name, ...extra] = positionals;
    if (extra.length) throw new UsageError(`one name at most (got ${positionals.slice(1).join(" ")})`, "get");
    const kind = kindArgument(rawKind, "get");
    const format = choice(values, "output", GET_FORMATS, "get");
    if (format === "manifest" && !kind.routes.put) throw new UsageError(`${kind.plural} are not applied, so they have no manifest`, "get");
    if (format === "gateway" && kind.kind !== "HttpRoute") throw new UsageError(`-o gateway shows httpRoutes only (the Gateway API's HTTPRoute), not ${kind.plural}`, "get");
    const { conn, settings } = connection(session, values);
    const tenant = kind.scope === "tenant" ? requireTenant(values, settings, "get") : undefined;
    const items: Record<string, unknown>[] = [];
    if (name !== undefined) {
      if (!kind.routes.get) throw new UsageError(`${kind.plural} are listed only: weft get ${kind.plural}`, "get");
      items.push(json(await call(conn, kind.routes.get, { params: kindParams(kind, tenant, name) })));
    } else {
      for await (const item of listAll(conn, kind.routes.list, { params: kindParams(kind, tenant) })) items.push(item);
    }
    // One resource by name prints as an object, a list as an array.
    const shown = name !== undefined ? items[0] : items;
    if (format === "manifest") session.out(manifest(items.map((i) => toDocument(kind, i, tenant))));
    else if (format === "gateway") session.out(manifest(items.map((i) => gatewayDocumentOf(i, tenant))));
    else if (format !== "table") session.out(render(format, shown));
    else if (items.length === 0) session.err(`No ${kind.plural}${tenant ? ` in tenant ${tenant}` : ""}.\n`);
    else session.out(table(kind.columns, items));
  },
};

function gatewayDocumentOf(item: Record<string, unknown>, tenant: string | undefined): Record<string, unknown> {
  try {
    return toGatewayHttpRoute(item, tenant);
  } catch (err) {
    if (err instanceof NotExpressible) throw new CommandError(`httpRoute/${String(item.name)} cannot be shown as a Gateway API HTTPRoute: ${err.message} (-o manifest shows it as Weft's document)`);
    throw err;
  }
}
