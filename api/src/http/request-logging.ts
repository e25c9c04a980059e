import { LogController, type FastifyReply, type FastifyRequest } from "fastify";

/**
 * Routes that load balancers, kubelets and monitors call every few seconds:
 * at info they would bury every other request line.
 */
export const PROBE_ROUTES: ReadonlySet<string> = new Set(["/healthz", "/readyz"]);

const isProbe = (request: FastifyRequest) => PROBE_ROUTES.has(request.routeOptions.url ?? "");

/**
 * Fastify's request lines ("incoming request", "request completed"), with
 * probes logged at debug instead of info. A probe that errors still logs at
 * error: a failing readiness check is news.
 */
export class ProbeQuietLogController extends LogController {
  override incomingRequest(request: FastifyRequest, reply: FastifyReply, metadata?: Record<string, unknown>): void {
    if (!isProbe(request)) return super.incomingRequest(request, reply, metadata);
    if (!this.isLogDisabled(request)) request.log.debug({ req: request }, "incoming request");
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply, metadata?: Record<string, unknown>): void {
    if (error || !isProbe(request)) return super.requestCompleted(error, request, reply, metadata);
    if (!this.isLogDisabled(request)) reply.log.debug({ res: reply, responseTime: reply.elapsedTime }, "request completed");
  }
}
