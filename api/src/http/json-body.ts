// The JSON body parser: Fastify's own (secure-json-parse on a string decoded
// leniently) would store U+FFFD for invalid UTF-8, let the last of two equal
// keys win, and parse any depth the body limit allows. This one refuses each
// of those with a 400 (413 for too many keys) before JSON.parse runs, in one
// linear pass that skips through strings with indexOf.
import type { FastifyRequest } from "fastify";
import { HttpProblem } from "./problem.ts";

export interface JsonLimits {
  /** Deepest nesting of objects and arrays (WEFT_JSON_MAX_DEPTH). */
  maxDepth: number;
  /** Object keys in a whole body, at every level (WEFT_JSON_MAX_KEYS). */
  maxKeys: number;
}

export const DEFAULT_JSON_LIMITS: JsonLimits = { maxDepth: 64, maxKeys: 10_000 };

/** Bodies this app's parser was handed: tests show that a refused stranger's body never got here. */
export interface JsonBodyStats {
  parsed: number;
}

const problem = (status: number, detail: string, field: string, message: string) =>
  new HttpProblem(status, detail, [{ field, message }]);

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

/** One open object (keys set) or array (keys undefined) on the way down. */
interface Frame {
  keys: Set<string> | undefined;
  key: string;
  index: number;
}

/** An escaped UTF-16 surrogate (\uD800-\uDFFF): only then can a decoded string be ill-formed. */
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;


/** Where the parser is, as body.a.0.b: each open container's current key or index; `key` replaces the innermost object's. */
const fieldOf = (frames: Frame[], key?: string): string => {
  const steps = frames.map((f) => (f.keys ? f.key : String(f.index)));
  if (key !== undefined) steps[steps.length - 1] = key;
  return ["body", ...steps].join(".");
};

/**
 * Checks the text of a body before it is parsed: nesting depth, key count,
 * duplicate keys (compared after unescaping, so "a" and "\u0061" are one key),
 * `__proto__` keys, and escapes that decode to unpaired surrogates (which
 * Postgres would receive as U+FFFD). Malformed JSON is left to JSON.parse.
 */
export function checkJsonText(text: string, limits: JsonLimits): void {
  const frames: Frame[] = [];
  let keys = 0;
  let expectKey = false;
  let nextBackslash = text.indexOf("\\");
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // The closing quote is the next one not preceded by an odd run of backslashes.
      let end = text.indexOf('"', i + 1);
      while (end !== -1) {
        let k = end - 1;
        while (k > i && text.charCodeAt(k) === BACKSLASH) k--;
        if ((end - 1 - k) % 2 === 0) break;
        end = text.indexOf('"', end + 1);
      }
      if (end === -1) return; // unterminated: JSON.parse says so
      if (nextBackslash !== -1 && nextBackslash < i) nextBackslash = text.indexOf("\\", i);
      const escaped = nextBackslash !== -1 && nextBackslash < end;
      const frame = frames[frames.length - 1];
      if (escaped) {
        const raw = text.slice(i, end + 1);
        if (SURROGATE_ESCAPE.test(raw)) {
          let decoded: string | undefined;
          try {
            decoded = JSON.parse(raw) as string;
          } catch {
            return; // a bad escape: JSON.parse says so
          }
          if (!decoded.isWellFormed()) {
            throw problem(400, "the JSON body has a \\u escape of an unpaired UTF-16 surrogate", fieldOf(frames), "must not contain an unpaired surrogate");
          }
        }
      }
      if (expectKey && frame?.keys) {
        let key = text.slice(i + 1, end);
        if (escaped) {
          try {
            key = JSON.parse(text.slice(i, end + 1)) as string;
          } catch {
            return;
          }
        }
        if (key === "__proto__") throw problem(400, 'the JSON body has a "__proto__" key', fieldOf(frames, key), "is not an allowed key");
        if (frame.keys.has(key)) {
          throw problem(400, `the JSON body has the key "${key}" twice in one object`, fieldOf(frames, key), "is a duplicate key");
        }
        frame.keys.add(key);
        frame.key = key;
        expectKey = false;
      }
      i = end;
      continue;
    }
    switch (c) {
      case OPEN_OBJECT:
      case OPEN_ARRAY:
        if (frames.length >= limits.maxDepth) {
          throw problem(400, `the JSON body is nested deeper than ${limits.maxDepth} levels`, fieldOf(frames), `must not nest deeper than ${limits.maxDepth} levels`);
        }
        frames.push({ keys: c === OPEN_OBJECT ? new Set() : undefined, key: "", index: 0 });
        expectKey = c === OPEN_OBJECT;
        break;
      case CLOSE_OBJECT:
      case CLOSE_ARRAY:
        frames.pop();
        expectKey = false;
        break;
      case COMMA: {
        const frame = frames[frames.length - 1];
        if (frame && !frame.keys) frame.index++;
        expectKey = frame?.keys !== undefined;
        break;
      }
      case COLON:
        if (++keys > limits.maxKeys) {
          throw problem(413, `the JSON body has more than ${limits.maxKeys} keys`, "body", `must have at most ${limits.maxKeys} keys`);
        }
        break;
      default:
        break;
    }
  }
}

/**
 * The `application/json` parser for Fastify (parseAs: "buffer"): strict
 * UTF-8, then checkJsonText, then JSON.parse. Every refusal is a problem
 * document. Only ever reached after the guard let the request in (onRequest).
 */
export function jsonBodyParser(limits: JsonLimits, stats: JsonBodyStats) {
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  return (_request: FastifyRequest, body: Buffer, done: (err: Error | null, body?: unknown) => void): void => {
    stats.parsed++;
    if (body.length === 0) {
      done(problem(400, "Body cannot be empty when content-type is set to 'application/json'", "body", "is required"));
      return;
    }
    let text: string;
    try {
      // A leading byte order mark is dropped, as secure-json-parse did.
      text = utf8.decode(body);
    } catch {
      done(problem(400, "the body is not valid UTF-8", "body", "must be UTF-8"));
      return;
    }
    try {
      checkJsonText(text, limits);
    } catch (err) {
      done(err as Error);
      return;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      done(problem(400, "Body is not valid JSON but content-type is set to 'application/json'", "body", (err as Error).message));
      return;
    }
    done(null, value);
  };
}
