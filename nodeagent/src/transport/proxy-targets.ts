// SPDX-License-Identifier: Apache-2.0
/**
 * Where the node's L7 proxy (HAProxy) hands the transport a connection for a
 * backend on another node: one unix socket per target, named by the target,
 * in a directory only root may enter. HAProxy's `server` line names the
 * socket (l7/render.ts), so the destination is the socket the connection
 * arrived on, never anything the proxy says. Why not the kernel's steering,
 * as for workloads: bpf_sk_assign works on packets arriving at tc ingress,
 * and the proxy's connections start on this host.
 */
import { join } from "node:path";
import type { Endpoint } from "./endpoint.ts";

/** The directory's name under the agent's state directory. */
export const PROXY_TARGETS_DIR = "proxy-hops";

export const proxyTargetPath = (dir: string, target: Endpoint): string => join(dir, `${target.address}_${target.port}`);

/** A file name proxyTargetPath makes. */
export const PROXY_TARGET_NAME = /^\d{1,3}(\.\d{1,3}){3}_\d{1,5}$/;
