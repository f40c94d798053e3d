/**
 * The pipeline in the foreground, as a person runs it: the documented command gets the signals
 * itself (SIGTERM ends it with exit 0 and leaves no process behind), Ctrl-C always ends with the
 * summary, the demo's printed commands work as printed, and `run --drain` on a terminal shows its
 * progress line and its summary table.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { generateSampleEvents } from '../../src/embedded/sample-data.js';
import { generateKeyText } from '../../src/transform/key.js';
import { queueDepth, sendBodies, useServers } from '../helpers/servers.js';

/** The project's root: the documented commands run from there. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** Exactly the README's foreground command. */
const DOCUMENTED = ['dist/src/cli.js'];

const key = generateKeyText();

/**
 * Jobs still running when the file ends (a failed test) are killed, so none outlives it; this
 * hook is registered before useServers() so that it runs before the servers stop.
 */
const jobs = new Set<number>();
after(() => {
  for (const pid of jobs) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Ended already.
    }
  }
});
const servers = useServers();

interface Started {
  readonly pid: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
  stdout(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

/** Starts a command in its own process group, as a shell starts a foreground job. */
function startJob(args: readonly string[], env: Record<string, string>): Started {
  const child = spawn(process.execPath, [...args], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  if (child.pid !== undefined) jobs.add(child.pid);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => {
      if (child.pid !== undefined) jobs.delete(child.pid);
      resolve({ code, signal, stdout, stderr });
    }),
  );
  return {
    pid: child.pid ?? 0,
    exited,
    stdout: () => stdout,
    async waitFor(pattern, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(stdout + stderr)) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`no ${pattern} in output:\n${stdout}\n${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return stdout;
    },
  };
}

/** Processes whose environment holds the marker: what a test started and might have left behind. */
function processesMarked(marker: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/environ`, 'latin1').includes(marker)) found.push(Number(entry));
    } catch {
      // Gone already, or not ours to read.
    }
  }
  return found;
}

async function runEnv(marker: string): Promise<Record<string, string>> {
  return {
    SQS_QUEUE_URL: await servers.queue(),
    AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint,
    DATABASE_URL: await servers.database(),
    PII_KEY: key,
    LOGIN_ETL_HTTP_PORT: '0',
    LOGIN_ETL_WAIT_TIME_SECONDS: '1',
    LOGIN_ETL_TEST_MARKER: marker,
  };
}

describe('the documented foreground command', () => {
  test('SIGTERM to `node dist/src/cli.js run` ends it with exit 0, its summary, and no process left behind', async () => {
    const marker = `foreground-${process.pid}-term`;
    const job = startJob([...DOCUMENTED, 'run'], await runEnv(marker));
    await job.waitFor(/"msg":"pipeline started"/);
    process.kill(job.pid, 'SIGTERM');
    const result = await job.exited;
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /^login-etl: SIGTERM received; finishing batches in flight/m);
    assert.match(result.stderr, /^login-etl: stopped: 0 received, 0 written, 0 rejected, 0 duplicates skipped in \d+\.\d\d s$/m);
    assert.deepEqual(processesMarked(marker), []);
  });

  test('Ctrl-C (SIGINT to the whole job) at --log-level warn still ends with the summary, exit 0', async () => {
    const marker = `foreground-${process.pid}-int`;
    const env = await runEnv(marker);
    await sendBodies(servers.sqsClient, env.SQS_QUEUE_URL ?? '', generateSampleEvents({ count: 20, seed: 31 }).map((e) => e.body));
    const job = startJob([...DOCUMENTED, 'run', '--log-level', 'warn'], env);
    // Nothing is logged at warn: wait until the queue is empty instead.
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if ((await queueDepth(servers.sqsClient, env.SQS_QUEUE_URL ?? '')) === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    process.kill(-job.pid, 'SIGINT');
    const result = await job.exited;
    assert.equal(result.code, 0, result.stderr);
    // At warn, stdout has only the rejection's warning: the summary comes on stderr all the same.
    assert.deepEqual(result.stdout.trim().split('\n').map((line) => (JSON.parse(line) as { msg: string }).msg), ['message rejected']);
    assert.match(result.stderr, /^login-etl: stopped: 20 received, 19 written, 1 rejected, 0 duplicates skipped in \d+\.\d\d s$/m);
    assert.deepEqual(processesMarked(marker), []);
  });
});

describe('login-etl demo --keep', () => {
  test('prints commands that work as printed, and Ctrl-C confirms the clean-up', async () => {
    const marker = `foreground-${process.pid}-demo`;
    const job = startJob([...DOCUMENTED, 'demo', '--keep', '--count', '20'], { LOGIN_ETL_TEST_MARKER: marker });
    const printed = await job.waitFor(/queue URL: /, 120_000);
    const commandLines = printed.split('\n').filter((line) => line.startsWith('  node ') || line.startsWith('  PII_KEY=')).map((line) => line.trim());
    const [send, run, report] = commandLines;
    assert.ok(send?.includes(' send --queue-url http://127.0.0.1:'), printed);
    assert.ok(run?.includes(' run --drain '), printed);
    assert.ok(report?.includes(' report --database-url '), printed);
    // Each exactly as printed, through a shell, from the project's directory, with no AWS settings.
    const shell = (line: string) => spawnSync('sh', ['-c', line], { cwd: ROOT, env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8', timeout: 60_000 });
    const sent = shell(send ?? '');
    assert.equal(sent.status, 0, sent.stderr);
    assert.match(sent.stdout, /^sent 10 messages$/m);
    const ran = shell(`${run ?? ''} --log-level warn`);
    assert.equal(ran.status, 0, ran.stderr);
    const reported = shell(report ?? '');
    assert.equal(reported.status, 0, reported.stderr);
    // The demo's 20 events and the 10 sent, each either a row or a rejection.
    const counts = /^user_logins: (\d+) logins; login_etl\.rejected_messages: (\d+) rejected messages?$/m.exec(reported.stdout);
    assert.equal(Number(counts?.[1]) + Number(counts?.[2]), 30, reported.stdout);

    process.kill(-job.pid, 'SIGINT');
    const result = await job.exited;
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /^login-etl: SIGINT received; stopping; the embedded Postgres and the emulator are deleted next/m);
    assert.match(result.stdout, /^Stopped: the embedded Postgres \(its data directory too\) and the SQS emulator are gone\.$/m);
    assert.deepEqual(processesMarked(marker), []);
  });
});

describe('run --drain on a terminal', () => {
  test('shows the progress line, then the summary table, as a person sees them (util-linux script for a terminal)', async (t) => {
    const env = await runEnv(`foreground-${process.pid}-tty`);
    await sendBodies(servers.sqsClient, env.SQS_QUEUE_URL ?? '', generateSampleEvents({ count: 300, seed: 32 }).map((e) => e.body));
    // Spawned, not spawnSync: the emulator and Postgres client of this test share its event loop.
    const child = spawn('script', ['-qec', `${process.execPath} ${DOCUMENTED.join(' ')} run --drain`, '/dev/null'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', TERM: 'xterm', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    child.stdin.end();
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const outcome = await new Promise<{ status: number | null; error?: Error }>((resolve) => {
      child.on('error', (error) => resolve({ status: null, error }));
      child.on('close', (status) => resolve({ status }));
    });
    const result = { ...outcome, stdout };
    if (result.error !== undefined) {
      t.skip(`no util-linux script to provide a terminal: ${result.error.message}`);
      return;
    }
    assert.equal(result.status, 0, result.stdout);
    // The line is redrawn in place: carriage return, erase line, then the text.
    const frames = result.stdout.split('\r\x1b[2K').map((frame) => frame.replace(/\r?\n.*$/s, ''));
    assert.ok(frames.some((frame) => /^\S \d[\d,]* processed {2}\d[\d,]*\/s {2}(\? left|~\d[\d,]* left)/.test(frame)), JSON.stringify(frames.slice(0, 5)));
    assert.match(result.stdout, /^ {2}received +300\r?$/m);
    assert.match(result.stdout, /^ {2}written +297\r?$/m);
    assert.match(result.stdout, /^ {2}rejected +3\r?$/m);
    assert.match(result.stdout, /^ {2}rate +\d[\d,]* messages\/s\r?$/m);
    // Logs stay at warn while the line is shown: no JSON log line reached the terminal.
    assert.doesNotMatch(result.stdout, /"msg":/);
  });
});
