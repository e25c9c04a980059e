/**
 * What a transaction-mode pooler (PgBouncer) cannot carry: state a statement
 * leaves on its server connection past its transaction, which the next
 * client handed that connection inherits (or which the same client loses on
 * its next transaction). Statements are recorded as node-postgres sends them,
 * so a check sees exactly what went through the pooler.
 */
import pg from "pg";

/** Each pattern and why it outlives the transaction. */
const SESSION_STATE: { pattern: RegExp; why: string }[] = [
  // Statement starts only (text start or after a semicolon): "UPDATE t SET x" is no SET.
  // SET LOCAL and SET TRANSACTION end with the transaction; every other SET stays with the session.
  { pattern: /(^|;)\s*SET\s+(?!LOCAL\b|TRANSACTION\b|CONSTRAINTS\b)/i, why: "session-level SET" },
  { pattern: /(^|;)\s*RESET\b/i, why: "RESET of a session setting" },
  { pattern: /\bset_config\s*\([^)]*,\s*false\s*\)/i, why: "set_config(..., false) is session-level" },
  { pattern: /(^|;)\s*PREPARE\b/i, why: "SQL-level prepared statement" },
  { pattern: /(^|;)\s*(UN)?LISTEN\b/i, why: "LISTEN belongs to a session" },
  { pattern: /\bpg_(try_)?advisory_lock(_shared)?\s*\(/i, why: "session-level advisory lock" },
  { pattern: /\bCREATE\s+(GLOBAL\s+|LOCAL\s+)?TEMP(ORARY)?\s+TABLE\b/i, why: "temporary table" },
  { pattern: /\bWITH\s+HOLD\b/i, why: "cursor held past its transaction" },
  { pattern: /(^|;)\s*DISCARD\b/i, why: "DISCARD of session state" },
];

export interface SentStatement {
  text: string;
  /** node-postgres's named (server-side) prepared statement, which a transaction-mode pooler cannot keep. */
  name?: string | undefined;
}

/** Why a statement leaves session state behind, or null when it does not. */
export function sessionStateIn(s: SentStatement): string | null {
  if (s.name) return `named prepared statement "${s.name}"`;
  return SESSION_STATE.find(({ pattern }) => pattern.test(s.text))?.why ?? null;
}

/**
 * Records every statement any node-postgres client in this process sends to
 * 127.0.0.1:`port` until stop() is called.
 */
export function recordStatements(port: number): { statements: SentStatement[]; stop(): void } {
  const statements: SentStatement[] = [];
  const proto = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const original = proto.query;
  proto.query = function (this: { port?: number }, ...args: unknown[]) {
    if (this.port === port) {
      const q = args[0] as string | { text?: string; name?: string };
      statements.push(typeof q === "string" ? { text: q } : { text: q.text ?? "", name: q.name });
    }
    return original.apply(this, args);
  };
  return { statements, stop: () => void (proto.query = original) };
}
