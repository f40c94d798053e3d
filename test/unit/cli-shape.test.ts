/**
 * The command line's shape: importing a module runs nothing, help loads no dependency, and each
 * command's help lists exactly the options that command accepts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { COMMANDS } from '../../src/commands/index.js';
import { UNMASK_QUERY_TIMEOUT_SECONDS } from '../../src/commands/unmask.js';
import { help } from '../../src/cli/help.js';
import { optionsOf } from '../../src/cli/main.js';
import { QUERY_TIMEOUT_MS } from '../../src/unmask.js';

const CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));
const RECORDER = fileURLToPath(new URL('../helpers/record-imports.js', import.meta.url));

function packagesLoaded(args: readonly string[]): { status: number | null; packages: string[] } {
  const result = spawnSync(process.execPath, ['--import', RECORDER, CLI, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
  const line = /^packages loaded: (.*)$/m.exec(result.stderr)?.[1];
  assert.ok(line !== undefined, result.stderr);
  return { status: result.status, packages: JSON.parse(line) as string[] };
}

describe('start-up', () => {
  test('login-etl --help and a command\'s --help load no dependency at all', () => {
    for (const args of [['--help'], ['run', '--help'], ['rejected', '--help'], ['demo', '--help']]) {
      const { status, packages } = packagesLoaded(args);
      assert.equal(status, 0);
      assert.deepEqual(packages, [], args.join(' '));
    }
  });

  test('generate loads no dependency either: each command loads what it uses', () => {
    assert.deepEqual(packagesLoaded(['generate', '--count', '1']).packages, []);
  });

  test('importing the command line and the commands runs nothing', () => {
    const modules = ['cli/main.js', 'commands/index.js', ...Object.keys(COMMANDS).map((name) => `commands/${name}.js`)];
    const script = `for (const m of ${JSON.stringify(modules)}) await import(new URL('../src/' + m, ${JSON.stringify(new URL('../', import.meta.url).href)}));`;
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout + result.stderr, '');
  });
});

describe('help', () => {
  test('each command\'s help lists exactly the options it accepts, and no other', () => {
    for (const [name, command] of Object.entries(COMMANDS)) {
      const listed = [...help(COMMANDS, name).matchAll(/^ {2}(?:-h, )?--([a-z-]+)/gm)].map((m) => m[1]).sort();
      assert.deepEqual(listed, Object.keys(optionsOf(command)).sort(), name);
    }
    // Run's tuning is not offered where it does nothing.
    for (const name of ['check', 'report', 'send', 'queue', 'demo', 'keygen']) assert.doesNotMatch(help(COMMANDS, name), /--drain|--receive-concurrency|--flush-interval-ms/, name);
  });

  test('unmask\'s help states the query timeout the code applies', () => {
    assert.equal(UNMASK_QUERY_TIMEOUT_SECONDS * 1000, QUERY_TIMEOUT_MS);
  });
});
