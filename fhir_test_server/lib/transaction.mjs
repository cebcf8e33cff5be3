// transaction (all-or-nothing) and batch (entry by entry) Bundles, processed in FHIR order:
// DELETE, POST, PUT/PATCH, GET. urn:uuid fullUrls become real references before anything is written.
import { HttpError, errorResponse } from './outcomes.mjs';

const ORDER = { DELETE: 0, POST: 1, PUT: 2, PATCH: 2, GET: 3, HEAD: 3 };
const STATUS_TEXT = { 200: '200 OK', 201: '201 Created', 204: '204 No Content' };

export async function processBundle(service, bundle) {
  if (bundle?.resourceType !== 'Bundle') throw new HttpError(400, 'invalid', 'POST to the base needs a Bundle');
  if (bundle.type === 'batch') return batch(service, bundle.entry ?? []);
  if (bundle.type === 'transaction') return transaction(service, bundle.entry ?? []);
  throw new HttpError(400, 'invalid', `Bundle.type must be transaction or batch, not ${bundle.type}`);
}

async function batch(service, entries) {
  const responses = [];
  for (const entry of entries) {
    try {
      responses.push(responseEntry(service, ...(await runEntry(service, entry, false))));
    } catch (error) {
      const [status, body] = errorResponse(error);
      responses.push({ response: { status: String(status), outcome: body } });
    }
  }
  return { resourceType: 'Bundle', type: 'batch-response', entry: responses };
}

async function transaction(service, entries) {
  entries.forEach((entry, index) => checkEntry(entry, index));
  const { prepared, mapping } = assignIds(service, entries);
  const order = prepared.map((entry, index) => index).sort((a, b) => rank(prepared[a]) - rank(prepared[b]));
  const undo = [];
  const responses = new Array(prepared.length);
  try {
    for (const index of order) {
      const entry = { ...prepared[index], resource: rewrite(prepared[index].resource, mapping) };
      const [type, id] = entry.request.url.split('?')[0].split('/').filter(Boolean);
      if (id && ['PUT', 'DELETE'].includes(entry.request.method)) undo.push(capture(service.repo, type, id));
      const [status, resource] = await runEntry(service, entry, true);
      if (status === 201 && entry.request.method === 'POST') undo.push({ type, id: resource.id, existed: false });
      if (entry.fullUrl?.startsWith('urn:uuid:') && resource?.id) {
        mapping.set(entry.fullUrl, `${resource.resourceType}/${resource.id}`);
      }
      responses[index] = responseEntry(service, status, resource);
    }
  } catch (error) {
    for (const change of undo.reverse()) restore(service.repo, change);
    throw error;
  }
  return { resourceType: 'Bundle', type: 'transaction-response', entry: responses };
}

/** FHIR order; conditional creates first among POSTs so that references to them resolve. */
function rank(entry) {
  const method = entry.request.method;
  return ORDER[method] * 2 + (method === 'POST' && !entry.request.ifNoneExist ? 1 : 0);
}

function checkEntry(entry, index) {
  const method = entry?.request?.method;
  if (!(method in ORDER) || typeof entry.request.url !== 'string') {
    throw new HttpError(400, 'invalid', `entry ${index} needs request.method and request.url`, [`Bundle.entry[${index}]`]);
  }
}

async function runEntry(service, entry, inTransaction) {
  checkEntry(entry, 0);
  const { method, url, ifNoneExist } = entry.request;
  const [path, queryString = ''] = url.split('?');
  const [type, id] = path.split('/').filter(Boolean);
  let result;
  if (method === 'POST' && !id) {
    result = await service.create(type, entry.resource, { ifNoneExist, assignedId: inTransaction && !!entry.assignedId });
  } else {
    const query = Object.fromEntries(new URLSearchParams(queryString));
    result = await service.dispatch({ method, path, query, body: entry.resource, headers: {} });
  }
  if (result[0] >= 400) {
    throw new HttpError(result[0], result[1]?.issue?.[0]?.code ?? 'processing', `entry ${url} failed`);
  }
  return result;
}

function responseEntry(service, status, resource) {
  const response = { status: STATUS_TEXT[status] ?? String(status) };
  if (resource?.resourceType !== 'OperationOutcome' && resource?.id) {
    response.location = `${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`;
    response.etag = `W/"${resource.meta?.versionId}"`;
    response.lastModified = resource.meta?.lastUpdated;
    return { fullUrl: `${service.publicBase}/${resource.resourceType}/${resource.id}`, resource, response };
  }
  return resource ? { resource, response } : { response };
}

/** Give each plain POSTed urn:uuid entry its id now; conditional ones get theirs when they run. */
function assignIds(service, entries) {
  const mapping = new Map();
  const prepared = entries.map((entry) => {
    if (entry.request.method !== 'POST' || !entry.fullUrl?.startsWith('urn:uuid:') || entry.request.ifNoneExist) {
      return entry;
    }
    const id = service.repo.generateId();
    mapping.set(entry.fullUrl, `${entry.resource?.resourceType}/${id}`);
    return { ...entry, resource: { ...entry.resource, id }, assignedId: true };
  });
  return { prepared, mapping };
}

function rewrite(value, mapping) {
  if (Array.isArray(value)) return value.map((item) => rewrite(item, mapping));
  if (!value || typeof value !== 'object') return value;
  const copy = {};
  for (const [key, item] of Object.entries(value)) {
    copy[key] = key === 'reference' && mapping.has(item) ? mapping.get(item) : rewrite(item, mapping);
  }
  return copy;
}

/** What a key held before the transaction touched it: enough to put it back. */
function capture(repo, type, id) {
  const resource = repo.resources.get(type)?.get(id);
  const history = repo.history.get(type)?.get(id);
  return { type, id, existed: resource !== undefined, resource, history: history && [...history] };
}

function restore(repo, { type, id, existed, resource, history }) {
  if (!existed) {
    repo.resources.get(type)?.delete(id);
    repo.history.get(type)?.delete(id);
    return;
  }
  repo.resources.get(type).set(id, resource);
  repo.history.get(type).set(id, history);
}
