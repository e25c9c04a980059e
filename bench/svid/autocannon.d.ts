// The part of autocannon's API this bench uses; the package ships no types.
declare module "autocannon" {
  interface Request {
    method: "GET" | "POST" | "PUT" | "DELETE";
    path: string;
    headers?: Record<string, string>;
    body?: string;
  }
  interface Options {
    url: string;
    connections: number;
    /** Seconds. */
    duration: number;
    /** Stops the run after this many requests in all, even before `duration`. */
    maxOverallRequests?: number;
    requests?: Request[];
  }
  interface Result {
    "2xx": number;
    non2xx: number;
    errors: number;
    timeouts: number;
    /** Seconds. */
    duration: number;
    latency: { p50: number; p99: number };
  }
  export default function autocannon(opts: Options): Promise<Result>;
}
