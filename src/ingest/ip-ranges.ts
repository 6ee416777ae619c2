/**
 * Which IP addresses are public, decided by explicit tables (the IANA IPv4 and IPv6 Special-Purpose Address
 * Registries, RFC 6890 and its updates) rather than a library's coarse "unicast" label: `::7f00:1` is "unicast"
 * to ipaddr.js, yet an IPv4-compatible spelling of 127.0.0.1.
 *
 * IPv6 forms that carry an IPv4 address (mapped, compatible, SIIT-translated, NAT64, 6to4, Teredo, ISATAP) are
 * judged by every IPv4 address they carry, so no spelling of a private IPv4 address gets through as IPv6.
 */
import ipaddr from 'ipaddr.js';

type IP = ipaddr.IPv4 | ipaddr.IPv6;
type Table = ReadonlyArray<readonly [net: IP, bits: number, name: string]>;

const table = (rows: ReadonlyArray<readonly [string, string]>): Table =>
  rows.map(([cidr, name]) => [...ipaddr.parseCIDR(cidr), name] as const);

/** Every IPv4 range that is not globally reachable unicast; anything else is public. */
const IPV4_NOT_PUBLIC = table([
  ['0.0.0.0/8', 'unspecified'], // "this network"
  ['10.0.0.0/8', 'private'],
  ['100.64.0.0/10', 'cgnat'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link_local'], // cloud metadata (169.254.169.254) lives here
  ['172.16.0.0/12', 'private'],
  ['192.0.0.0/24', 'protocol_assignments'],
  ['192.0.2.0/24', 'documentation'],
  ['192.88.99.0/24', 'reserved'], // deprecated 6to4 relay anycast
  ['192.168.0.0/16', 'private'],
  ['198.18.0.0/15', 'benchmarking'],
  ['198.51.100.0/24', 'documentation'],
  ['203.0.113.0/24', 'documentation'],
  ['224.0.0.0/4', 'multicast'],
  ['255.255.255.255/32', 'broadcast'],
  ['240.0.0.0/4', 'reserved'],
]);

/** Public IPv6 unicast lies in 2000::/3 (RFC 4291 global unicast); everything outside it is refused. */
const IPV6_GLOBAL = ipaddr.parseCIDR('2000::/3');

/** Ranges inside 2000::/3, and named ones outside it, that are not globally reachable. */
const IPV6_NOT_PUBLIC = table([
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  ['64:ff9b:1::/48', 'nat64_local'], // RFC 8215 local-use translation: a site's own NAT64, never public
  ['100::/64', 'discard'],
  ['2001:db8::/32', 'documentation'],
  ['2001::/23', 'protocol_assignments'], // Teredo (2001::/32) is judged by its embedded addresses first
  ['3fff::/20', 'documentation'],
  ['5f00::/16', 'srv6'],
  ['fc00::/7', 'unique_local'],
  ['fe80::/10', 'link_local'],
  ['fec0::/10', 'site_local'],
  ['ff00::/8', 'multicast'],
]);

const v6 = (cidr: string) => ipaddr.parseCIDR(cidr) as [ipaddr.IPv6, number];
const MAPPED = v6('::ffff:0:0/96');
const TRANSLATED = v6('::ffff:0:0:0/96'); // RFC 2765 SIIT
const COMPATIBLE = v6('::/96'); // deprecated IPv4-compatible, e.g. ::7f00:1
const NAT64 = v6('64:ff9b::/96');
const SIX_TO_FOUR = v6('2002::/16');
const TEREDO = v6('2001::/32');

function ipv4(hi: number, lo: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
}

/** The IPv4 addresses an IPv6 address carries, with the name of the form, or null when it carries none. */
export function embeddedIPv4(ip: ipaddr.IPv6): { form: string; addresses: ipaddr.IPv4[] } | null {
  const p = ip.parts; // eight 16-bit groups
  const last = ipv4(p[6]!, p[7]!);
  if (ip.match(MAPPED)) return { form: 'ipv4_mapped', addresses: [last] };
  if (ip.match(TRANSLATED)) return { form: 'ipv4_translated', addresses: [last] };
  if (ip.match(COMPATIBLE) && !(p[6] === 0 && p[7]! <= 1)) return { form: 'ipv4_compatible', addresses: [last] };
  if (ip.match(NAT64)) return { form: 'nat64', addresses: [last] };
  if (ip.match(SIX_TO_FOUR)) return { form: '6to4', addresses: [ipv4(p[1]!, p[2]!)] };
  // Teredo: server IPv4 in bits 32-63, client IPv4 in the last 32 bits inverted.
  if (ip.match(TEREDO))
    return { form: 'teredo', addresses: [ipv4(p[2]!, p[3]!), ipv4(p[6]! ^ 0xffff, p[7]! ^ 0xffff)] };
  // ISATAP interface identifier (RFC 5214): ::0:5efe:a.b.c.d or ::200:5efe:a.b.c.d (u bit set), any prefix.
  if ((p[4] === 0 || p[4] === 0x200) && p[5] === 0x5efe) return { form: 'isatap', addresses: [last] };
  return null;
}

function lookup(ip: IP, rows: Table): string | null {
  for (const [net, bits, name] of rows) if (net.kind() === ip.kind() && ip.match(net, bits)) return name;
  return null;
}

/**
 * Why `ip` is not a public address ("loopback", "private", "ipv4_mapped loopback", ...), or null when it is.
 * `allowed` lets chosen ranges through; it is asked about the address itself and each IPv4 it carries.
 */
export function nonPublicRange(ip: IP, allowed: (ip: IP) => boolean = () => false): string | null {
  if (allowed(ip)) return null;
  if (ip.kind() === 'ipv4') return lookup(ip, IPV4_NOT_PUBLIC);
  const v6ip = ip as ipaddr.IPv6;
  const embedded = embeddedIPv4(v6ip);
  if (embedded) {
    for (const inner of embedded.addresses) {
      const range = nonPublicRange(inner, allowed);
      if (range) return `${embedded.form} ${range}`;
    }
    // Forms outside 2000::/3 are only reachable through the IPv4 address they carry.
    if (embedded.form !== 'isatap') return null;
  }
  const named = lookup(v6ip, IPV6_NOT_PUBLIC);
  if (named) return named;
  return v6ip.match(IPV6_GLOBAL) ? null : 'reserved';
}
