/**
 * Writes openapi/openapi.json from the route schemas, exactly as the app
 * serves it at /openapi.json (a test fails when the two differ).
 *   npm run openapi
 */
import { writeFileSync } from "node:fs";
import { buildApp } from "../api/src/app.ts";
import { inProcessConfig } from "../api/src/config.ts";
import { openApiDocument, OPENAPI_PATH } from "../api/src/openapi.ts";

const app = await buildApp(inProcessConfig({ operatorToken: "weft_op_openapi-generation-only-token" }));
try {
  writeFileSync(OPENAPI_PATH, openApiDocument(app));
  console.log(`wrote ${OPENAPI_PATH}`);
} finally {
  await app.close();
}
