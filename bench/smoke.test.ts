/**
 * The bench harness end to end on a tiny load: every scenario runs and lands in the results
 * file, and the multi-instance mode drains one queue exactly. Nothing here looks at speed;
 * timings belong to `npm run bench`. Part of `npm test`; alone: `npm run bench:smoke`.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { templateVariable } from '../src/embedded/postgres.js';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

test('npm run bench with 100 messages measures all seven scenarios and writes them to a JSON file', { timeout: 120_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'login-etl-bench-'));
  try {
    await promisify(execFile)(process.execPath, [MAIN, '--messages', '100', '--concurrency', '4', '--startup-runs', '1', '--results-dir', dir], {
      env: { PATH: process.env.PATH ?? '', ...templateVariable(process.env) },
    });
    const [file, ...others] = await readdir(dir);
    assert.ok(file !== undefined && others.length === 0, 'one results file');
    const results = JSON.parse(await readFile(join(dir, file), 'utf8')) as {
      scenarios: { scenario: string; messages: number; details: Record<string, unknown> }[];
      ratios: { name: string }[];
      machine: { cpuCount: number };
      startup: { helpMs: { runs: number }; drain100Ms: { runs: number } };
    };
    assert.deepEqual(
      results.scenarios.map((s) => s.scenario),
      ['queue-stock', 'queue-pipeline', 'queue-sdk', 'copy', 'pipeline', 'pipeline-sdk', 'naive'],
    );
    const pipeline = results.scenarios.find((s) => s.scenario === 'pipeline');
    assert.equal(pipeline?.messages, 100);
    assert.equal(pipeline?.details.rowsInTable, pipeline?.details.expectedRows);
    assert.equal(pipeline?.details.leftInQueue, 0);
    const sdkPipeline = results.scenarios.find((s) => s.scenario === 'pipeline-sdk');
    assert.deepEqual(sdkPipeline?.details.args, ['run', '--drain', '--receive-concurrency', '4', '--pg-pool-max', '4', '--max-in-flight-bytes', '67108864', '--sqs-client', 'sdk']);
    assert.equal(sdkPipeline?.details.rowsInTable, sdkPipeline?.details.expectedRows);
    assert.equal(results.scenarios.find((s) => s.scenario === 'queue-sdk')?.messages, 100);
    assert.equal(results.scenarios.find((s) => s.scenario === 'queue-stock')?.messages, 100);
    assert.equal(results.ratios.length, 8);
    assert.ok(results.ratios.some((r) => r.name.startsWith('lean ÷ tuned-SDK consumer CPU per message')), 'the client decision is printed');
    assert.ok(results.machine.cpuCount > 0);
    assert.deepEqual([results.startup.helpMs.runs, results.startup.drain100Ms.runs], [1, 1], 'the start-up figures, measured once each');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('npm run bench -- --instances 1,2 drains one queue with one, then two processes, exactly', { timeout: 120_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'login-etl-bench-'));
  try {
    await promisify(execFile)(process.execPath, [MAIN, '--instances', '1,2', '--messages', '300', '--concurrency', '2', '--results-dir', dir], {
      env: { PATH: process.env.PATH ?? '', ...templateVariable(process.env) },
    });
    const [file] = await readdir(dir);
    assert.ok(file !== undefined);
    const results = JSON.parse(await readFile(join(dir, file), 'utf8')) as {
      kind: string;
      runs: { instances: number; exact: boolean; rowsInTable: number; expectedRows: number; ledgerRows: number; receivedPerInstance: number[] }[];
    };
    assert.equal(results.kind, 'instances');
    assert.deepEqual(results.runs.map((r) => r.instances), [1, 2]);
    for (const run of results.runs) {
      assert.equal(run.exact, true);
      assert.equal(run.rowsInTable, run.expectedRows);
      assert.equal(run.ledgerRows, 300);
      assert.equal(run.receivedPerInstance.length, run.instances);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
