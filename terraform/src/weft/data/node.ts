/** weft_node: a registered node, desired against applied datapath state. Needs the operator token. */
import type { DataSourceHandler } from "../../framework.ts";
import { problemOf, send, succeeded } from "../client.ts";
import { deriveFields, shapeOf, syntheticField, toAttribute } from "../fields.ts";
import { operation, responseBody } from "../openapi.ts";
import { problemDiagnostics } from "../problems.ts";
import { validateObject } from "../validate.ts";
import { objectFromApi } from "../values.ts";

const PATH = "/v1/nodes/{node}";

export function nodeDataSource(): DataSourceHandler {
  const param = operation(PATH, "get").parameters?.find((p) => p.name === "node")?.schema;
  const nameShape = param ? shapeOf(param, "input") : undefined;
  const name = syntheticField("name", "required", "The node's name (a DNS label)", nameShape?.kind === "scalar" ? nameShape.rules : {});
  const answerFields = deriveFields(null, responseBody(PATH, "get", "200"), { omit: ["name"] });
  const fields = [name, ...answerFields];
  const scope = { fields, pathParameters: { node: "name" } };
  return {
    typeName: "weft_node",
    schema: { version: 0, description: `${operation(PATH, "get").summary ?? ""}.`, attributes: fields.map(toAttribute) },
    validate: (config) => validateObject(fields, config),
    async read(config, ctx) {
      const node = String(config.name);
      const answer = await send(ctx, "GET", PATH.replace("{node}", encodeURIComponent(node)));
      if (answer.status === 404) {
        return { state: null, diagnostics: [{ severity: "error", summary: "weft_node: not found", detail: `node "${node}" is not registered at ${ctx.endpoint}`, attribute: [{ attribute: "name" }] }] };
      }
      if (!succeeded(answer)) return { state: null, diagnostics: problemDiagnostics(problemOf(answer), scope, `reading weft_node "${node}"`) };
      return { state: { ...objectFromApi(answerFields, answer.body as Record<string, unknown>), name: node }, diagnostics: [] };
    },
  };
}
