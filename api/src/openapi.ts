import type { FastifyInstance } from "fastify";

export const OPENAPI_PATH = new URL("../../openapi/openapi.json", import.meta.url).pathname;

/** The served document, serialized the one way both the file and the drift test use. */
export function openApiDocument(app: FastifyInstance): string {
  return `${JSON.stringify(app.swagger(), null, 2)}\n`;
}
