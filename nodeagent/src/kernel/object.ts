// SPDX-License-Identifier: Apache-2.0
/**
 * A BPF object file through its life: open, share pinned maps, load (the
 * verifier runs here), find programs and maps, close. Pinned maps are reused
 * before load so a reloaded program sees the state the agent already wrote.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { check, checkPtr } from "./errors.ts";
import { libbpf } from "./libbpf.ts";

type Ptr = unknown;

const BTF_KIND_STRUCT = 4;

/** A map's definition as an object declares it (enum bpf_map_type, sizes in bytes). */
export interface MapDefinition {
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

export interface LoadOptions {
  /** bpffs directory: maps pinned there are reused, the others pinned there after load. */
  pinDir?: string;
  /** Map names to share through pinDir (from @weft/codec's mapNames). */
  pinnedMaps?: readonly string[];
}

export class BpfObject {
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly obj: Ptr,
  ) {}

  /**
   * Opens without loading: maps and BTF can be inspected (mapDefinition,
   * btfStructSize) before anything reaches the kernel; programs cannot run.
   */
  static open(path: string): BpfObject {
    return new BpfObject(path, checkPtr(libbpf().objectOpenFile(path, null), `open BPF object ${path}`));
  }

  /** Open, reuse pinned maps, load, pin the maps that were not pinned yet. */
  static load(path: string, options: LoadOptions = {}): BpfObject {
    const lib = libbpf();
    const obj = checkPtr(lib.objectOpenFile(path, null), `open BPF object ${path}`);
    const self = new BpfObject(path, obj);
    try {
      const toPin: string[] = [];
      const fdsToClose: number[] = [];
      try {
        for (const name of options.pinDir ? (options.pinnedMaps ?? []) : []) {
          const map = lib.findMap(obj, name);
          if (map === null) continue; // this object does not use that map
          const pin = join(options.pinDir!, name);
          if (existsSync(pin)) {
            const fd = check(lib.objGet(pin), `open pinned map ${pin}`);
            fdsToClose.push(fd);
            check(lib.mapReuseFd(map, fd), `reuse pinned map ${pin}`);
          } else {
            toPin.push(name);
          }
        }
        check(lib.objectLoad(obj), `load BPF object ${path}`);
      } finally {
        // bpf_map__reuse_fd dups the fd, so ours can go whatever happened.
        for (const fd of fdsToClose) lib.close(fd);
      }
      for (const name of toPin) {
        const pin = join(options.pinDir!, name);
        check(lib.mapPin(self.mapPtr(name), pin), `pin map ${name} at ${pin}`);
      }
      return self;
    } catch (err) {
      self.close();
      throw err;
    }
  }

  programPtr(name: string): Ptr {
    return checkPtr(libbpf().findProgram(this.live(), name), `find program ${name} in ${this.path}`);
  }

  programFd(name: string): number {
    return check(libbpf().programFd(this.programPtr(name)), `get fd of program ${name}`);
  }

  mapPtr(name: string): Ptr {
    return checkPtr(libbpf().findMap(this.live(), name), `find map ${name} in ${this.path}`);
  }

  mapFd(name: string): number {
    return check(libbpf().mapFd(this.mapPtr(name)), `get fd of map ${name}`);
  }

  /** The attach type libbpf derived from the program's SEC() name (enum bpf_attach_type). */
  expectedAttachType(program: string): number {
    return libbpf().programExpectedAttachType(this.programPtr(program));
  }

  /** A map as this object declares it, or null when the object has no such map. */
  mapDefinition(name: string): MapDefinition | null {
    const lib = libbpf();
    const map = lib.findMap(this.live(), name);
    if (map === null) return null;
    return { type: lib.mapType(map), keySize: lib.mapKeySize(map), valueSize: lib.mapValueSize(map), maxEntries: lib.mapMaxEntries(map) };
  }

  /** Size of `struct <name>` in the object's BTF, or null when the BTF has no such struct. */
  btfStructSize(name: string): number | null {
    const lib = libbpf();
    const btf = lib.objectBtf(this.live());
    if (btf === null) throw new Error(`failed to read BTF of ${this.path}: the object carries none (built without -g?)`);
    const id = lib.btfFindByNameKind(btf, name, BTF_KIND_STRUCT);
    if (id < 0) return null;
    return Number(check(Number(lib.btfResolveSize(btf, id)), `resolve the size of struct ${name} in ${this.path}`));
  }

  /** Frees programs and map fds; pinned maps and live links stay. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    libbpf().objectClose(this.obj);
  }

  private live(): Ptr {
    if (this.closed) throw new Error(`failed to use BPF object ${this.path}: already closed`);
    return this.obj;
  }
}
