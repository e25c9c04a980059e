import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { OPENAPI_PATH } from "../../api/src/openapi.ts";
import { startApi, tenantWithToken } from "../support/api.ts";
import { skipWithout } from "../support/prerequisites.ts";

// The OpenAPI document as a client generator sees it: openapi-typescript
// turns it into types, openapi-fetch into calls, and tsc (the project's)
// must accept a correct client and refuse a miswritten one. The packages
// live in the test/openapi-client workspace: openapi-typescript needs
// TypeScript 5's compiler API beside the project's TypeScript 7.

const CLIENT_DIR = new URL("../openapi-client/", import.meta.url).pathname;
const ROOT = new URL("../../", import.meta.url).pathname;
const fromClient = createRequire(join(CLIENT_DIR, "package.json"));

function packageDir(name: string): string | null {
  try {
    return dirname(fromClient.resolve(`${name}/package.json`));
  } catch {
    return null;
  }
}

const generator = packageDir("openapi-typescript");
const fetchClient = packageDir("openapi-fetch");
const skip = skipWithout(
  "openapi-typescript and openapi-fetch",
  generator && fetchClient ? null : "not installed (npm ci installs them with the test/openapi-client workspace)",
);

/** Each edit of client.ts a type checker must refuse, and the error it must name. */
const MISWRITTEN: [string, [string, string], RegExp][] = [
  ["a body field of the wrong type", ['path: "/ns/prod/sa/web"', "path: 42"], /TS2322/],
  ["a body field the schema does not have", ['selectors: { app: "web" } }', 'selectors: { app: "web" }, colour: "red" }'], /TS2353/],
  ["a missing path parameter", ["params: { path: { tenant, name: \"web\" } }, // PATH PARAMS", "params: { path: { tenant } }, // PATH PARAMS"], /TS2741|TS2345|TS2769/],
  ["a read under the wrong type", ["const securityIdentity: number = put.data.securityIdentity", "const securityIdentity: string = put.data.securityIdentity"], /TS2322/],
  ["a JWT-SVID audience that is not a list", ['body: { audience: ["billing"] }, // JWT BODY', 'body: { audience: "billing" }, // JWT BODY'], /TS2322/],
  ["a route the document does not have", ['"/v1/tenants/{tenant}/identities/{name}/jwt-svids"', '"/v1/tenants/{tenant}/identities/{name}/jwt"'], /TS2345|TS2769|TS2322/],
];

describe.skipIf(skip)("a client generated from openapi/openapi.json (openapi-typescript + openapi-fetch)", () => {
  let dir: string;

  /** Writes client.ts (edited) beside the generated types and runs tsc; its output, or "" when it compiles. */
  function compile(edit?: [string, string]): string {
    const source = readFileSync(join(CLIENT_DIR, "client.ts"), "utf8");
    if (edit && !source.includes(edit[0])) throw new Error(`client.ts no longer contains ${edit[0]}`);
    writeFileSync(join(dir, "client.ts"), edit ? source.replace(edit[0], edit[1]) : source);
    try {
      execFileSync(join(ROOT, "node_modules/.bin/tsc"), ["-p", dir], { encoding: "utf8", stdio: "pipe" });
      return "";
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string };
      return `${e.stdout ?? ""}${e.stderr ?? ""}` || String(err);
    }
  }

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "weft-openapi-client-"));
    mkdirSync(join(dir, "node_modules"));
    symlinkSync(fetchClient!, join(dir, "node_modules", "openapi-fetch"));
    execFileSync(process.execPath, [join(generator!, "bin/cli.js"), OPENAPI_PATH, "--output", join(dir, "schema.d.ts")], {
      stdio: "pipe",
      env: { ...process.env, REDOCLY_TELEMETRY: "off" },
    });
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", lib: ["ES2023", "DOM"], types: [], strict: true, noEmit: true, skipLibCheck: false },
        files: ["client.ts"],
      }),
    );
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("names the schemas and operations (Identity, putIdentity, mintX509Svid) instead of inventing names", () => {
    const types = readFileSync(join(dir, "schema.d.ts"), "utf8");
    for (const name of ["Identity", "PutIdentityRequest", "ListIdentitiesResponse", "Problem", "X509Svid", "SpiffeBundle"]) {
      expect(types).toMatch(new RegExp(`^ {8}${name}: \\{$`, "m"));
    }
    for (const id of ["listIdentities", "getIdentity", "putIdentity", "deleteIdentity", "mintX509Svid", "mintJwtSvid", "listTenants", "createTenant"]) {
      expect(types).toMatch(new RegExp(`^ {4}${id}: \\{$`, "m"));
    }
    expect(types).not.toMatch(/postTenantsTenant|getTenantsTenant/);
  });

  it("compiles a correct client with the project's tsc", () => {
    expect(compile()).toBe("");
  });

  for (const [what, edit, error] of MISWRITTEN) {
    it(`refuses ${what}`, () => {
      expect(compile(edit)).toMatch(error);
    });
  }

  describe("run against the API", () => {
    let app: WeftApp;
    let base: string;
    beforeAll(async () => {
      app = await startApi("pglite");
      base = await app.listen({ port: 0, host: "127.0.0.1" });
    });
    afterAll(async () => app?.close());

    it("does what its types say", async () => {
      const { tenant, token } = await tenantWithToken(app);
      copyFileSync(join(CLIENT_DIR, "client.ts"), join(dir, "client.ts"));
      // Its types live in the generated schema, outside this project's program: described here by hand.
      const client = (await import(join(dir, "client.ts"))) as {
        walk(base: string, token: string, tenant: string): Promise<{ identity: unknown; listed: string[]; jwtSvid: string; missingStatus: number }>;
      };
      const result = await client.walk(base, token, tenant);
      expect(result.identity).toMatchObject({ name: "web", path: "/ns/prod/sa/web", selectors: { app: "web" } });
      expect(result.listed).toEqual(["web"]);
      expect(result.jwtSvid.split(".")).toHaveLength(3);
      expect(result.missingStatus).toBe(404);
    });
  });
});
