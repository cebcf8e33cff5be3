// A FHIR R4 test server: `node server.mjs --port 0 [--host 127.0.0.1] [--base-path /fhir]
//   [--require-bearer TOKEN] [--log-requests FILE]`. Prints one ready line with its base URL.
import { appendFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { FhirService } from './lib/service.mjs';
import { HttpError, errorResponse, outcome } from './lib/outcomes.mjs';

const { values: options } = parseArgs({
  options: {
    port: { type: 'string', default: '8080' },
    host: { type: 'string', default: '127.0.0.1' },
    'base-path': { type: 'string', default: '/fhir' },
    'require-bearer': { type: 'string' },
    'log-requests': { type: 'string' },
  },
});
const basePath = options['base-path'].replace(/\/$/, '');
const MAX_BODY = 64 * 1024 * 1024;
const JSON_TYPES = ['application/json', 'application/fhir+json'];
let service;

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  logRequest(req, url);
  if (!url.pathname.startsWith(basePath)) return send(res, 404, outcome('error', 'not-found', 'not a FHIR path'));
  if (options['require-bearer'] && req.headers.authorization !== `Bearer ${options['require-bearer']}`) {
    return send(res, 401, outcome('error', 'login', 'a valid bearer token is required'));
  }
  try {
    const body = await readBody(req);
    const query = {};
    for (const [name, value] of url.searchParams) query[name] = name in query ? [query[name], value].flat() : value;
    const path = url.pathname.slice(basePath.length) || '/';
    const [status, resource] = await service.handle({ method: req.method, path, query, body, headers: req.headers });
    send(res, status, resource);
  } catch (error) {
    send(res, ...errorResponse(error));
  }
});

async function readBody(req) {
  if (!['POST', 'PUT', 'PATCH'].includes(req.method)) return undefined;
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpError(413, 'too-costly', 'the body is too large');
    chunks.push(chunk);
  }
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim();
  if (!JSON_TYPES.includes(type) && !(req.method === 'PATCH' && type === 'application/json-patch+json')) {
    throw new HttpError(415, 'not-supported', 'send application/fhir+json');
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'structure', 'the body is not valid JSON');
  }
}

function send(res, status, resource) {
  const headers = { 'Content-Type': 'application/fhir+json; charset=utf-8' };
  if (resource?.resourceType && resource.resourceType !== 'OperationOutcome' && resource.meta?.versionId) {
    headers.ETag = `W/"${resource.meta.versionId}"`;
    if (status === 201) {
      headers.Location = `${publicBase()}/${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
    }
  }
  res.writeHead(status, headers);
  res.end(resource === undefined ? '' : JSON.stringify(resource));
}

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
  const { port } = server.address();
  return `http://${options.host}:${port}${basePath}`;
}

server.listen(Number(options.port), options.host, () => {
  service = new FhirService(publicBase());
  process.stdout.write(`FHIR test server listening on ${publicBase()}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
