import type { FastifySwaggerUiOptions } from "@fastify/swagger-ui";

/** The one URL of the OpenAPI document: the README's, the docs page's, the generators'. */
export const OPENAPI_URL = "/openapi.json";
export const DOCS_PREFIX = "/docs";
export const DOCS_TITLE = "Weft control API";

/**
 * Relative: "Try it out" calls whatever address served the page (any port,
 * any host name, behind a proxy too), and the document stays one file that a
 * test can compare byte for byte with what the API serves.
 */
export const SERVERS = [{ url: "/", description: "The address this document was fetched from" }];

/** A weft: warp threads crossed by one weft thread, in the header's 40 px. */
const LOGO = Buffer.from(
  `<svg xmlns="http://www.w3.org/2000/svg" width="150" height="40" viewBox="0 0 150 40" role="img" aria-label="Weft">` +
    `<g stroke="#89bf04" stroke-width="3" stroke-linecap="round">` +
    `<path d="M6 6v28M14 6v28M22 6v28M30 6v28"/></g>` +
    `<path d="M2 12h8m8 0h8M10 20h8m8 0h8M2 28h8m8 0h8" stroke="#fff" stroke-width="4" stroke-linecap="round"/>` +
    `<text x="44" y="29" font-family="sans-serif" font-size="24" font-weight="700" fill="#fff">Weft</text></svg>`,
);

const FAVICON = Buffer.from(
  `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#1b1b1b"/>` +
    `<path d="M8 5v22M16 5v22M24 5v22" stroke="#89bf04" stroke-width="3"/>` +
    `<path d="M4 11h8m8 0h8M4 21h8m8 0h8" stroke="#fff" stroke-width="3"/></svg>`,
);

/**
 * /docs: Swagger UI branded Weft, loading the document from OPENAPI_URL (the
 * one the README names) instead of its own /docs/json, which stays as an
 * alias serving the same document.
 */
export const docsPageOptions: FastifySwaggerUiOptions = {
  routePrefix: DOCS_PREFIX,
  logo: { type: "image/svg+xml", content: LOGO, href: DOCS_PREFIX, target: "_self" },
  theme: {
    title: DOCS_TITLE,
    favicon: [{ filename: "weft.svg", rel: "icon", sizes: "any", type: "image/svg+xml", content: FAVICON }],
  },
  // With `urls` the top bar loads this list, not the plugin's ./json: the page reads OPENAPI_URL.
  uiConfig: { urls: [{ url: OPENAPI_URL, name: DOCS_TITLE }] },
};
