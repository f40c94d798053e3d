/**
 * The SQS emulator (src/embedded/sqs.ts) in a process of its own, so that the bench can measure
 * its CPU apart from the consumer's. Started with `fork`: it sends `{ type: 'ready', endpoint }`
 * once listening, answers `{ type: 'usage' }` with its CPU time and memory, and on SIGTERM
 * (or a `{ type: 'stop' }`) prints its final usage as a JSON line and exits.
 */
import { startLocalSqs } from '../src/embedded/sqs.js';

export interface EmulatorUsage {
  readonly type: 'usage';
  /** User + system CPU since the emulator process started, in seconds. */
  readonly cpuSeconds: number;
  readonly rssMb: number;
  readonly maxRssMb: number;
}

export type EmulatorReply = { readonly type: 'ready'; readonly endpoint: string } | EmulatorUsage;

function usage(): EmulatorUsage {
  const cpu = process.cpuUsage();
  return {
    type: 'usage',
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    rssMb: process.memoryUsage.rss() / 1024 / 1024,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
  };
}

async function main(): Promise<void> {
  const send = process.send?.bind(process);
  if (send === undefined) throw new Error('emulator-server must be started with fork(), with an IPC channel');
  const sqs = await startLocalSqs();
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`${JSON.stringify(usage())}\n`);
    await sqs.stop();
    process.disconnect?.();
  };
  process.on('SIGTERM', () => void stop());
  process.on('disconnect', () => void stop());
  process.on('message', (message: { type?: unknown }) => {
    if (message.type === 'usage') send(usage());
    else if (message.type === 'stop') void stop();
  });
  send({ type: 'ready', endpoint: sqs.endpoint } satisfies EmulatorReply);
}

main().catch((err: unknown) => {
  process.stderr.write(`emulator-server: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
