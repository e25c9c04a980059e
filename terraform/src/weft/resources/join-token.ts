/**
 * weft_join_token: a one-time token for registering a node. The API shows
 * the secret once and has no route to read or revoke a token
 * (api/src/routes/nodes), so read keeps the state and destroy only forgets.
 */
import type { Diagnostic, ProviderContext, ResourceHandler, TfObject } from "../../framework.ts";
import { problemOf, send, succeeded, type Answer } from "../client.ts";
import { deriveFields, toAttribute } from "../fields.ts";
import { requestBody, resourceDescription, responseBody } from "../openapi.ts";
import { planChange } from "../plan.ts";
import { problemDiagnostics, type FieldScope } from "../problems.ts";
import { SCHEMA_VERSION } from "../resource.ts";
import { upgradeState } from "../upgrade.ts";
import { validateObject } from "../validate.ts";
import { hasUnknown, objectFromApi, objectToApi } from "../values.ts";

const PATH = "/v1/join-tokens";

export function joinTokenResource(): ResourceHandler {
  const fields = deriveFields(requestBody(PATH, "post"), responseBody(PATH, "post", "201"), { sensitive: ["token"] });
  const scope: FieldScope = { fields, pathParameters: {} };
  const inputs = fields.filter((f) => f.input).map((f) => f.attribute);
  const computed = fields.filter((f) => f.computed).map((f) => f.attribute);
  const keepAll = Object.fromEntries(computed.map((a) => [a, () => true]));

  const failure = (answer: Answer, what: string): Diagnostic[] => problemDiagnostics(problemOf(answer), scope, `${what} weft_join_token`);
  const mint = (ctx: ProviderContext, planned: TfObject, dryRun: boolean) =>
    send(ctx, "POST", dryRun ? `${PATH}?dryRun=true` : PATH, { body: objectToApi(fields, planned) });

  const handler: ResourceHandler = {
    typeName: "weft_join_token",
    schema: {
      version: SCHEMA_VERSION,
      description: [
        resourceDescription(PATH, "post"),
        "Needs the operator token. labels fixes the labels of the node the token registers (and so which identities' node_selector it matches); name and zone, when set, the only name and zone it may register with. A changed ttl_seconds, labels, name or zone mints a new token.",
        "The API cannot read or revoke a join token: refresh keeps the state as it is, and destroy only removes the token from the state (it stays valid until it is used or expires).",
      ].join(" "),
      attributes: fields.map(toAttribute),
    },

    validate: (config) => validateObject(fields, config),

    async plan({ prior, proposed, config, ctx }) {
      if (proposed === null || config === null) return { planned: null, requiresReplace: [], diagnostics: [] };
      const { planned, action, requiresReplace } = planChange({ fields, replaceOn: inputs, keeps: keepAll }, prior, proposed, config);
      if (action === "none" || action === "update" || hasUnknown(config)) return { planned, requiresReplace, diagnostics: [] };
      const answer = await mint(ctx, planned, true);
      return { planned, requiresReplace, diagnostics: succeeded(answer) ? [] : failure(answer, "dry run of") };
    },

    async apply({ prior, planned, ctx }) {
      // Nothing to revoke: the API has no route for it.
      if (planned === null) return { state: null, diagnostics: [] };
      if (prior !== null) return { state: planned, diagnostics: [] };
      const answer = await mint(ctx, planned, false);
      if (!succeeded(answer)) return { state: null, diagnostics: failure(answer, "minting") };
      const state = objectFromApi(fields, answer.body as Record<string, unknown>);
      for (const a of inputs) state[a] = planned[a] ?? null;
      return { state, diagnostics: [] };
    },

    read: async (current) => ({ state: current, diagnostics: [] }),

    importState: async () => ({
      state: null,
      diagnostics: [{ severity: "error", summary: "weft_join_token cannot be imported", detail: "The API shows a join token's secret only when it is minted, and has no route to read one." }],
    }),

    upgrade: (version, state) => upgradeState(handler.schema, version, state),
  };
  return handler;
}
