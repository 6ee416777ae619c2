/**
 * V8 flags the CLI runs with (the `bin/wildstream.js` shebang and `npm run demo` pass them; a test checks
 * both). Node cannot take them at run time: `v8.setFlagsFromString` after start-up leaves the heap's sizing
 * as it was.
 *
 * --initial-old-space-size=128: ingest keeps a small JS heap (~17 MB) while it allocates ~1 MB of Buffers an
 * image, and V8 then restarts incremental marking whenever the old generation's slack falls under the young
 * generation's size: 7.6 full mark-compacts per 100 images in ingest against 0.6 with this flag (2.4 and
 * 0.2 in the image work alone), ~27-30 instead of ~30-35 CPU ms an image (bench/RESULTS.md, session 9).
 */
export const V8_FLAGS = ['--initial-old-space-size=128'] as const;
