/**
 * The HTTP side of `run`: `/healthz` (the process is alive and serving), `/readyz` (the
 * dependencies answered the last time they were used and none refuses the work: 200, or 503 with
 * why) and, unless turned off, `/metrics` in the Prometheus text format.
 */
import type { Server } from 'node:http';
import { http } from '../node-http.js';
import type { Registry } from 'prom-client';
import type { Health } from './health.js';

export interface HttpServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startHttpServer(
  health: Health,
  options: { host: string; port: number; metrics?: Registry | undefined },
): Promise<HttpServer> {
  const { metrics } = options;
  const server: Server = http.createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    const send = (status: number, body: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') return send(405, { error: 'method not allowed' });
    if (path === '/healthz') return send(200, { ok: true });
    if (path === '/readyz') {
      const state = health.snapshot();
      return send(state.ready ? 200 : 503, state);
    }
    if (path === '/metrics' && metrics !== undefined) {
      metrics.metrics().then(
        (text) => response.writeHead(200, { 'content-type': metrics.contentType }).end(text),
        () => send(500, { error: 'metrics unavailable' }),
      );
      return;
    }
    return send(404, { error: 'not found' });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : options.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
