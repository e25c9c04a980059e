/** Crafted Ethernet frames for BPF_PROG_TEST_RUN. */
import { parseIPv4, protocols } from "@weft/codec";

export interface Ipv4Frame {
  src: string;
  dst: string;
  protocol: number;
  dport?: number;
  sport?: number;
  /** fragment offset in 8-byte units; non-zero means a non-first fragment */
  fragmentOffset?: number;
  /** TCP flags byte; default a bare SYN, the packet that opens a connection */
  tcpFlags?: number;
  /** ICMP type (default 8, echo request) and echo id */
  icmpType?: number;
  icmpId?: number;
}

export const TCP_SYN = 0x02;
export const TCP_ACK = 0x10;
export const TCP_SYN_ACK = TCP_SYN | TCP_ACK;
export const ICMP_ECHO_REPLY = 0;
export const ICMP_ECHO = 8;

const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const ETH_P_ARP = 0x0806;

function ethernet(type: number, payload: number): { frame: Uint8Array; view: DataView } {
  const frame = new Uint8Array(14 + payload);
  const view = new DataView(frame.buffer);
  frame.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]); // locally administered MACs
  view.setUint16(12, type);
  return { frame, view };
}

export function ipv4Frame(p: Ipv4Frame): Uint8Array {
  const l4 = p.protocol === protocols.tcp ? 20 : 8;
  const { frame, view } = ethernet(ETH_P_IP, 20 + l4);
  view.setUint8(14, 0x45);
  view.setUint16(16, 20 + l4);
  view.setUint16(20, p.fragmentOffset ?? 0);
  view.setUint8(22, 64);
  view.setUint8(23, p.protocol);
  view.setUint32(26, parseIPv4(p.src));
  view.setUint32(30, parseIPv4(p.dst));
  if (p.protocol === protocols.tcp || p.protocol === protocols.udp || p.protocol === protocols.sctp) {
    view.setUint16(34, p.sport ?? 40000);
    view.setUint16(36, p.dport ?? 0);
  }
  if (p.protocol === protocols.tcp) view.setUint8(34 + 13, p.tcpFlags ?? TCP_SYN);
  if (p.protocol === protocols.icmp) {
    view.setUint8(34, p.icmpType ?? ICMP_ECHO);
    view.setUint16(38, p.icmpId ?? 0);
  }
  return frame;
}

export const ipv6Frame = (): Uint8Array => ethernet(ETH_P_IPV6, 40).frame;
export const arpFrame = (): Uint8Array => ethernet(ETH_P_ARP, 28).frame;

/** An IPv4 frame cut inside its TCP header. */
export function truncatedFrame(p: Ipv4Frame): Uint8Array {
  return ipv4Frame({ ...p, protocol: protocols.tcp }).subarray(0, 14 + 20 + 2);
}
