/**
 * SSRF guard: only public unicast addresses (ip-ranges.ts) may be connected to. The check sits in the connector, on the
 * address the socket actually connects to (our DNS lookup hands net.connect only addresses it approved), so
 * every redirect hop is covered and there is no window between check and connect for DNS rebinding.
 */
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import { buildConnector } from 'undici';
import { ConfigError } from '../errors.js';
import { nonPublicRange } from './ip-ranges.js';

export const BLOCKED_CODE = 'WS_BLOCKED_ADDRESS';

/** Address ranges (CIDR) let through despite being non-public, e.g. an intranet mirror or a test server. */
export type AllowList = ReadonlyArray<[ipaddr.IPv4 | ipaddr.IPv6, number]>;

export function parseAllowList(cidrs: readonly string[] = []): AllowList {
  return cidrs.map((cidr) => {
    try {
      return ipaddr.parseCIDR(cidr.includes('/') ? cidr : `${cidr}/${cidr.includes(':') ? 128 : 32}`);
    } catch {
      throw new ConfigError(`invalid address range ${JSON.stringify(cidr)}: expected an IP or CIDR like 10.0.0.0/8`);
    }
  });
}

/** Why an address may not be connected to (e.g. "loopback", "ipv4_compatible loopback"), or null when it may. */
export function blockedRange(address: string, allow: AllowList = []): string | null {
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    ip = ipaddr.parse(dottedTailToHex(address.replace(/^\[|\]$/g, '').replace(/%.*$/, '')));
  } catch {
    return 'invalid';
  }
  return nonPublicRange(ip, (candidate) =>
    allow.some(([net, bits]) => net.kind() === candidate.kind() && candidate.match(net, bits)),
  );
}

/**
 * `::a.b.c.d` as `::xxxx:yyyy`: ipaddr.js 2.5 parses the IPv4-compatible `::127.0.0.1` as the IPv4-mapped
 * `::ffff:127.0.0.1`, another address; the hex spelling parses as written.
 */
function dottedTailToHex(address: string): string {
  const m = /^(.*:)(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(address);
  if (!m) return address;
  const [a, b, c, d] = m.slice(2).map(Number) as [number, number, number, number];
  if ([a, b, c, d].some((x) => x > 255)) return address;
  return `${m[1]}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
}

function blockedError(host: string, address: string, range: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`refused to connect to ${host} (${address}): ${range} address`);
  err.code = BLOCKED_CODE;
  return err;
}

/** A dns.lookup that drops non-public addresses, failing when none is left. */
export const guardedLookup = (allow: AllowList, resolve: typeof dnsLookup = dnsLookup) =>
  ((
    hostname: string,
    options: LookupAllOptions,
    callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
  ) => {
    resolve(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      const allowed = addresses.filter((a) => blockedRange(a.address, allow) === null);
      if (allowed.length === 0) {
        const first = addresses[0];
        return callback(
          blockedError(hostname, first?.address ?? '?', first ? blockedRange(first.address, allow)! : 'none'),
          [],
        );
      }
      if (options.all) return callback(null, allowed);
      return callback(null, allowed[0]!.address, allowed[0]!.family);
    });
  }) as unknown as LookupFunction;

/** An undici connector that refuses non-public addresses, IP literals included (they skip DNS). */
export function guardedConnector(
  options: buildConnector.BuildOptions,
  allow: AllowList = [],
): buildConnector.connector {
  const connect = buildConnector({ ...options, lookup: guardedLookup(allow) } as buildConnector.BuildOptions);
  return (opts, callback) => {
    const host = opts.hostname.replace(/^\[|\]$/g, '');
    if (isIP(host)) {
      const range = blockedRange(host, allow);
      if (range) {
        callback(blockedError(host, host, range), null);
        return;
      }
    }
    connect(opts, callback);
  };
}
