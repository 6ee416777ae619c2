// The SSRF guard: which addresses are public (a table of spellings judged by the classifier), and end to end
// through the Fetcher, every spelling of a refused address, direct or as a redirect target, is
// `blocked_address` before any socket connects. The fixture origin (127.0.0.1) is allowed; nothing else is.
import type { LookupAddress } from 'node:dns';
import { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fetcher } from '../../src/ingest/fetch.js';
import { BLOCKED_CODE, blockedRange, guardedLookup, parseAllowList } from '../../src/ingest/net-guard.js';
import { startFixture, type Fixture } from '../helpers/fixture-server.js';

/** Address -> expected verdict: null (public) or the start of the reason. */
const ADDRESSES: Array<[string, string | null]> = [
  // IPv4 public
  ['8.8.8.8', null],
  ['1.1.1.1', null],
  ['93.184.216.34', null],
  ['100.63.255.255', null],
  ['100.128.0.0', null],
  ['172.15.255.255', null],
  ['172.32.0.0', null],
  ['192.88.98.255', null],
  ['198.17.255.255', null],
  ['198.20.0.0', null],
  ['223.255.255.255', null],
  ['11.0.0.1', null],
  // IPv4 not public
  ['0.0.0.0', 'unspecified'],
  ['0.1.2.3', 'unspecified'],
  ['10.0.0.1', 'private'],
  ['10.255.255.255', 'private'],
  ['100.64.0.1', 'cgnat'],
  ['100.127.255.254', 'cgnat'],
  ['127.0.0.1', 'loopback'],
  ['127.255.255.254', 'loopback'],
  ['169.254.169.254', 'link_local'],
  ['172.16.0.1', 'private'],
  ['172.31.255.255', 'private'],
  ['192.0.0.8', 'protocol_assignments'],
  ['192.0.2.1', 'documentation'],
  ['192.88.99.1', 'reserved'],
  ['192.168.1.1', 'private'],
  ['198.18.0.1', 'benchmarking'],
  ['198.19.255.255', 'benchmarking'],
  ['198.51.100.7', 'documentation'],
  ['203.0.113.9', 'documentation'],
  ['224.0.0.1', 'multicast'],
  ['239.255.255.250', 'multicast'],
  ['240.0.0.1', 'reserved'],
  ['255.255.255.255', 'broadcast'],
  // IPv6 public
  ['2001:4860:4860::8888', null],
  ['2606:4700:4700::1111', null],
  ['2a00:1450:4001:81c::200e', null],
  ['2002:808:808::1', null],
  ['64:ff9b::808:808', null],
  ['::ffff:8.8.8.8', null],
  ['2001:0:4136:e378:8000:63bf:f7f7:f7f7', null],
  // IPv6 not public
  ['::', 'unspecified'],
  ['::1', 'loopback'],
  ['fe80::1', 'link_local'],
  ['febf::1', 'link_local'],
  ['fec0::1', 'site_local'],
  ['fc00::1', 'unique_local'],
  ['fd12:3456::1', 'unique_local'],
  ['ff02::1', 'multicast'],
  ['ff05::1:3', 'multicast'],
  ['100::1', 'discard'],
  ['2001:db8::1', 'documentation'],
  ['3fff::1', 'documentation'],
  ['2001:2::1', 'protocol_assignments'],
  ['2001:10::1', 'protocol_assignments'],
  ['5f00::1', 'srv6'],
  ['64:ff9b:1::808:808', 'nat64_local'],
  ['4000::1', 'reserved'],
  ['1::1', 'reserved'],
  ['e000::1', 'reserved'],
  // IPv6 forms that carry a non-public IPv4
  ['::ffff:127.0.0.1', 'ipv4_mapped loopback'],
  ['::ffff:7f00:1', 'ipv4_mapped loopback'],
  ['::ffff:169.254.169.254', 'ipv4_mapped link_local'],
  ['::ffff:a00:1', 'ipv4_mapped private'],
  ['::7f00:1', 'ipv4_compatible loopback'],
  ['::127.0.0.1', 'ipv4_compatible loopback'],
  ['::a9fe:a9fe', 'ipv4_compatible link_local'],
  ['::0.0.0.2', 'ipv4_compatible unspecified'],
  ['::ffff:0:7f00:1', 'ipv4_translated loopback'],
  ['64:ff9b::7f00:1', 'nat64 loopback'],
  ['64:ff9b::a9fe:a9fe', 'nat64 link_local'],
  ['64:ff9b::192.168.0.1', 'nat64 private'],
  ['2002:7f00:1::', '6to4 loopback'],
  ['2002:a9fe:a9fe::1', '6to4 link_local'],
  ['2002:c0a8:101::1', '6to4 private'],
  ['2001:0:4136:e378:8000:63bf:80ff:fffe', 'teredo loopback'], // client 127.0.0.1, stored inverted
  ['2001:0:4136:e378:8000:63bf:5601:5601', 'teredo link_local'], // client 169.254.169.254 inverted
  ['2001:0:7f00:1::1', 'teredo loopback'], // server 127.0.0.1
  ['2001:4860::5efe:7f00:1', 'isatap loopback'],
  ['2001:4860::200:5efe:a00:1', 'isatap private'],
  ['fe80::5efe:808:808', 'link_local'],
  ['[::ffff:127.0.0.1]', 'ipv4_mapped loopback'],
  ['fe80::1%eth0', 'link_local'],
  ['not an address', 'invalid'],
];

describe('classifier', () => {
  it('has a table of at least 60 spellings', () => expect(ADDRESSES.length).toBeGreaterThanOrEqual(60));
  it.each(ADDRESSES)('%s -> %s', (address, expected) => {
    const range = blockedRange(address);
    if (expected === null) expect(range).toBeNull();
    else expect(range).toMatch(new RegExp(`^${expected}`));
  });

  it('lets allowed ranges through, also where an IPv6 form carries them', () => {
    const allow = parseAllowList(['127.0.0.1', '10.1.0.0/16']);
    for (const a of ['127.0.0.1', '::ffff:127.0.0.1', '::7f00:1', '10.1.2.3'])
      expect(blockedRange(a, allow), a).toBeNull();
    for (const a of ['127.0.0.2', '::ffff:127.0.0.2', '10.2.0.1', '::1'])
      expect(blockedRange(a, allow), a).not.toBeNull();
  });
});

describe('DNS answers', () => {
  const fake = (answers: string[]) =>
    ((_host: string, _o: unknown, cb: (e: null, a: LookupAddress[]) => void) =>
      cb(
        null,
        answers.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })),
      )) as never;
  const resolve = (answers: string[]) =>
    new Promise<{ err: NodeJS.ErrnoException | null; addresses: unknown }>((done) =>
      (
        guardedLookup([], fake(answers)) as unknown as (
          h: string,
          o: object,
          cb: (e: NodeJS.ErrnoException | null, a: unknown) => void,
        ) => void
      )('evil.example', { all: true }, (err, addresses) => done({ err, addresses })),
    );

  it.each([['127.0.0.1'], ['::ffff:7f00:1'], ['169.254.169.254', '::1'], ['::7f00:1']])(
    'refuses a name resolving only to %s',
    async (...answers) => {
      const { err } = await resolve(answers);
      expect(err?.code).toBe(BLOCKED_CODE);
    },
  );

  it('keeps only the public answers of a mixed set', async () => {
    const { err, addresses } = await resolve(['127.0.0.1', '93.184.216.34', '::ffff:a00:1']);
    expect(err).toBeNull();
    expect(addresses).toEqual([{ address: '93.184.216.34', family: 4 }]);
  });
});

describe('end to end', () => {
  let fixture: Fixture;
  let fetcher: Fetcher;
  let port: string;
  const connects: string[] = [];
  const realConnect = Socket.prototype.connect;

  beforeAll(async () => {
    fixture = await startFixture([
      [
        /^\/goto$/,
        (req, res) =>
          void res.writeHead(302, { location: new URL(req.url!, 'http://x').searchParams.get('to')! }).end(),
      ],
    ]);
    port = new URL(fixture.base).port;
    fetcher = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, connectTimeoutMs: 500, totalTimeoutMs: 3000 });
    // Records every socket connect (options object or port/host), to show refused addresses never reach one.
    Socket.prototype.connect = function (this: Socket, ...args: unknown[]) {
      const first = args[0] as { host?: string } | number;
      connects.push(String(typeof first === 'object' ? first.host : args[1]));
      return (realConnect as (...a: unknown[]) => Socket).apply(this, args);
    } as typeof realConnect;
  });
  afterAll(async () => {
    Socket.prototype.connect = realConnect;
    await fetcher?.close();
    await fixture?.close();
  });

  /** Hosts that must be refused: other loopback addresses in every spelling, and the other non-public ranges. */
  const REFUSED = [
    '127.0.0.2',
    '2130706434',
    '0x7f000002',
    '0177.0.0.2',
    '0x7f.2',
    '127.2',
    '127.0.2',
    '0x7F.0.0.02',
    '127.0.0.2.',
    '[::ffff:127.0.0.2]',
    '[::ffff:7f00:2]',
    '[::7f00:2]',
    '[::127.0.0.2]',
    '[0:0:0:0:0:ffff:7f00:2]',
    '[::ffff:0:7f00:2]',
    '[64:ff9b::7f00:2]',
    '[2002:7f00:2::1]',
    '[2001:0:4136:e378:8000:63bf:80ff:fffd]',
    '[2001:4860::5efe:7f00:2]',
    '[::1]',
    '[::]',
    '0.0.0.0',
    '0',
    '10.0.0.1',
    '169.254.169.254',
    '2852039166',
    '100.64.0.1',
    '192.168.0.1',
    '198.18.0.1',
    '224.0.0.1',
    '255.255.255.255',
    '[fe80::1]',
    '[fc00::1]',
    '[fec0::1]',
    '[ff02::1]',
    '[100::1]',
    '[64:ff9b:1::a00:1]',
    '[::ffff:169.254.169.254]',
  ];
  const direct = REFUSED.map((h) => [`http://${h}:PORT/photo.jpg`]);
  const redirected = REFUSED.map((h) => [`/goto?to=${encodeURIComponent(`http://${h}:PORT/photo.jpg`)}`]);

  it('tries at least 60 URLs and redirect targets', () =>
    expect(direct.length + redirected.length).toBeGreaterThanOrEqual(60));

  it.each([...direct, ...redirected])('%s -> blocked_address, no connect', async (url) => {
    const full = (url.startsWith('/') ? fixture.base + url : url)
      .replaceAll('PORT', port)
      .replaceAll('%3APORT', `%3A${port}`);
    const before = connects.length;
    expect(await fetcher.fetch(full)).toEqual({ ok: false, reason: 'blocked_address' });
    const target = new URL(
      url.startsWith('/') ? decodeURIComponent(url.slice('/goto?to='.length)).replace('PORT', port) : full,
    ).hostname;
    expect(connects.slice(before).map((h) => h.replace(/^\[|\]$/g, ''))).not.toContain(target.replace(/^\[|\]$/g, ''));
  });

  it.each(['2130706433', '0x7f.1', '127.1', '0177.0.0.1', '0x7f000001', '[::ffff:127.0.0.1]'])(
    'allows %s, a spelling of the allowed 127.0.0.1',
    async (host) => {
      expect((await fetcher.fetch(`http://${host}:${port}/photo.jpg`)).ok).toBe(true);
      expect(
        (await fetcher.fetch(`${fixture.base}/goto?to=${encodeURIComponent(`http://${host}:${port}/photo.jpg`)}`)).ok,
      ).toBe(true);
    },
  );

  it('connects anywhere with allowPrivateNetwork', async () => {
    const open = new Fetcher({ allowPrivateNetwork: true, retries: 0, connectTimeoutMs: 500, totalTimeoutMs: 3000 });
    expect((await open.fetch(`http://[::ffff:7f00:1]:${port}/photo.jpg`)).ok).toBe(true);
    expect((await open.fetch(`http://localhost:${port}/photo.jpg`)).ok).toBe(true);
    // 127.0.0.2 is loopback with no listener: refused by the peer, not by the guard.
    expect(await open.fetch(`http://127.0.0.2:${port}/photo.jpg`)).toEqual({ ok: false, reason: 'connection_error' });
    await open.close();
  });
});
