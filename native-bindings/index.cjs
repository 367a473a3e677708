'use strict';
// Loader for the linkgate_native N-API addon (SO_MARK, IP_TTL, listeners, the native serving loop).
// Built by `npm run build:native` (or scripts/bootstrap.sh) into build/Release/.
const path = require('node:path');
const fs = require('node:fs');

const addonPath = path.join(__dirname, 'build', 'Release', 'linkgate_native.node');

function load() {
  if (!fs.existsSync(addonPath)) {
    const err = new Error(
      `linkgate native addon is not built (missing ${addonPath}). ` +
        'Run `npm run build:native` (or `bash scripts/bootstrap.sh`) from the project root.',
    );
    err.code = 'ERR_LINKGATE_NATIVE_MISSING';
    throw err;
  }
  return require(addonPath);
}

const native = load();

module.exports = {
  getMark: native.getMark,
  setIpTtl: native.setIpTtl,
  getIpTtl: native.getIpTtl,
  listenTcp: native.listenTcp,
  FastPath: native.FastPath,
  parseFastPath: native.parseFastPath,
};
