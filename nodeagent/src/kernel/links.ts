// SPDX-License-Identifier: Apache-2.0
/**
 * BPF links and pinned objects by plain fd. A link made with bpf_link_create
 * and pinned on bpffs outlives the process that made it; the next agent
 * reopens it from the pin, replaces its program atomically with
 * bpf_link_update (no instant without a program), and only removing the pin
 * (with no fd left open) or bpf_link_detach takes the program off the hook.
 */
import { check } from "./errors.ts";
import { libbpf } from "./libbpf.ts";

/** Creates a link attaching progFd to target (a cgroup fd, or an ifindex for tcx). Returns the link fd. */
export function createLink(progFd: number, target: number, attachType: number, what: string): number {
  return check(libbpf().linkCreate(progFd, target, attachType, null), `attach ${what}`);
}

/** Pins any BPF object fd (map, program, link) at path on bpffs. */
export function pinObject(fd: number, path: string): void {
  check(libbpf().objPin(fd, path), `pin ${path}`);
}

/** Opens a pinned object; the caller closes the fd. */
export function openPinned(path: string): number {
  return check(libbpf().objGet(path), `open pinned object ${path}`);
}

/** Atomically swaps the program of a live link. */
export function updateLink(linkFd: number, progFd: number, what: string): void {
  check(libbpf().linkUpdate(linkFd, progFd, null), `replace the program of ${what}`);
}

/** Takes a link's program off its hook even while pins and fds of the link remain. */
export function detachLink(linkFd: number, what: string): void {
  check(libbpf().linkDetach(linkFd), `detach ${what}`);
}

export interface LinkInfo {
  type: number;
  id: number;
  progId: number;
}

// struct bpf_link_info { __u32 type; __u32 id; __u32 prog_id; union {...} } — the union is up to 48 bytes here.
export function linkInfo(fd: number): LinkInfo {
  const info = new Uint8Array(64);
  const len = [info.length];
  check(libbpf().objGetInfoByFd(fd, info, len), `read link info of fd ${fd}`);
  const v = new DataView(info.buffer);
  return { type: v.getUint32(0, true), id: v.getUint32(4, true), progId: v.getUint32(8, true) };
}

export interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

// struct bpf_map_info { __u32 type, id, key_size, value_size, max_entries, map_flags; char name[16]; ... }
export function mapInfo(fd: number): MapInfo {
  const info = new Uint8Array(96);
  const len = [info.length];
  check(libbpf().objGetInfoByFd(fd, info, len), `read map info of fd ${fd}`);
  const v = new DataView(info.buffer);
  const u = (o: number) => v.getUint32(o, true);
  return { type: u(0), id: u(4), keySize: u(8), valueSize: u(12), maxEntries: u(16), flags: u(20) };
}

/** The kernel id of a program, map or link fd (every bpf_*_info starts with type, id). */
export function objectId(fd: number): number {
  const info = new Uint8Array(256);
  const len = [info.length];
  check(libbpf().objGetInfoByFd(fd, info, len), `read info of fd ${fd}`);
  return new DataView(info.buffer).getUint32(4, true);
}
