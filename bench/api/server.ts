/**
 * One side of bench/api, in its own process so each server gets the machine
 * to itself: `weft` starts the real API (embedded PGlite, or DATABASE_URL)
 * with a tenant and a read token; `bare` starts a plain Fastify route that
 * answers the same payload and ETag, with the same 304 handling.
 * Prints one JSON line when ready.
 */
import Fastify from "fastify";
import { buildApp } from "../../api/src/app.ts";
import { inProcessConfig } from "../../api/src/config.ts";

const mode = process.argv[2];
const OPERATOR = "weft_op_bench-operator-token-0123456789";

if (mode === "weft") {
  const app = await buildApp(
    inProcessConfig({ operatorToken: OPERATOR, databaseUrl: process.env.DATABASE_URL || undefined, trustDomainSuffix: "bench.weft" }),
  );
  const tenant = `bench-${process.pid}`;
  const op = { authorization: `Bearer ${OPERATOR}` };
  await app.inject({ method: "POST", url: "/v1/tenants", headers: op, payload: { name: tenant, displayName: "Bench" } });
  const minted = await app.inject({
    method: "POST",
    url: `/v1/tenants/${tenant}/tokens`,
    headers: op,
    payload: { name: "reader", scopes: ["read"] },
  });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const address = app.server.address() as { port: number };
  console.log(JSON.stringify({ port: address.port, path: `/v1/tenants/${tenant}`, token: minted.json().token }));
} else if (mode === "bare") {
  const payload = process.env.BENCH_PAYLOAD!;
  const etag = process.env.BENCH_ETAG!;
  const app = Fastify({ logger: false });
  app.get("/v1/tenants/:tenant", async (request, reply) => {
    reply.header("etag", etag);
    if (request.headers["if-none-match"] === etag) return reply.code(304).send();
    return reply.type("application/json; charset=utf-8").send(payload);
  });
  await app.listen({ port: 0, host: "127.0.0.1" });
  console.log(JSON.stringify({ port: (app.server.address() as { port: number }).port }));
} else {
  console.error("usage: server.ts weft|bare");
  process.exit(2);
}

// Exit through process.exit so that --cpu-prof and friends write their files.
process.on("SIGTERM", () => process.exit(0));
