/**
 * Preloaded with `node --import`: records every package a process loads (ESM and CommonJS) and
 * prints them as one `packages loaded: [...]` line on stderr at exit, for start-up tests.
 */
import { registerHooks } from 'node:module';

const packages = new Set<string>();
registerHooks({
  resolve(specifier, context, nextResolve) {
    const resolved = nextResolve(specifier, context);
    const match = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(resolved.url);
    if (match?.[1] !== undefined) packages.add(match[1]);
    return resolved;
  },
});
process.on('exit', () => {
  process.stderr.write(`packages loaded: ${JSON.stringify([...packages].sort())}\n`);
});
