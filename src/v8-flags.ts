/**
 * V8 flags the CLI runs with (the `bin/wildstream.js` shebang and `npm run demo` pass them; a test checks
 * both). Node cannot take them at run time: `v8.setFlagsFromString` after start-up leaves the heap's sizing
 * as it was.
 *
 * --initial-old-space-size=128: ingest keeps a small JS heap (~17 MB) while it allocates ~1 MB of Buffers an
 * image, and V8 then restarts incremental marking whenever the old generation's slack falls under the young
 * generation's size, so ingest runs many full mark-compacts on a heap that hardly grows. This flag gives the
 * old generation room from the start (ingest CPU per image: bench/RESULTS.md, "Ingest").
 */
export const V8_FLAGS = ['--initial-old-space-size=128'] as const;
