/**
 * An HTTP proxy in front of an SQS implementation that answers chosen requests itself: with an
 * SQS error (throttling, a 5xx, an expired token) or not at all. Everything else is passed
 * through untouched, so the implementation behind it decides the rest.
 */
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface ProxiedRequest {
  /** The SQS action, from `X-Amz-Target: AmazonSQS.<Action>`. */
  readonly action: string;
  /** The access key id the request was signed with. */
  readonly accessKeyId: string | undefined;
}

export type Fault = { readonly status: number; readonly type: string; readonly message: string } | 'hang';

export interface SqsFaultProxy {
  readonly endpoint: string;
  /** Every request seen, in order, answered by the proxy or not. */
  readonly seen: ProxiedRequest[];
  /** Decides, per request, whether the proxy answers it (undefined: pass it on). */
  fault: (request: ProxiedRequest) => Fault | undefined;
  /**
   * Receipt handles the proxy refuses in DeleteMessageBatch as SQS does (ReceiptHandleIsInvalid,
   * the sender's fault): those entries are taken out of the request passed on and put back into
   * its answer as failed, for implementations that accept any handle.
   */
  readonly refuseReceiptHandles: Set<string>;
  close(): Promise<void>;
}

export async function startSqsFaultProxy(target: string): Promise<SqsFaultProxy> {
  const upstream = new URL(target);
  const sockets = new Set<Socket>();
  const proxy: SqsFaultProxy = {
    endpoint: '',
    seen: [],
    fault: () => undefined,
    refuseReceiptHandles: new Set(),
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const seen: ProxiedRequest = {
        action: String(req.headers['x-amz-target'] ?? '').replace(/^AmazonSQS\./, ''),
        accessKeyId: /Credential=([^/]+)\//.exec(String(req.headers.authorization ?? ''))?.[1],
      };
      proxy.seen.push(seen);
      const fault = proxy.fault(seen);
      if (fault === 'hang') return;
      if (fault !== undefined) {
        res
          .writeHead(fault.status, { 'content-type': 'application/x-amz-json-1.0', 'x-amzn-query-error': `${fault.type};Sender` })
          .end(JSON.stringify({ __type: `com.amazonaws.sqs#${fault.type}`, message: fault.message }));
        return;
      }
      let body = Buffer.concat(chunks);
      const refused: { Id: string }[] = [];
      if (seen.action === 'DeleteMessageBatch' && proxy.refuseReceiptHandles.size > 0) {
        const input = JSON.parse(body.toString('utf8')) as { Entries: { Id: string; ReceiptHandle: string }[] };
        refused.push(...input.Entries.filter((e) => proxy.refuseReceiptHandles.has(e.ReceiptHandle)));
        input.Entries = input.Entries.filter((e) => !proxy.refuseReceiptHandles.has(e.ReceiptHandle));
        body = Buffer.from(JSON.stringify(input));
      }
      const headers: IncomingHttpHeaders = { ...req.headers, 'content-length': String(body.length) };
      const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers }, (answer) => {
        if (refused.length === 0) {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          return;
        }
        const parts: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => parts.push(chunk));
        answer.on('end', () => {
          const output = JSON.parse(Buffer.concat(parts).toString('utf8')) as { Failed?: unknown[] };
          output.Failed = [
            ...(output.Failed ?? []),
            ...refused.map((e) => ({ Id: e.Id, SenderFault: true, Code: 'ReceiptHandleIsInvalid', Message: 'The input receipt handle is not valid.' })),
          ];
          const text = JSON.stringify(output);
          res.writeHead(answer.statusCode ?? 502, { 'content-type': 'application/x-amz-json-1.0', 'content-length': String(Buffer.byteLength(text)) }).end(text);
        });
      });
      forward.on('error', () => res.destroy());
      forward.end(body);
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(proxy, { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
}

/** A server that accepts connections and never answers: every call to it can only end by its deadline. */
export async function startSilentServer(): Promise<{ readonly endpoint: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer(() => undefined);
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
