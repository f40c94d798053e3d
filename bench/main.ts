/**
 * `npm run bench`: the pipeline measured against its own ceilings, in one run on one machine.
 *
 * Starts the SQS emulator in a process of its own and an embedded Postgres, then, each from a
 * freshly loaded queue (loading is not measured), runs as separate child processes:
 *   queue-stock     ReceiveMessage(10) + DeleteMessageBatch only, stock SDK client at its defaults
 *   queue-pipeline  the same through the pipeline's own Queue on the lean client (createPipelineQueue)
 *   queue-sdk       the same through the pipeline's Queue on the SDK client tuned for it (--sqs-client sdk)
 *   copy            COPY of the same events, already masked, into user_logins
 *   pipeline        `login-etl run --drain`, ledger and all checks on
 *   pipeline-sdk    the same with `--sqs-client sdk`
 *   naive           one INSERT per message, plain SHA-256, stock client (naive-consumer.ts)
 * and prints msgs/s, CPU per 10k messages, peak RSS and the emulator's CPU for each, the ratios
 * the targets are about, and writes everything to bench/results/<timestamp>.json.
 *
 * `--follow-minutes M` instead runs `login-etl run` against a steady producer for M minutes and
 * reports whether the consumer's memory stays flat.
 *
 * `--lag-seconds S` measures the pipeline's drain rate (scenario 3), then runs the same producer
 * for S seconds at half that rate and reports the p50 and p99 of the event lag (SentTimestamp to
 * commit) from the consumer's own histogram, login_etl_event_lag_seconds.
 */
import { SQSClient } from '@aws-sdk/client-sqs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { startLocalPostgres, templateFrom } from '../src/embedded/postgres.js';
import { generateSampleEvents } from '../src/embedded/sample-data.js';
import { EMULATOR_CREDENTIALS } from '../src/embedded/sqs.js';
import { measureStartup, startupTable } from './startup.js';
import { distFile } from './child.js';
import { type BenchOptions, type Environment, LABELS, machine, type ScenarioName, type ScenarioResult, SCENARIOS, startEmulator, writeResults } from './harness.js';
import { follow, scaleRun } from './modes.js';
import { ratios } from './ratios.js';
import { fixed, scaleTable, table } from './report.js';
import { measured, warmUp } from './scenarios.js';

function parseOptions(argv: readonly string[]): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      messages: { type: 'string', default: '50000' },
      concurrency: { type: 'string', default: '16' },
      'naive-concurrency': { type: 'string', default: '1' },
      seed: { type: 'string', default: '1' },
      only: { type: 'string' },
      'follow-minutes': { type: 'string' },
      instances: { type: 'string' },
      'follow-rate': { type: 'string', default: '200' },
      'lag-seconds': { type: 'string' },
      'sample-seconds': { type: 'string', default: '5' },
      'startup-runs': { type: 'string', default: '11' },
      'results-dir': { type: 'string', default: distFile('../bench/results') },
      'profile-dir': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'npm run bench -- [--messages 50000] [--concurrency 16] [--naive-concurrency 1] [--seed 1]\n' +
        `               [--only ${SCENARIOS.join(',')}] [--startup-runs 11] [--results-dir DIR] [--profile-dir DIR]\n` +
        'npm run bench -- --follow-minutes M [--follow-rate 200] [--sample-seconds 5]\n' +
        'npm run bench -- --instances 1,2,4 [--messages 50000] [--concurrency 16]\n' +
        'npm run bench -- --lag-seconds S [--messages 50000] [--concurrency 16]\n',
    );
    process.exit(0);
  }
  const whole = (name: string, value: string | undefined, min: number) => {
    const n = Number(value);
    if (value === undefined || !Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number >= ${min}`);
    return n;
  };
  const only = (values.only?.split(',') ?? [...SCENARIOS]).map((name) => {
    if (!(SCENARIOS as readonly string[]).includes(name)) throw new Error(`--only: unknown scenario ${name}`);
    return name as ScenarioName;
  });
  const followMinutes = values['follow-minutes'] === undefined ? undefined : Number(values['follow-minutes']);
  if (followMinutes !== undefined && !(followMinutes > 0)) throw new Error('--follow-minutes must be a positive number');
  const instances = values.instances?.split(',').map((n) => whole('instances', n, 1));
  return {
    messages: whole('messages', values.messages, 1),
    concurrency: whole('concurrency', values.concurrency, 1),
    naiveConcurrency: whole('naive-concurrency', values['naive-concurrency'], 1),
    seed: whole('seed', values.seed, 0),
    only,
    followMinutes,
    instances,
    followRate: whole('follow-rate', values['follow-rate'], 1),
    lagSeconds: values['lag-seconds'] === undefined ? undefined : whole('lag-seconds', values['lag-seconds'], 1),
    sampleSeconds: whole('sample-seconds', values['sample-seconds'], 1),
    startupRuns: whole('startup-runs', values['startup-runs'], 1),
    resultsDir: values['results-dir'] ?? 'bench/results',
    profileDir: values['profile-dir'],
  };
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const loadStart = loadavg();
  const startedAt = new Date().toISOString();
  const log = (line: string) => process.stderr.write(`bench: ${line}\n`);
  log(`starting the emulator and Postgres; ${options.messages} messages`);
  const [emulator, postgres] = await Promise.all([startEmulator(), startLocalPostgres({ template: templateFrom(process.env) })]);
  const sqs = new SQSClient({ region: 'us-east-1', endpoint: emulator.endpoint, credentials: EMULATOR_CREDENTIALS });
  try {
    const events = generateSampleEvents({ count: options.messages, seed: options.seed });
    const env: Environment = {
      options,
      emulator,
      postgres,
      sqs,
      bodies: events.map((e) => e.body),
      valid: events.filter((e) => e.valid).length,
    };
    let output: Record<string, unknown>;
    if (options.instances !== undefined) {
      log('warming up the emulator (not measured)');
      await warmUp(env);
      const runs: Record<string, unknown>[] = [];
      for (const n of options.instances) {
        log(`${n} instance(s) draining one queue`);
        runs.push(await scaleRun(env, n));
      }
      process.stdout.write(`\n${scaleTable(runs)}\n`);
      output = { kind: 'instances', runs };
    } else if (options.lagSeconds !== undefined) {
      log('warming up the emulator (not measured)');
      await warmUp(env);
      log(`${LABELS.pipeline}: measuring the drain rate`);
      const drained = await measured(env, 'pipeline');
      const rate = Math.max(1, Math.floor(drained.msgsPerSecond / 2));
      log(`event lag: ${options.lagSeconds} s at ${rate} msgs/s, half of the ${fixed(drained.msgsPerSecond, 0)} msgs/s measured`);
      const followed = await follow(env, options.lagSeconds / 60, rate, true);
      const lag = followed.eventLag as { p50Ms: number | undefined; p99Ms: number | undefined; observed: number };
      process.stdout.write(
        `event lag at ${rate} msgs/s (half of the ${fixed(drained.msgsPerSecond, 0)} msgs/s drain rate), ${lag.observed} messages: ` +
          `p50 ${String(lag.p50Ms)} ms, p99 ${String(lag.p99Ms)} ms (target p99 < 250 ms: ${lag.p99Ms !== undefined && lag.p99Ms < 250 ? 'met' : 'NOT met'})\n`,
      );
      output = { kind: 'lag', drain: drained, follow: followed };
    } else if (options.followMinutes !== undefined) {
      log(`follow mode: ${options.followMinutes} min at ${options.followRate} msgs/s`);
      const memory = await follow(env, options.followMinutes, options.followRate);
      process.stdout.write(
        `follow ${options.followMinutes} min at ${options.followRate} msgs/s: sent ${String(memory.sent)}, committed ${String(memory.committed)}; ` +
          `RSS first quarter ${fixed(memory.firstQuartileMeanRssMb as number, 1)} MB, last quarter ${fixed(memory.lastQuartileMeanRssMb as number, 1)} MB ` +
          `(${fixed(memory.growthPercent as number, 1)}%): ${memory.flat ? 'flat' : 'NOT flat'}\n`,
      );
      output = { kind: 'follow', memory };
    } else {
      log('warming up the emulator (not measured)');
      await warmUp(env);
      const results: ScenarioResult[] = [];
      for (const name of options.only) {
        log(`${LABELS[name]}: loading and measuring`);
        const r = await measured(env, name);
        log(`${LABELS[name]}: ${fixed(r.msgsPerSecond, 0)} msgs/s`);
        results.push(r);
      }
      const computed = ratios(results);
      process.stdout.write(`\n${table(results, computed)}\n`);
      log('start-up: login-etl --help, and run --drain of 100 messages');
      const startup = await measureStartup(
        { sqs, sqsEndpoint: emulator.endpoint, postgres },
        { help: options.startupRuns, drain: Math.max(1, Math.floor(options.startupRuns / 2)) },
      );
      process.stdout.write(`\n${startupTable(startup)}\n`);
      output = { kind: 'drain', scenarios: results, ratios: computed, startup };
    }
    const file = await writeResults(options.resultsDir, {
      startedAt,
      finishedAt: new Date().toISOString(),
      options,
      machine: { ...machine(), loadAverageAtStart: loadStart, loadAverageAtEnd: loadavg() },
      ...output,
    });
    process.stdout.write(`\nresults: ${file}\n`);
  } finally {
    sqs.destroy();
    const emulatorFinal = await emulator.stop();
    if (emulatorFinal !== undefined) log(`emulator used ${emulatorFinal.cpuSeconds.toFixed(1)} s CPU in all, peak RSS ${emulatorFinal.maxRssMb.toFixed(0)} MB`);
    await postgres.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
