/** `npm run bench:startup`: the start-up figures alone, on an in-process emulator and an embedded Postgres. */
import { startLocalPostgres } from '../src/embedded/postgres.js';
import { startLocalSqs } from '../src/embedded/sqs.js';
import { measureStartup, startupTable } from './startup.js';

const [sqs, postgres] = await Promise.all([startLocalSqs(), startLocalPostgres()]);
try {
  process.stdout.write(`${startupTable(await measureStartup({ sqs: sqs.client, sqsEndpoint: sqs.endpoint, postgres }))}\n`);
} finally {
  await sqs.stop();
  await postgres.stop();
}
