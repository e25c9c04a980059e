/**
 * Writes openapi/openapi.json from the route schemas, exactly as the app
 * serves it at /openapi.json (a test fails when the two differ).
 *   npm run openapi
 */
import { writeFileSync } from "node:fs";
import { buildApp } from "../api/src/app.ts";
import { openApiDocument, OPENAPI_PATH } from "../api/src/openapi.ts";

const app = await buildApp({
  port: 0,
  host: "127.0.0.1",
  databaseUrl: undefined,
  dataDir: undefined,
  operatorToken: "weft_op_openapi-generation-only-token",
  logLevel: "silent",
  trustDomainSuffix: "weft.local",
  revocationPollMs: 60_000,
});
try {
  writeFileSync(OPENAPI_PATH, openApiDocument(app));
  console.log(`wrote ${OPENAPI_PATH}`);
} finally {
  await app.close();
}
