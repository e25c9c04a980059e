/**
 * Drift check from the kernel's side: the compiled objects' BTF (what the
 * verifier and bpftool see) against the layouts and map table the codec
 * reports. Both come from the same header, so this fails only if the build
 * went wrong, the objects are stale, or someone bypassed the header.
 */
import { execFileSync } from "node:child_process";
import { layouts, maps, type MapSpec } from "@weft/codec";
import { describe, expect, it } from "vitest";
import { commandUnavailableReason, skipWithout } from "../support/prerequisites.ts";
import { objectPath } from "../support/kernel.ts";
import { L7_LISTEN_MAP, L7_LISTEN_SHAPE } from "../../nodeagent/src/loader/index.ts";

interface BtfType {
  id: number;
  kind: string;
  name: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: { name: string; type_id: number; bits_offset: number }[];
}

const OBJECTS = ["weft_policy", "weft_sock"];
// enum bpf_map_type values from the kernel UAPI.
const MAP_TYPES: Record<MapSpec["kind"], number> = { hash: 1, array: 2, percpu_array: 6, lru_hash: 9, lpm_trie: 11, ringbuf: 27 };

class Btf {
  private readonly byId = new Map<number, BtfType>();
  constructor(readonly object: string) {
    const json = JSON.parse(execFileSync("bpftool", ["-j", "btf", "dump", "file", objectPath(object)], { encoding: "utf8" })) as { types: BtfType[] };
    for (const t of json.types) this.byId.set(t.id, t);
  }
  type(id: number): BtfType {
    const t = this.byId.get(id);
    if (!t) throw new Error(`${this.object}: no BTF type ${id}`);
    return t;
  }
  /** Follows typedefs and qualifiers. */
  resolve(id: number): BtfType {
    let t = this.type(id);
    while (["TYPEDEF", "VOLATILE", "CONST", "RESTRICT"].includes(t.kind)) t = this.type(t.type_id!);
    return t;
  }
  sizeOf(id: number): number {
    const t = this.resolve(id);
    if (t.kind === "ARRAY") return this.sizeOf(t.type_id!) * t.nr_elems!;
    if (t.size === undefined) throw new Error(`${this.object}: type ${id} (${t.kind}) has no size`);
    return t.size;
  }
  structs(): BtfType[] {
    return [...this.byId.values()].filter((t) => t.kind === "STRUCT" && t.name.startsWith("weft_"));
  }
  /** The .maps variables as {name, type, max_entries, key, value}; a ring buffer has no key or value. */
  maps(): { name: string; type: number; maxEntries: number; key: BtfType | null; value: BtfType | null }[] {
    return [...this.byId.values()]
      .filter((t) => t.kind === "VAR" && this.type(t.type_id!).members?.some((m) => m.name === "max_entries"))
      .map((v) => {
        const def = this.type(v.type_id!);
        const optional = (name: string) => {
          const m = def.members!.find((x) => x.name === name);
          return m ? this.type(this.type(m.type_id).type_id!) : null; // each is a pointer
        };
        const member = (name: string) => {
          const t = optional(name);
          if (!t) throw new Error(`${this.object}: map ${v.name} has no ${name}`);
          return t;
        };
        return { name: v.name, type: member("type").nr_elems!, maxEntries: member("max_entries").nr_elems!, key: optional("key"), value: optional("value") };
      });
  }
}

const reason = commandUnavailableReason("bpftool", ["version"], "apt-get install bpftool");

describe.skipIf(skipWithout("bpftool", reason))("BTF of the compiled objects matches the codec", () => {
  const btfs = reason === null ? OBJECTS.map((o) => new Btf(o)) : [];

  it("lays out every ABI struct exactly as the codec does", () => {
    const codecStructs = Object.values(layouts).filter((l) => l.name.startsWith("struct "));
    const seen = new Set<string>();
    for (const btf of btfs) {
      for (const s of btf.structs()) {
        const name = `struct ${s.name}`;
        const layout = layouts[name];
        expect(layout, `${btf.object}: ${name} has no codec layout`).toBeDefined();
        seen.add(name);
        expect({ struct: name, size: s.size }).toEqual({ struct: name, size: layout!.size });
        const fromBtf = s.members!.map((m) => ({ name: m.name, offset: m.bits_offset / 8, size: btf.sizeOf(m.type_id) }));
        const fromCodec = layout!.fields.map((f) => ({ name: f.name, offset: f.offset, size: f.size }));
        expect(fromCodec, `${btf.object}: ${name}`).toEqual(fromBtf);
      }
    }
    expect([...seen].sort()).toEqual(codecStructs.map((l) => l.name).sort());
  });

  it("declares every map with the codec's name, type, key, value and size", () => {
    const seen = new Set<string>();
    for (const btf of btfs) {
      for (const m of btf.maps()) {
        const sizeOf = (t: BtfType | null) => (t === null ? 0 : btf.sizeOf(t.id));
        if (m.name === L7_LISTEN_MAP) {
          // The one map outside the codec's table (a sockmap the agent writes by fd): the loader's shape.
          expect({ type: m.type, keySize: sizeOf(m.key), valueSize: sizeOf(m.value), maxEntries: m.maxEntries }).toEqual(L7_LISTEN_SHAPE);
          continue;
        }
        const spec = Object.values(maps).find((s) => s.name === m.name);
        expect(spec, `${btf.object}: map ${m.name} is not in the codec's table`).toBeDefined();
        seen.add(m.name);
        const nameOf = (t: BtfType | null) => (t === null ? null : t.kind === "STRUCT" ? `struct ${t.name}` : t.name);
        expect({ map: m.name, type: m.type, maxEntries: m.maxEntries, key: nameOf(m.key), keySize: sizeOf(m.key), value: nameOf(m.value), valueSize: sizeOf(m.value) }).toEqual({
          map: spec!.name,
          type: MAP_TYPES[spec!.kind],
          maxEntries: spec!.maxEntries,
          key: spec!.keyStruct,
          keySize: spec!.keySize,
          value: spec!.valueStruct,
          valueSize: spec!.valueSize,
        });
      }
    }
    expect([...seen].sort()).toEqual(Object.values(maps).map((s) => s.name).sort());
  });
});
