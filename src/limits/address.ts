import ipaddr from "ipaddr.js";

/**
 * Client addresses as Haven counts them. An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, which
 * a dual-stack socket reports for an IPv4 client) is the IPv4 address; an IPv6 address is counted
 * by its network prefix (/64 by default): one subscriber line or one host gets a whole /64, so
 * counting single IPv6 addresses would let anyone walk around a limit.
 */

/** The canonical text of an address (IPv4-mapped IPv6 as IPv4); anything unparsable as is. */
export function canonicalAddress(raw: string): string {
  const text = raw.trim().replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  if (!ipaddr.isValid(text)) return raw;
  return ipaddr.process(text).toString();
}

/** What limits count an address under: an IPv4 address, or an IPv6 address's `/prefix` network. */
export function addressKey(address: string, ipv6Prefix = 64): string {
  const canonical = canonicalAddress(address);
  if (!ipaddr.isValid(canonical)) return `other:${canonical}`;
  const ip = ipaddr.parse(canonical);
  if (ip.kind() === "ipv4") return canonical;
  return `${ipaddr.IPv6.networkAddressFromCIDR(`${canonical}/${ipv6Prefix}`).toString()}/${ipv6Prefix}`;
}

/** Whether an address is this host's own (127.0.0.0/8 or ::1, also IPv4-mapped). */
export function isLoopback(address: string): boolean {
  const canonical = canonicalAddress(address);
  return ipaddr.isValid(canonical) && ipaddr.parse(canonical).range() === "loopback";
}
