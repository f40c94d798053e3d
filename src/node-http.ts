/**
 * node:http and node:https, taken as Node's built-in modules rather than through an ESM
 * `import`. An import builds a module facade that reads every export once, and reading
 * node:http's WebSocket, EventSource and friends loads the copy of undici bundled in Node.js:
 * 60 to 150 ms of start-up spent on code nothing here uses. Both SQS clients and the health
 * server use these.
 */
export const http = process.getBuiltinModule('node:http');
export const https = process.getBuiltinModule('node:https');
