/**
 * The scenarios of `npm run bench`, each a child process measured from a freshly loaded queue:
 * the queue ceilings, the COPY ceiling, the pipeline on each SQS client and the naive consumer.
 */
import { DeleteQueueCommand } from '@aws-sdk/client-sqs';
import { distFile, jsonLine, runChild, startChild } from './child.js';
import type { CopyReport } from './copy-ceiling.js';
import type { NaiveReport } from './naive-consumer.js';
import { machineBusyCpuSeconds, postgresCpuSeconds, processCpuSeconds } from './proc.js';
import type { CeilingReport } from './queue-ceiling.js';
import { bracket, count, type Environment, freshDatabase, freshQueue, pipelineArgs, pipelineEnv, type PipelineLog, profileArgs, queueDepth, result, type ScenarioName, type ScenarioResult } from './harness.js';

export async function queueCeiling(env: Environment, client: 'stock' | 'pipeline' | 'sdk'): Promise<ScenarioResult> {
  const { queueUrl, loadMs } = await freshQueue(env, env.bodies);
  let report: CeilingReport | undefined;
  const { value: child, emulatorCpu } = await bracket(env, () =>
    runChild(
      distFile('bench/queue-ceiling.js'),
      ['--client', client, '--endpoint', env.emulator.endpoint, '--queue-url', queueUrl, '--messages', String(env.bodies.length), '--concurrency', String(env.options.concurrency)],
      { nodeArgs: profileArgs(env), onLine: (line) => (report = jsonLine<CeilingReport>(line, 'ceiling') ?? report) },
    ),
  );
  if (report === undefined || child.usage === undefined) throw new Error(`queue ceiling (${client}) reported nothing`);
  const left = await queueDepth(env.sqs, queueUrl);
  await env.sqs.send(new DeleteQueueCommand({ QueueUrl: queueUrl }));
  return result(
    client === 'stock' ? 'queue-stock' : client === 'sdk' ? 'queue-sdk' : 'queue-pipeline',
    { ...report, peakRssMb: child.usage.maxRssMb, processWallMs: child.wallMs, processCpuSeconds: child.usage.cpuSeconds },
    emulatorCpu,
    undefined,
    { loadMs: Math.round(loadMs), receives: report.receives, emptyReceives: report.emptyReceives, concurrency: env.options.concurrency, leftInQueue: left },
  );
}

export async function copyCeiling(env: Environment): Promise<ScenarioResult> {
  const databaseUrl = await freshDatabase(env.postgres, true);
  let report: CopyReport | undefined;
  const postgresBefore = postgresCpuSeconds();
  const child = await runChild(distFile('bench/copy-ceiling.js'), ['--database-url', databaseUrl, '--messages', String(env.options.messages), '--seed', String(env.options.seed)], {
    onLine: (line) => (report = jsonLine<CopyReport>(line, 'ceiling') ?? report),
  });
  const postgresAfter = postgresCpuSeconds();
  if (report === undefined || child.usage === undefined) throw new Error('COPY ceiling reported nothing');
  const rows = await count(databaseUrl, 'SELECT count(*)::int AS n FROM user_logins');
  return result(
    'copy',
    { messages: report.rows, elapsedMs: report.elapsedMs, cpuSeconds: report.cpuSeconds, peakRssMb: child.usage.maxRssMb, processWallMs: child.wallMs, processCpuSeconds: child.usage.cpuSeconds },
    undefined,
    // Includes the CREATE of nothing but the COPY itself: the child connects, copies and leaves.
    postgresBefore === undefined || postgresAfter === undefined ? undefined : postgresAfter - postgresBefore,
    { rowsInTable: rows, note: 'rows are the accepted events (malformed ones produce no row); masking happens before the clock starts; peak RSS includes the prepared rows' },
  );
}

export async function pipelineRun(env: Environment, sqsClient: 'lean' | 'sdk'): Promise<ScenarioResult> {
  const databaseUrl = await freshDatabase(env.postgres, false);
  const { queueUrl, loadMs } = await freshQueue(env, env.bodies);
  let startedAtMs: number | undefined;
  let lastCommitAtMs: number | undefined;
  let cpuAtStart: number | undefined;
  let summary: Record<string, unknown> | undefined;
  let pid: number | undefined;
  const { value: child, emulatorCpu, postgresCpu } = await bracket(env, async () => {
    const running = startChild(distFile('src/cli.js'), pipelineArgs(env, true, sqsClient), {
      env: pipelineEnv(env, queueUrl, databaseUrl),
      nodeArgs: profileArgs(env),
      onLine: (line) => {
        const log = jsonLine<PipelineLog>(line, 'msg');
        if (log === undefined) return;
        const atMs = log.time === undefined ? undefined : Date.parse(log.time);
        if (log.msg === 'batch committed') lastCommitAtMs = atMs;
        else if (log.msg === 'pipeline started') {
          startedAtMs = atMs;
          cpuAtStart = pid === undefined ? undefined : processCpuSeconds(pid);
        } else if (log.msg === 'pipeline stopped') summary = log as Record<string, unknown>;
      },
    });
    pid = running.child.pid;
    const done = await running.exited;
    if (done.code !== 0) throw new Error(`login-etl run exited with ${done.code ?? done.signal}:\n${done.stderrTail.slice(-4_000)}`);
    return done;
  });
  if (child.usage === undefined || startedAtMs === undefined || lastCommitAtMs === undefined || summary === undefined) {
    throw new Error('the pipeline run logged no start, commit or summary');
  }
  const rows = await count(databaseUrl, 'SELECT count(*)::int AS n FROM user_logins');
  const ledger = await count(databaseUrl, 'SELECT count(*)::int AS n FROM login_etl.processed_messages');
  const left = await queueDepth(env.sqs, queueUrl);
  await env.sqs.send(new DeleteQueueCommand({ QueueUrl: queueUrl }));
  const cpuSeconds = child.usage.cpuSeconds - (cpuAtStart ?? 0);
  return result(
    sqsClient === 'sdk' ? 'pipeline-sdk' : 'pipeline',
    { messages: env.bodies.length, elapsedMs: lastCommitAtMs - startedAtMs, cpuSeconds, peakRssMb: child.usage.maxRssMb, processWallMs: child.wallMs, processCpuSeconds: child.usage.cpuSeconds },
    emulatorCpu,
    postgresCpu,
    {
      loadMs: Math.round(loadMs),
      args: pipelineArgs(env, true, sqsClient),
      window: "'pipeline started' log line to the last 'batch committed' line; CPU from 'pipeline started' to exit (drain check included)",
      cpuAtStartSeconds: cpuAtStart,
      summary,
      rowsInTable: rows,
      expectedRows: env.valid,
      ledgerRows: ledger,
      leftInQueue: left,
    },
  );
}

export async function naiveRun(env: Environment): Promise<ScenarioResult> {
  const databaseUrl = await freshDatabase(env.postgres, true);
  const { queueUrl, loadMs } = await freshQueue(env, env.bodies);
  let report: NaiveReport | undefined;
  const { value: child, emulatorCpu, postgresCpu } = await bracket(env, () =>
    runChild(
      distFile('bench/naive-consumer.js'),
      ['--endpoint', env.emulator.endpoint, '--queue-url', queueUrl, '--database-url', databaseUrl, '--messages', String(env.bodies.length), '--concurrency', String(env.options.naiveConcurrency)],
      { nodeArgs: profileArgs(env), onLine: (line) => (report = jsonLine<NaiveReport>(line, 'naive') ?? report) },
    ),
  );
  if (report === undefined || child.usage === undefined) throw new Error('the naive consumer reported nothing');
  const rows = await count(databaseUrl, 'SELECT count(*)::int AS n FROM user_logins');
  await env.sqs.send(new DeleteQueueCommand({ QueueUrl: queueUrl }));
  return result(
    'naive',
    { ...report, peakRssMb: child.usage.maxRssMb, processWallMs: child.wallMs, processCpuSeconds: child.usage.cpuSeconds },
    emulatorCpu,
    postgresCpu,
    { loadMs: Math.round(loadMs), concurrency: env.options.naiveConcurrency, inserted: report.inserted, skipped: report.skipped, rowsInTable: rows },
  );
}

/** Runs a scenario, and reads how busy the rest of the machine was meanwhile (loading included). */
export async function measured(env: Environment, name: ScenarioName): Promise<ScenarioResult> {
  const busyBefore = machineBusyCpuSeconds();
  const emulatorBefore = await env.emulator.usage();
  const postgresBefore = postgresCpuSeconds();
  const started = performance.now();
  const r = await RUNNERS[name](env);
  const scenarioWallMs = Math.round(performance.now() - started);
  const busyAfter = machineBusyCpuSeconds();
  const emulatorAfter = await env.emulator.usage();
  const postgresAfter = postgresCpuSeconds();
  const ours = (r.processCpuSeconds ?? 0) + (emulatorAfter.cpuSeconds - emulatorBefore.cpuSeconds) + ((postgresAfter ?? 0) - (postgresBefore ?? 0));
  // The bench's own process (loading the queue) counts as "other" too; it is small beside a run.
  const otherCpuSeconds = busyBefore === undefined || busyAfter === undefined ? undefined : busyAfter - busyBefore - ours;
  return { ...r, otherCpuSeconds, scenarioWallMs };
}

/**
 * Not measured: a few thousand messages through the emulator first, so that the first scenario
 * does not pay for the emulator's JIT warm-up and the others do not get it for free.
 */
export async function warmUp(env: Environment): Promise<void> {
  const bodies = env.bodies.slice(0, WARM_UP_MESSAGES);
  const { queueUrl } = await freshQueue(env, bodies);
  await runChild(distFile('bench/queue-ceiling.js'), [
    '--client', 'stock', '--endpoint', env.emulator.endpoint, '--queue-url', queueUrl, '--messages', String(bodies.length), '--concurrency', String(env.options.concurrency),
  ]);
  await env.sqs.send(new DeleteQueueCommand({ QueueUrl: queueUrl }));
}

export const WARM_UP_MESSAGES = 5_000;

export const RUNNERS: Record<ScenarioName, (env: Environment) => Promise<ScenarioResult>> = {
  'queue-stock': (env) => queueCeiling(env, 'stock'),
  'queue-pipeline': (env) => queueCeiling(env, 'pipeline'),
  'queue-sdk': (env) => queueCeiling(env, 'sdk'),
  copy: copyCeiling,
  pipeline: (env) => pipelineRun(env, 'lean'),
  'pipeline-sdk': (env) => pipelineRun(env, 'sdk'),
  naive: naiveRun,
};
