// Shared helpers for the Node drivers of the sandbox tests.
//
// Each driver reads its settings from the SCENARIO environment variable (JSON), drives the real
// ably-js 2.x client and prints exactly one JSON result line on stdout.  ably-js is loaded from
// ABLY_JS_NODE_MODULES (the node_modules folder holding the `ably` package).
import { createRequire } from 'node:module';
import path from 'node:path';

const modules = process.env.ABLY_JS_NODE_MODULES;
if (!modules) {
  throw new Error('ABLY_JS_NODE_MODULES is not set');
}
const require = createRequire(path.join(modules, 'noop.js'));
export const Ably = require('ably');

export const settings = JSON.parse(process.env.SCENARIO || '{}');

/** A Realtime client pointed at the sandbox (spec 6.2 options for a plain-HTTP local endpoint). */
export function realtime(extra = {}) {
  return new Ably.Realtime({
    endpoint: '127.0.0.1',
    port: settings.port,
    tls: false,
    transports: ['web_socket'],
    disableConnectivityCheck: true,
    useBinaryProtocol: settings.format === 'msgpack',
    logLevel: 0,
    ...extra,
  });
}

/** A Rest client pointed at the sandbox. */
export function rest(extra = {}) {
  return new Ably.Rest({
    endpoint: '127.0.0.1',
    port: settings.port,
    tls: false,
    useBinaryProtocol: settings.format === 'msgpack',
    logLevel: 0,
    ...extra,
  });
}

export function authOptions(params) {
  return { authUrl: settings.authUrl, authParams: params };
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolve when `check()` is true, reject after `ms`. */
export async function until(check, ms, what) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** Close clients and wait (bounded) for CLOSED, so the sandbox sees an orderly CLOSE. */
export async function closeAll(...clients) {
  await Promise.all(
    clients.map((client) => {
      if (['closed', 'failed', 'initialized'].includes(client.connection.state)) return Promise.resolve();
      const closed = new Promise((resolve) => client.connection.once('closed', resolve));
      client.close();
      return Promise.race([closed, sleep(2000)]);
    }),
  );
  // 'closed' is emitted before the CLOSE frame leaves the socket; let it go out before process.exit.
  await sleep(200);
}

export function errorOf(err) {
  return err ? { code: err.code, statusCode: err.statusCode, message: String(err.message) } : null;
}

/** What a failing scenario reports besides its error (drivers push state changes here). */
export const trace = [];

// Records every connection state change of `client` into `trace` (printed with the result).
export function recordStates(client) {
  client.connection.on((change) => {
    trace.push({ previous: change.previous, current: change.current, reason: change.reason ? change.reason.code : null });
  });
  return trace;
}

/** Run `scenario`, print its result (or the error and the trace) as one JSON line, and exit. */
export async function main(scenario, timeoutMs) {
  const timer = setTimeout(() => {
    console.log(JSON.stringify({ ok: false, error: `scenario timed out after ${timeoutMs} ms`, trace }));
    process.exit(2);
  }, timeoutMs);
  try {
    const result = await scenario();
    console.log(JSON.stringify({ ok: true, ...result }));
    clearTimeout(timer);
    process.exit(0);
  } catch (err) {
    console.log(JSON.stringify({ ok: false, error: String(err && err.stack ? err.stack : err), trace }));
    clearTimeout(timer);
    process.exit(1);
  }
}

/** Run named checks (one after another, or all at once with `together`); each result, or its error. */
export async function runChecks(checks, { together = false } = {}) {
  const results = {};
  const run = async ([name, check]) => {
    try {
      results[name] = await check();
    } catch (err) {
      results[name] = { error: String(err && err.stack ? err.stack : err) };
    }
  };
  if (together) {
    await Promise.all(Object.entries(checks).map(run));
  } else {
    for (const entry of Object.entries(checks)) await run(entry);
  }
  return results;
}
