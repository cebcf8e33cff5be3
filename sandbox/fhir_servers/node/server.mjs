// A FHIR R4 test server around Medplum's engine (see README.md).
//   node server.mjs --port 0 [--host 127.0.0.1] [--base-path /fhir] [--require-bearer TOKEN] [--log-requests FILE]
// Prints one line when ready, "FHIR test server listening on http://127.0.0.1:<port>/fhir", and
// exits cleanly on SIGTERM/SIGINT.
import { appendFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

const USAGE =
  'usage: node server.mjs [--port 8080 (0: any free port)] [--host 127.0.0.1] [--base-path /fhir]\n' +
  '                       [--require-bearer TOKEN] [--log-requests FILE]\n';
let options;
try {
  ({ values: options } = parseArgs({
    options: {
      port: { type: 'string', default: '8080' },
      host: { type: 'string', default: '127.0.0.1' },
      'base-path': { type: 'string', default: '/fhir' },
      'require-bearer': { type: 'string' },
      'log-requests': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }));
} catch (error) {
  process.stderr.write(`${error.message}\n${USAGE}`);
  process.exit(2);
}
if (options.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const port = Number(options.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`--port must be 0..65535, not ${options.port}\n${USAGE}`);
  process.exit(2);
}
const basePath = `/${options['base-path'].replace(/^\/+|\/+$/g, '')}`.replace(/^\/$/, '');

// Loading the R4 definitions takes a second or two; only then is the server ready.
const { FhirService } = await import('./lib/service.mjs');
const { HttpError, errorResponse, outcome } = await import('./lib/outcomes.mjs');
const { preloadTerminology } = await import('./lib/validation.mjs');
const { loadProfiles } = await import('./lib/profiles.mjs');
preloadTerminology();
loadProfiles(); // fhir_profiles/structure_definitions: Countersign's own profiles

const MAX_BODY = 64 * 1024 * 1024;
const JSON_TYPES = new Set(['application/fhir+json', 'application/json', 'application/json+fhir', 'text/json']);
const FORM = 'application/x-www-form-urlencoded';
const PATCH_TYPE = 'application/json-patch+json';
let service;

const server = http.createServer(async (req, res) => {
  let url;
  try {
    url = new URL(req.url, 'http://localhost');
  } catch {
    return send(req, res, 400, outcome('error', 'invalid', 'malformed request URL'));
  }
  logRequest(req, url);
  const { pathname } = url;
  if (pathname !== basePath && !pathname.startsWith(`${basePath}/`)) {
    return send(req, res, 404, outcome('error', 'not-found', `not a FHIR path; the base is ${basePath || '/'}`));
  }
  if (options['require-bearer'] !== undefined && req.headers.authorization !== `Bearer ${options['require-bearer']}`) {
    res.setHeader('WWW-Authenticate', 'Bearer');
    return send(req, res, 401, outcome('error', 'login', 'a valid bearer token is required'));
  }
  try {
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const body = await readBody(req);
    const query = {};
    for (const [name, value] of url.searchParams) query[name] = name in query ? [query[name], value].flat() : value;
    const path = pathname.slice(basePath.length) || '/';
    const [status, resource] = await service.handle({ method, path, query, body, headers: req.headers });
    send(req, res, status, resource);
  } catch (error) {
    send(req, res, ...errorResponse(error));
  }
});

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpError(413, 'too-costly', 'the body is larger than 64 MiB');
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text.trim()) return undefined;
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type === FORM) return Object.fromEntries(groupParams(new URLSearchParams(text)));
  if (!JSON_TYPES.has(type) && type !== PATCH_TYPE) {
    throw new HttpError(
      415,
      'not-supported',
      `Content-Type ${type || '(none)'} is not supported: send application/fhir+json`,
    );
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, 'structure', `the body is not valid JSON: ${error.message}`);
  }
}

function groupParams(params) {
  const grouped = new Map();
  for (const [name, value] of params) grouped.set(name, grouped.has(name) ? [grouped.get(name), value].flat() : value);
  return grouped;
}

function send(req, res, status, resource) {
  const headers = { 'Content-Type': 'application/fhir+json; charset=utf-8' };
  const single = resource?.resourceType && !['OperationOutcome', 'Bundle'].includes(resource.resourceType);
  if (single && resource.meta?.versionId) {
    headers.ETag = `W/"${resource.meta.versionId}"`;
    if (resource.meta.lastUpdated) headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
    if (status === 201 || ((req.method === 'PUT' || req.method === 'POST') && status === 200)) {
      headers.Location = `${publicBase()}/${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
      headers['Content-Location'] = headers.Location;
    }
  }
  const minimal = status < 400 && /return=minimal/.test(req.headers.prefer ?? '') && req.method !== 'GET';
  const body = resource === undefined || minimal || req.method === 'HEAD' ? '' : JSON.stringify(resource);
  res.writeHead(status, headers);
  res.end(body);
}

/** One JSON line per request, never the token itself: tests assert whether (and how) we were called. */
function logRequest(req, url) {
  if (!options['log-requests']) return;
  const line = {
    method: req.method,
    path: url.pathname,
    query: url.search,
    authorization_present: Boolean(req.headers.authorization),
  };
  appendFileSync(options['log-requests'], `${JSON.stringify(line)}\n`);
}

function publicBase() {
  const { port: actual } = server.address();
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return `http://${host}:${actual}${basePath}`;
}

server.on('error', (error) => {
  process.stderr.write(`FHIR test server: ${error.message}\n`);
  process.exit(1);
});

server.listen(port, options.host, () => {
  service = new FhirService(publicBase());
  process.stdout.write(`FHIR test server listening on ${publicBase()}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
