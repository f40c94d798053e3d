/**
 * The SQS emulator for the chaos soak, in a process of its own so that the soak can stop it
 * (SIGSTOP/SIGCONT) and kill it (SIGKILL) like a real server. fauxqs keeps its queues and
 * messages in SQLite under `--data-dir`, written through on every change, so a restart on the
 * same ports and directory finds every message it had accepted, in-flight ones with their
 * visibility deadline, as real SQS would after an outage.
 *
 * fauxqs listens on `--internal-port`; clients talk to `--port`, a small HTTP proxy in this
 * process that can make one queue unreachable: while a queue is cut, every request naming it
 * ends with its connection closed and no answer, as a network failure looks to a client.
 *
 * Started with `fork(chaos-emulator.js, ['--port', N, '--internal-port', M, '--data-dir', DIR])`.
 * It sends `{ type: 'ready', endpoint }` once listening. `{ type: 'cut', queueName }` starts a
 * cut; `{ type: 'restore', queueName }` ends it and answers
 * `{ type: 'restored', queueName, refused }`, the requests it closed.
 */
import { Agent, createServer, request as httpRequest } from 'node:http';
import { parseArgs } from 'node:util';
import { startFauxqs } from 'fauxqs';

export type ChaosEmulatorCommand = { readonly type: 'cut'; readonly queueName: string } | { readonly type: 'restore'; readonly queueName: string };

export type ChaosEmulatorReply =
  | { readonly type: 'ready'; readonly endpoint: string }
  | { readonly type: 'restored'; readonly queueName: string; readonly refused: number };

/** The queue a request names in its QueueUrl (SQS's JSON protocol), if any. */
function queueNameOf(body: string): string | undefined {
  return /"QueueUrl"\s*:\s*"[^"]*\/\d{12}\/([\w-]{1,80})\/?"/.exec(body)?.[1];
}

async function main(): Promise<void> {
  const send = process.send?.bind(process);
  if (send === undefined) throw new Error('chaos-emulator must be started with fork(), with an IPC channel');
  const { values } = parseArgs({ options: { port: { type: 'string' }, 'internal-port': { type: 'string' }, 'data-dir': { type: 'string' } } });
  const port = Number(values.port);
  const internalPort = Number(values['internal-port']);
  const dataDir = values['data-dir'];
  if (!(port > 0) || !(internalPort > 0) || dataDir === undefined) throw new Error('usage: chaos-emulator --port N --internal-port M --data-dir DIR');

  const fauxqs = await startFauxqs({ port: internalPort, logger: false, dataDir });
  /** Queue name -> requests closed since it was cut. */
  const cut = new Map<string, number>();
  const agent = new Agent({ keepAlive: true });
  const proxy = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const name = queueNameOf(body.toString('utf8'));
      const refused = name === undefined ? undefined : cut.get(name);
      if (name !== undefined && refused !== undefined) {
        cut.set(name, refused + 1);
        req.socket.destroy();
        return;
      }
      const upstream = httpRequest(
        { host: '127.0.0.1', port: internalPort, method: req.method, path: req.url, headers: req.headers, agent },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on('error', () => req.socket.destroy());
      upstream.end(body);
    });
  });
  await new Promise<void>((resolve, reject) => {
    proxy.once('error', reject);
    proxy.listen(port, '127.0.0.1', () => resolve());
  });

  process.on('message', (message: ChaosEmulatorCommand) => {
    if (message.type === 'cut') cut.set(message.queueName, cut.get(message.queueName) ?? 0);
    else if (message.type === 'restore') {
      const refused = cut.get(message.queueName) ?? 0;
      cut.delete(message.queueName);
      send({ type: 'restored', queueName: message.queueName, refused } satisfies ChaosEmulatorReply);
    }
  });
  process.on('disconnect', () => {
    proxy.closeAllConnections();
    proxy.close();
    agent.destroy();
    void fauxqs.stop().finally(() => process.exit(0));
  });
  send({ type: 'ready', endpoint: `http://127.0.0.1:${port}` } satisfies ChaosEmulatorReply);
}

main().catch((err: unknown) => {
  process.stderr.write(`chaos-emulator: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
