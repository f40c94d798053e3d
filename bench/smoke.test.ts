/**
 * The bench harness end to end on a tiny load: every scenario runs and lands in the results
 * file. Nothing here looks at speed; timings belong to `npm run bench`. Not part of `npm test`
 * (6 s on a quiet 2-core machine, 14 s with other suites running on it): `npm run bench:smoke`.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

test('npm run bench with 100 messages measures all five scenarios and writes them to a JSON file', { timeout: 120_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'login-etl-bench-'));
  try {
    await promisify(execFile)(process.execPath, [MAIN, '--messages', '100', '--concurrency', '4', '--results-dir', dir], {
      env: { PATH: process.env.PATH ?? '', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    });
    const [file, ...others] = await readdir(dir);
    assert.ok(file !== undefined && others.length === 0, 'one results file');
    const results = JSON.parse(await readFile(join(dir, file), 'utf8')) as {
      scenarios: { scenario: string; messages: number; details: Record<string, unknown> }[];
      ratios: { name: string }[];
      machine: { cpuCount: number };
    };
    assert.deepEqual(
      results.scenarios.map((s) => s.scenario),
      ['queue-stock', 'queue-pipeline', 'copy', 'pipeline', 'naive'],
    );
    const pipeline = results.scenarios.find((s) => s.scenario === 'pipeline');
    assert.equal(pipeline?.messages, 100);
    assert.equal(pipeline?.details.rowsInTable, pipeline?.details.expectedRows);
    assert.equal(pipeline?.details.leftInQueue, 0);
    assert.equal(results.scenarios.find((s) => s.scenario === 'queue-stock')?.messages, 100);
    assert.equal(results.ratios.length, 6);
    assert.ok(results.machine.cpuCount > 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
