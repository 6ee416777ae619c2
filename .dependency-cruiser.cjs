/**
 * Folder layering of src/ (`npm run check:layers`). Data flows one way through the stage folders; each rule
 * names what a layer may import, and everything else under src/ is forbidden to it:
 *
 *   base (errors, rng, abort, svg-text, v8-flags, crops, crop-tensor, defaults, process-exists, worker-module,
 *        options/)
 *        imports no stage
 *   shards   -> base                 ingest  -> shards             crawl -> ingest, shards
 *   augment  -> shards               train   -> shards, TYPES of augment (`import type`)
 *   eval     -> train, augment, shards        fixtures -> base
 *   jobs     -> any stage            pipeline -> stages, jobs      cli (cli.ts, cli/, cli-options.ts), index.ts -> all
 *
 * Import cycles are checked by `npm run check:cycles` (dpdm).
 */
const BASE =
  '^src/(errors|rng|abort|svg-text|v8-flags|crops|crop-tensor|defaults|process-exists)\\.ts$|^src/worker-module\\.mjs$|^src/options/';
const layer = (folders) => `^src/(${folders.join('|')})/`;

/** A rule forbidding `from` every module under src/ except its own folder and `allowed`. */
function only(name, from, allowed, comment) {
  return {
    name,
    comment,
    severity: 'error',
    from: { path: from },
    to: { path: '^src/', pathNot: [BASE, ...allowed] },
  };
}

/** The folder itself, for `pathNot`: a module may import its siblings. */
const self = (folder) => `^src/${folder}/`;

module.exports = {
  forbidden: [
    {
      name: 'base-imports-no-stage',
      comment:
        'errors, rng, abort, svg-text, v8-flags, crops, crop-tensor, defaults, process-exists, worker-module and options/ are the base every stage may import: they import no stage',
      severity: 'error',
      from: { path: BASE },
      to: { path: '^src/', pathNot: BASE },
    },
    only('shards-imports-base', self('shards'), [self('shards')], 'shards owns the dataset; it imports only the base'),
    only('ingest-imports-shards', self('ingest'), [self('ingest'), layer(['shards'])], 'ingest writes through shards'),
    only(
      'crawl-imports-ingest-shards',
      self('crawl'),
      [self('crawl'), layer(['ingest', 'shards'])],
      'crawl is an ingest source',
    ),
    only(
      'augment-imports-shards',
      self('augment'),
      [self('augment'), layer(['shards'])],
      'augment reads through shards',
    ),
    only(
      'train-imports-shards-and-augment-types',
      self('train'),
      [self('train'), layer(['shards', 'augment'])],
      'train imports shards and the base, and from augment only types (the next rule)',
    ),
    {
      name: 'train-imports-only-types-from-augment',
      comment: 'train consumes MultiCropBatch and a cursor: `import type` from augment; jobs/ opens the loader',
      severity: 'error',
      from: { path: self('train') },
      to: { path: layer(['augment']), dependencyTypesNot: ['type-only'] },
    },
    only(
      'eval-imports-train-augment-shards',
      self('eval'),
      [self('eval'), layer(['train', 'augment', 'shards'])],
      'eval uses exported models on datasets',
    ),
    only(
      'fixtures-imports-base',
      self('fixtures'),
      [self('fixtures')],
      'fixtures generate test images from the base only',
    ),
    {
      name: 'jobs-imports-no-pipeline-or-cli',
      comment: 'jobs compose stages; pipelines and the CLI call jobs, not the other way round',
      severity: 'error',
      from: { path: self('jobs') },
      to: { path: '^src/(pipeline/|cli/|cli\\.ts$|cli-options\\.ts$|index\\.ts$)' },
    },
    {
      name: 'pipeline-imports-no-cli',
      comment: 'the pipeline runner calls typed stage and job functions, never the CLI',
      severity: 'error',
      from: { path: '^src/pipeline/' },
      to: { path: '^src/(cli/|cli\\.ts$|cli-options\\.ts$|index\\.ts$)' },
    },
    {
      name: 'nothing-imports-the-package-entry',
      comment: 'src/index.ts is the public surface; modules import the module that defines a thing',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/index\\.ts$' },
      to: { path: '^src/index\\.ts$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: '^src/',
    exclude: { path: '^src/augment/wasm/' },
    // Keep `import type` edges, marked type-only, so the train -> augment rule can tell them apart.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.mjs', '.js', '.d.ts'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
