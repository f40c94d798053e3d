/**
 * The bench's other modes: a steady producer for memory (`--follow-minutes`) and event lag
 * (`--lag-seconds`), and one queue drained by several instances (`--instances`).
 */
import { DeleteQueueCommand } from '@aws-sdk/client-sqs';
import { sendLines } from '../src/send.js';
import { histogramBuckets, histogramQuantile } from './lag.js';
import { distFile, jsonLine, startChild } from './child.js';
import { processCpuSeconds, statusMb } from './proc.js';
import { bracket, count, type Environment, freePort, freshDatabase, freshQueue, pipelineArgs, pipelineEnv, type PipelineLog, queueDepth } from './harness.js';

/** The p50 and p99 of login_etl_event_lag_seconds as the consumer's /metrics reports them, in ms. */
export async function scrapeLag(port: number): Promise<{ p50Ms: number | undefined; p99Ms: number | undefined; observed: number }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const buckets = histogramBuckets(text, 'login_etl_event_lag_seconds');
  const ms = (q: number) => {
    const seconds = histogramQuantile(q, buckets);
    return seconds === undefined ? undefined : Math.round(seconds * 1000);
  };
  return { p50Ms: ms(0.5), p99Ms: ms(0.99), observed: buckets.at(-1)?.count ?? 0 };
}

/**
 * `--follow-minutes`: a steady producer at `rate`, `run` without --drain, the consumer's RSS
 * sampled; with `lag`, the consumer's event-lag histogram is read once the queue is empty.
 */
export async function follow(env: Environment, minutes: number, rate: number, lag = false): Promise<Record<string, unknown>> {
  const { options } = env;
  const databaseUrl = await freshDatabase(env.postgres, false);
  const { queueUrl } = await freshQueue(env, []);
  const metricsPort = lag ? await freePort() : undefined;
  const childEnv = { ...pipelineEnv(env, queueUrl, databaseUrl), ...(metricsPort === undefined ? {} : { LOGIN_ETL_HTTP_PORT: String(metricsPort), LOGIN_ETL_HTTP_HOST: '127.0.0.1' }) };
  let onStarted: () => void = () => undefined;
  const started$ = new Promise<void>((resolve) => {
    onStarted = resolve;
  });
  const running = startChild(distFile('src/cli.js'), pipelineArgs(env, false), {
    env: childEnv,
    onLine: (line) => {
      if (jsonLine<PipelineLog>(line, 'msg')?.msg === 'pipeline started') onStarted();
    },
  });
  const pid = running.child.pid;
  if (pid === undefined) throw new Error('could not start login-etl run');
  // Messages sent while the consumer starts up would measure its start-up, not its lag.
  await Promise.race([started$, running.exited.then(() => Promise.reject(new Error('login-etl run exited before it started')))]);
  const samples: { atSeconds: number; rssMb: number }[] = [];
  const started = performance.now();
  const endAt = started + minutes * 60_000;
  const tickMs = 100;
  const perTick = rate / (1000 / tickMs);
  let owed = 0;
  let sent = 0;
  let nextSample = started;
  let cursor = 0;
  const sampleRss = () => {
    const rssMb = statusMb(pid, 'VmRSS');
    if (rssMb !== undefined) samples.push({ atSeconds: Math.round((performance.now() - started) / 1000), rssMb });
  };
  // The producer: a fixed number of messages every 100 ms, so the rate holds even if a send is slow.
  while (performance.now() < endAt) {
    const tickStart = performance.now();
    owed += perTick;
    const n = Math.floor(owed);
    owed -= n;
    const bodies: string[] = [];
    for (let i = 0; i < n; i += 1) {
      bodies.push(env.bodies[cursor % env.bodies.length] ?? '{}');
      cursor += 1;
    }
    if (bodies.length > 0) sent += await sendLines(env.sqs, queueUrl, bodies);
    if (performance.now() >= nextSample) {
      sampleRss();
      nextSample += options.sampleSeconds * 1000;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, tickMs - (performance.now() - tickStart))));
  }
  // Let the consumer catch up, then stop it as an operator would.
  const drainDeadline = performance.now() + 60_000;
  while ((await queueDepth(env.sqs, queueUrl)) > 0 && performance.now() < drainDeadline) await new Promise((r) => setTimeout(r, 500));
  sampleRss();
  const eventLag = metricsPort === undefined ? undefined : await scrapeLag(metricsPort);
  running.child.kill('SIGTERM');
  const done = await running.exited;
  const rows = await count(databaseUrl, 'SELECT count(*)::int AS n FROM login_etl.processed_messages');
  // The first fifth (at least 10 s) is start-up: modules load and V8's heap grows to its working
  // size. Flat or not is judged on the samples after it.
  const warmUpSeconds = Math.max(10, minutes * 60 * 0.2);
  const steady = samples.filter((s) => s.atSeconds >= warmUpSeconds);
  const quarter = Math.max(1, Math.floor(steady.length / 4));
  const mean = (xs: readonly { rssMb: number }[]) => xs.reduce((s, x) => s + x.rssMb, 0) / Math.max(1, xs.length);
  const firstQuartileMb = mean(steady.slice(0, quarter));
  const lastQuartileMb = mean(steady.slice(-quarter));
  const growthPercent = ((lastQuartileMb - firstQuartileMb) / firstQuartileMb) * 100;
  return {
    minutes,
    rateMsgsPerSecond: rate,
    ...(eventLag === undefined ? {} : { eventLag }),
    sent,
    committed: rows,
    exitCode: done.code,
    peakRssMb: done.usage?.maxRssMb,
    cpuSeconds: done.usage?.cpuSeconds,
    samples,
    warmUpSeconds,
    firstQuartileMeanRssMb: firstQuartileMb,
    lastQuartileMeanRssMb: lastQuartileMb,
    growthPercent,
    flat: growthPercent <= 10,
    flatMeans: 'after the warm-up, mean RSS of the last quarter of the samples at most 10% above the mean of the first quarter',
  };
}

/** One drain of a full queue by `count` `login-etl run --drain` processes started together. */
export async function scaleRun(env: Environment, instanceCount: number): Promise<Record<string, unknown>> {
  const databaseUrl = await freshDatabase(env.postgres, false);
  const { queueUrl } = await freshQueue(env, env.bodies);
  const instances = Array.from({ length: instanceCount }, () => ({
    startedAtMs: undefined as number | undefined,
    lastCommitAtMs: undefined as number | undefined,
    summary: undefined as Record<string, unknown> | undefined,
    pid: undefined as number | undefined,
    cpuAtStart: undefined as number | undefined,
  }));
  const { value: children, emulatorCpu, postgresCpu } = await bracket(env, async () => {
    const childEnv = pipelineEnv(env, queueUrl, databaseUrl);
    const running = instances.map((instance) => {
      const child = startChild(distFile('src/cli.js'), pipelineArgs(env, true), {
        env: childEnv,
        onLine: (line) => {
          const log = jsonLine<PipelineLog>(line, 'msg');
          const atMs = log?.time === undefined ? undefined : Date.parse(log.time);
          if (log?.msg === 'batch committed') instance.lastCommitAtMs = atMs;
          else if (log?.msg === 'pipeline started') {
            instance.startedAtMs = atMs;
            instance.cpuAtStart = instance.pid === undefined ? undefined : processCpuSeconds(instance.pid);
          } else if (log?.msg === 'pipeline stopped') instance.summary = log as Record<string, unknown>;
        },
      });
      instance.pid = child.child.pid;
      return child.exited;
    });
    const done = await Promise.all(running);
    const failed = done.find((d) => d.code !== 0);
    if (failed !== undefined) throw new Error(`login-etl run exited with ${failed.code ?? failed.signal}:\n${failed.stderrTail.slice(-4_000)}`);
    return done;
  });
  const starts = instances.flatMap((i) => i.startedAtMs ?? []);
  const commits = instances.flatMap((i) => i.lastCommitAtMs ?? []);
  if (starts.length !== instanceCount || commits.length === 0) throw new Error('an instance logged no start, or none committed');
  const elapsedMs = Math.max(...commits) - Math.min(...starts);
  const cpuSeconds = children.reduce((sum, c, i) => sum + (c.usage?.cpuSeconds ?? 0) - (instances[i]?.cpuAtStart ?? 0), 0);
  const rows = await count(databaseUrl, 'SELECT count(*)::int AS n FROM user_logins');
  const rejected = await count(databaseUrl, 'SELECT count(*)::int AS n FROM login_etl.rejected_messages');
  const ledger = await count(databaseUrl, 'SELECT count(*)::int AS n FROM login_etl.processed_messages');
  const left = await queueDepth(env.sqs, queueUrl);
  await env.sqs.send(new DeleteQueueCommand({ QueueUrl: queueUrl }));
  const per10k = (seconds: number | undefined) => (seconds === undefined ? undefined : (seconds / env.bodies.length) * 10_000);
  return {
    instances: instanceCount,
    messages: env.bodies.length,
    elapsedMs: Math.round(elapsedMs),
    msgsPerSecond: env.bodies.length / (elapsedMs / 1000),
    consumerCpuSecondsPer10k: per10k(cpuSeconds),
    emulatorCpuSecondsPer10k: per10k(emulatorCpu),
    postgresCpuSecondsPer10k: per10k(postgresCpu),
    peakRssMbPerInstance: children.map((c) => c.usage?.maxRssMb),
    receivedPerInstance: instances.map((i) => i.summary?.received),
    duplicatesSkipped: instances.reduce((sum, i) => sum + Number(i.summary?.duplicates ?? 0), 0),
    rowsInTable: rows,
    expectedRows: env.valid,
    rejectedRows: rejected,
    expectedRejected: env.bodies.length - env.valid,
    ledgerRows: ledger,
    leftInQueue: left,
    exact: rows === env.valid && rejected === env.bodies.length - env.valid && ledger === env.bodies.length && left === 0,
    window: "first 'pipeline started' line to the last 'batch committed' line of any instance; CPU of all instances from their 'pipeline started' to exit",
  };
}
