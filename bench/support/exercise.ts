/** Traffic before a memory figure: the process measured has served both kinds of connection. */
import { drive } from "./load.ts";

/** 2 s keep-alive, then 2 s a new connection per request (wrk, 16 connections); every answer must be a 2xx/3xx. */
export async function exercise(what: string, url: string, exec: string[]): Promise<void> {
  for (const headers of [{}, { connection: "close" }] as Record<string, string>[]) {
    const r = await drive(url, headers, { connections: 16, seconds: 2, exec });
    if (r.requests === 0 || r.non2xx3xx > 0) throw new Error(`${what}: ${r.requests} answers, ${r.non2xx3xx} not 2xx/3xx`);
  }
}
