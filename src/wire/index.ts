/**
 * The wire layer: pure parse/emit of Ethernet (802.1Q), ARP, IPv4, IPv6, ICMPv6 NDP, TCP and
 * checksums. Views (`*View`) give bounds-checked raw fields that return undefined on short input;
 * `parse*` functions return validated reprs or an error, and never throw on any input;
 * `emit*` functions build bytes from a repr (throwing RangeError only on an invalid repr).
 * No I/O, no imports from the rest of linkgate.
 */
export * from './result.js';
export * from './bytes.js';
export * from './checksum.js';
export * from './address.js';
export * from './ethernet.js';
export * from './arp.js';
export * from './ipv4.js';
export * from './ipv6.js';
export * from './icmpv6.js';
export * from './tcp.js';
