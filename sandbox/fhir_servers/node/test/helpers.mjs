// Start a real server process for the tests and talk to it over HTTP.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const SERVER = fileURLToPath(new URL('../server.mjs', import.meta.url));
const READY = 'FHIR test server listening on ';

/** A running server: { base, process, stop() }. */
export async function startServer(extra = []) {
  const child = spawn(process.execPath, [SERVER, '--port', '0', '--host', '127.0.0.1', ...extra], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  const base = await new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      output += chunk;
      const line = output.split('\n').find((l) => l.startsWith(READY));
      if (line) resolve(line.slice(READY.length).trim());
    });
    child.on('exit', (code) => reject(new Error(`server exited with ${code} before it was ready`)));
  });
  return {
    base,
    process: child,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const [code] = await once(child, 'exit');
      return code;
    },
  };
}

export const FHIR_JSON = { 'Content-Type': 'application/fhir+json' };

/** A tiny client bound to one base URL; every call resolves to { status, headers, body }. */
export function client(base) {
  const call = async (method, path, body, headers = {}) => {
    const init = { method, headers: { ...headers } };
    if (body !== undefined) {
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
      init.headers = { ...FHIR_JSON, ...headers };
    }
    const response = await fetch(path.startsWith('http') ? path : `${base}${path}`, init);
    const text = await response.text();
    return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
  };
  return {
    get: (path, headers) => call('GET', path, undefined, headers),
    post: (path, body, headers) => call('POST', path, body, headers),
    put: (path, body, headers) => call('PUT', path, body, headers),
    patch: (path, body, headers) =>
      call('PATCH', path, body, { 'Content-Type': 'application/json-patch+json', ...headers }),
    delete: (path, headers) => call('DELETE', path, undefined, headers),
    call,
  };
}

let counter = 0;
/** A value no other test uses, so tests sharing one server do not see each other's data. */
export const unique = (prefix) => `${prefix}-${process.pid}-${Date.now()}-${(counter += 1)}`;

export const patient = (marker, extra = {}) => ({
  resourceType: 'Patient',
  identifier: [{ system: 'urn:test', value: marker }],
  ...extra,
});
export const observation = (extra = {}) => ({
  resourceType: 'Observation',
  status: 'final',
  code: { text: 'eGFR' },
  ...extra,
});

export function transaction(entries, type = 'transaction') {
  return { resourceType: 'Bundle', type, entry: entries };
}
