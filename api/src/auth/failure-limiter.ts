import { isIPv6 } from "node:net";

export interface AuthFailureLimits {
  /** Failed authentications (401) one address may have per window; 0 turns the limit off. */
  limit: number;
  windowMs: number;
  /** Addresses remembered at most; past it the oldest window is forgotten first. */
  maxTracked?: number;
}

export const DEFAULT_AUTH_FAILURE_LIMITS = { limit: 30, windowMs: 60_000, maxTracked: 10_000 } as const;

/**
 * The client key of an address: an IPv4 address as it is, an IPv6 address by
 * its /64 (one host usually holds a whole /64, so counting single addresses
 * would not count it at all), an IPv4-mapped IPv6 address as its IPv4 address.
 */
export function clientKey(address: string): string {
  if (!isIPv6(address)) return address;
  const lower = address.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (mapped) return mapped[1]!;
  const [head = "", tail] = lower.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, "")).join(":")}::/64`;
}

interface Window {
  count: number;
  resetAt: number;
}

/**
 * Failed authentications per client address in fixed windows: the first
 * failure opens a window of `windowMs`; once `limit` failures fall in it,
 * requests that need authentication answer 429 until it closes. Memory is
 * bounded: at most `maxTracked` windows, kept in the order they opened (every
 * window is equally long, so also the order they close), and the oldest go
 * first when a new address comes in at the bound. An attacker with more
 * addresses than that can make the limiter forget one; it cannot grow it.
 */
export class AuthFailureLimiter {
  private readonly windows = new Map<string, Window>();
  readonly limit: number;
  readonly windowMs: number;
  readonly maxTracked: number;

  constructor(limits: AuthFailureLimits, private readonly now: () => number = Date.now) {
    this.limit = limits.limit;
    this.windowMs = limits.windowMs;
    this.maxTracked = Math.max(1, limits.maxTracked ?? DEFAULT_AUTH_FAILURE_LIMITS.maxTracked);
  }

  get tracked(): number {
    return this.windows.size;
  }

  /** Seconds until the address may try again (for Retry-After), or 0 when it may now. */
  retryAfter(address: string): number {
    if (this.limit === 0 || this.windows.size === 0) return 0;
    const key = clientKey(address);
    const window = this.windows.get(key);
    if (window === undefined) return 0;
    const now = this.now();
    if (now >= window.resetAt) {
      this.windows.delete(key);
      return 0;
    }
    return window.count >= this.limit ? Math.max(1, Math.ceil((window.resetAt - now) / 1000)) : 0;
  }

  /** Records one failed authentication from the address. */
  failed(address: string): void {
    if (this.limit === 0) return;
    const key = clientKey(address);
    const now = this.now();
    let window = this.windows.get(key);
    if (window === undefined || now >= window.resetAt) {
      if (window !== undefined) this.windows.delete(key);
      this.evict(now);
      window = { count: 0, resetAt: now + this.windowMs };
      this.windows.set(key, window);
    }
    window.count++;
  }

  /** Drops closed windows from the front, then the oldest open ones while at the bound. */
  private evict(now: number): void {
    for (const [key, window] of this.windows) {
      if (now < window.resetAt && this.windows.size < this.maxTracked) break;
      this.windows.delete(key);
    }
  }
}
