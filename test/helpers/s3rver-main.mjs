// Runs s3rver on 127.0.0.1 with an ephemeral port and prints {"port": N} on stdout.
// Run under `node --openssl-legacy-provider`: s3rver's ListObjectsV2 paging fails without it.
import S3rver from 's3rver';

const [directory, ...buckets] = process.argv.slice(2);
const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  silent: true,
  directory,
  configureBuckets: buckets.map((name) => ({ name, configs: [] })),
});
const { port } = await server.run();
process.stdout.write(`${JSON.stringify({ port })}\n`);
process.on('SIGTERM', () => server.close().then(() => process.exit(0)));
