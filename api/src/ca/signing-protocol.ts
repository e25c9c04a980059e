// Messages between the signing pool and its workers (structured clone: a
// KeyObject inside a template crosses as a KeyObject).
import type { FieldError } from "./errors.ts";
import type { LeafJob } from "./leaf-issuer.ts";
import type { IssuedLeaf, LeafTemplate } from "./x509.ts";

export type ToWorker =
  | { type: "template"; slotKey: string; template: LeafTemplate }
  | { type: "forget"; slotKey: string }
  | { type: "job"; id: number; slotKey: string; job: Omit<LeafJob, "slotKey" | "template"> };

export type FromWorker =
  | { id: number; ok: true; leaf: IssuedLeaf }
  | { id: number; ok: false; input: FieldError[] }
  | { id: number; ok: false; message: string };
