/**
 * Every unit test file, in one process: what `npm test` runs for test/unit/ (test/run.ts).
 *
 * A unit test needs no server and no child process, so the only cost a process of its own would
 * add is a Node.js start and the loading of its modules, about 0.3 s of CPU per file; in one
 * process they are loaded once. Each file still runs alone as `node --test FILE`, and reports
 * name the file and line of each test as before.
 */
import { readdir } from 'node:fs/promises';

const directory = new URL('./unit/', import.meta.url);
const files = (await readdir(directory, { recursive: true })).filter((file) => file.endsWith('.test.js')).sort();
if (files.length === 0) throw new Error(`no unit test files in ${directory.pathname}`);
for (const file of files) await import(new URL(file, directory).href);
