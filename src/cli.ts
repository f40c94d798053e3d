#!/usr/bin/env node
/**
 * The `login-etl` executable. Turns Node's compile cache on before anything else is loaded
 * (later starts reuse the compiled code), then hands over to the command line.
 */
import module from 'node:module';

// Absent before Node.js 22.1; the command runs without the cache there.
module.enableCompileCache?.();
const { runCli } = await import('./cli/main.js');
await runCli(process.argv.slice(2), process.env);
