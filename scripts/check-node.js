// Stops `npm test` and `npm start` with one clear line on a Node.js that package.json's `engines`
// does not include, instead of the errors an older runtime would give further on (test globs
// read as paths, syntax it does not know). Plain JavaScript, so that any Node.js can run it.
import { readFileSync } from 'node:fs';

const range = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).engines.node;
const current = process.versions.node.split('.').map(Number);
// The npm script that ran this check (`test`, `start`), for the command to suggest.
const command = (process.env.npm_lifecycle_event || 'test').replace(/^pre/, '');

/** `range` is alternatives joined by `||`, each `^X.Y.Z` or `>=X[.Y[.Z]]`: all `engines` uses. */
function satisfies(version, alternatives) {
  return alternatives.split('||').some((part) => {
    const match = /^\s*(\^|>=)(\d+)(?:\.(\d+))?(?:\.(\d+))?\s*$/.exec(part);
    if (match === null) throw new Error(`scripts/check-node.js cannot read engines.node "${alternatives}"`);
    const wanted = [Number(match[2]), Number(match[3] ?? 0), Number(match[4] ?? 0)];
    if (match[1] === '^' && version[0] !== wanted[0]) return false;
    for (let i = 0; i < 3; i += 1) if (version[i] !== wanted[i]) return version[i] > wanted[i];
    return true;
  });
}

if (!satisfies(current, range)) {
  process.stderr.write(
    `login-etl needs Node.js ${range} (24 is the reference); this is ${process.version}. ` +
      `Switch with \`nvm install\` (reads .nvmrc), or run it through npx: npx -y -p node@24 -- npm ${command}\n`,
  );
  process.exit(1);
}
