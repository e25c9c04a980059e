// SPDX-License-Identifier: Apache-2.0
/** The transport's ports and mark as the ABI fixes them (bpf/include/weft_abi.h, through the codec): the datapath steers to these. */
import { constants } from "@weft/codec";
import type { Endpoint } from "./endpoint.ts";

/** A host-order IPv4 of the ABI as dotted text. */
const dotted = (n: number) => [24, 16, 8, 0].map((shift) => (n >>> shift) & 0xff).join(".");

/** Where tc + bpf_sk_assign deliver steered connections. */
export const OUTBOUND_LISTENER: Endpoint = { address: dotted(constants.TRANSPORT_OUTBOUND_ADDR), port: constants.TRANSPORT_OUTBOUND_PORT };
/** Where peer transports connect (HBONE's 15008). */
export const INBOUND_PORT: number = constants.TRANSPORT_INBOUND_PORT;
/** SO_MARK of every socket the transport opens or listens on. */
export const MARK_TRANSPORT: number = constants.MARK_TRANSPORT;
