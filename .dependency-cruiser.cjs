// Layer rules for linkgate, checked by `npm run depcruise` (part of `npm run check` and `npm test`).
// LAYERS below is the layer table of CONTRIBUTING.md ("Architecture"), as code: each folder under
// src/ may import only itself and the folders listed for it. Change the two together.

/** @type {Record<string, { may: string[]; note: string }>} */
const LAYERS = {
  cli: { may: ['daemon', 'lab', 'config', 'model'], note: 'commands, flags, exit codes' },
  daemon: {
    may: ['pipeline', 'backends', 'packet', 'identity', 'sources', 'dataplane', 'config', 'model', 'native-bindings', 'dialects/*.ts'],
    note: "wiring, lifecycle, signals, reload; of dialects only the shared contract (choosing the cloud is the router's job)",
  },
  lab: { may: ['config', 'model'], note: 'spawns bin/linkgate; never imports the daemon' },
  pipeline: { may: ['dialects', 'backends', 'identity', 'model'], note: 'connection → identity → dialect → backend → response' },
  dialects: { may: ['model'], note: 'one cloud each; pure functions of (instance, request)' },
  backends: { may: ['identity', 'model'], note: 'where answers come from; no dialect paths' },
  packet: { may: ['wire', 'model'], note: 'AF_PACKET ports, ARP/NDP, user-space TCP' },
  sources: { may: ['config', 'model'], note: 'where instances come from besides the file: admin API state on disk, the etcd watch' },
  identity: { may: ['dataplane', 'model'], note: 'registry; from dataplane only mark.ts and types (see identity-no-kernel)' },
  dataplane: { may: ['model', 'native-bindings'], note: 'netlink, nftables, sysctls' },
  config: { may: ['model'], note: 'the config file and its validator' },
  wire: { may: [], note: 'pure parse/emit; imports nothing of ours' },
  model: { may: [], note: 'the instance model; imports nothing of ours' },
};

const names = Object.keys(LAYERS);
/** 'dialects' → the whole folder; 'dialects/*.ts' → only the files directly in it (a shared contract). */
const folder = (layer) =>
  layer === 'native-bindings' ? '^native-bindings/' : layer.endsWith('/*.ts') ? `^src/${layer.slice(0, -5)}/[^/]+\\.ts$` : `^src/${layer}/`;

const layerRules = names.map((layer) => ({
  name: `layer-${layer}`,
  comment: `${layer} (${LAYERS[layer].note}) may import only: ${[layer, ...LAYERS[layer].may].join(', ')}`,
  severity: 'error',
  from: { path: `^src/${layer}/` },
  to: {
    path: '^(src|native-bindings)/',
    pathNot: [layer, ...LAYERS[layer].may].map(folder),
  },
}));

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'layer-unknown',
      comment: 'every folder under src/ must have a row in the layer table (.dependency-cruiser.cjs LAYERS and CONTRIBUTING.md)',
      severity: 'error',
      from: { path: '^src/', pathNot: names.map(folder) },
      to: {},
    },
    {
      name: 'dialects-not-each-other',
      comment: 'a dialect never imports another dialect (shared code goes in src/dialects/*.ts, e.g. types.ts)',
      severity: 'error',
      from: { path: '^src/dialects/([^/]+)/' },
      to: { path: '^src/dialects/[^/]+/', pathNot: '^src/dialects/$1/' },
    },
    {
      name: 'dialects-shared-is-shared',
      comment: 'the shared dialect files (src/dialects/*.ts) must not import any one dialect',
      severity: 'error',
      from: { path: '^src/dialects/[^/]+\\.ts$' },
      to: { path: '^src/dialects/[^/]+/' },
    },
    {
      name: 'backends-not-each-other',
      comment: 'a backend never imports another backend (shared code goes in src/backends/*.ts)',
      severity: 'error',
      from: { path: '^src/backends/([^/]+)/' },
      to: { path: '^src/backends/[^/]+/', pathNot: '^src/backends/$1/' },
    },
    {
      name: 'dialects-not-backends',
      comment: 'dialects and backends never import each other: the pipeline joins them',
      severity: 'error',
      from: { path: '^src/dialects/' },
      to: { path: '^src/backends/' },
    },
    {
      name: 'backends-not-dialects',
      comment: 'dialects and backends never import each other: the pipeline joins them',
      severity: 'error',
      from: { path: '^src/backends/' },
      to: { path: '^src/dialects/' },
    },
    {
      name: 'identity-no-kernel',
      comment: 'identity must not touch the kernel: from dataplane/ it takes mark.ts (pure arithmetic) and types only',
      severity: 'error',
      from: { path: '^src/identity/' },
      to: { path: '^src/dataplane/', pathNot: '^src/dataplane/mark\\.ts$', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'pure-layers-no-io',
      comment: 'wire, dialects and model do no I/O: no sockets, files, processes or capture libraries',
      severity: 'error',
      from: { path: '^src/(wire|dialects|model)/' },
      to: {
        path: '^(node:)?(net|dgram|http|https|http2|tls|fs|fs/promises|child_process|cluster|worker_threads)$|^(netlink|cap|raw-socket)$',
      },
    },
    {
      name: 'no-src-to-test-or-bench',
      comment: 'production code never imports tests, test helpers or benchmarks',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'no-circular',
      comment: 'no import cycles, within a layer or across layers',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'every import resolves to a file or an installed package',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: 'src-not-to-dev-dep',
      comment: 'production code imports only "dependencies", never "devDependencies"',
      severity: 'error',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'], pathNot: '^node_modules/@types/' },
    },
  ],
  options: {
    doNotFollow: { path: ['node_modules'] },
    // `depcruise .` starts from our own code only; npm packages still show as leaves (doNotFollow).
    exclude: { path: ['^dist/', '^\\.tap/', '^coverage/', '^test/.*/node_modules/', '^native-bindings/build/', '^bench/results/'] },
    // See `import type` too: identity-no-kernel tells type-only imports from value imports.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.check.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.d.ts', '.js', '.cjs', '.mjs', '.json'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
