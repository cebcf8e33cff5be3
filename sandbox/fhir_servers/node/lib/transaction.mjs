// transaction (all-or-nothing) and batch (entry by entry) Bundles.
//
// A transaction runs inside the repository's undo journal: if any entry fails, every write made by
// the earlier entries is put back and the answer is that entry's status with its OperationOutcome.
// Entries run in FHIR order: DELETE, then POST, then PUT/PATCH, then GET. Before any POST runs,
// each gets its id (a new one, or the one its If-None-Exist matched), so references between
// entries by fullUrl (urn:uuid:...) are rewritten to Type/id whatever their order in the Bundle;
// a placeholder left unresolved is a 400, as in HAPI. A conditional reference spelled like a POST
// entry's If-None-Exist ("Patient?identifier=a|b") means that entry. Every write is validated as it
// is made, but its references are only checked once all entries have run (an entry may refer to
// one that runs after it); a dangling one then fails the transaction, naming the entry that wrote it.
import { core } from './medplum.mjs';
import { HttpError, diagnosticsOf, errorResponse, statusLine } from './outcomes.mjs';
import { conditionalMatches, criteriaOf } from './search.mjs';
import { validate } from './validation.mjs';

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']);

export async function processBundle(service, bundle) {
  if (bundle?.resourceType !== 'Bundle') throw new HttpError(400, 'invalid', 'POST to the base URL needs a Bundle');
  const entries = bundle.entry ?? [];
  if (!Array.isArray(entries)) throw new HttpError(400, 'structure', 'Bundle.entry must be an array', ['Bundle.entry']);
  if (bundle.type === 'batch') return batch(service, entries);
  if (bundle.type === 'transaction') return transaction(service, entries);
  throw new HttpError(400, 'invalid', `Bundle.type must be transaction or batch, not ${bundle.type}`, ['Bundle.type']);
}

async function batch(service, entries) {
  const responses = [];
  for (const [index, entry] of entries.entries()) {
    let parsed;
    let result;
    try {
      parsed = parseEntry(service, entry, index);
      result = await service.repo.transaction(() => service.dispatch(parsed.request(entry.resource)));
    } catch (error) {
      result = errorResponse(error);
    }
    responses.push(responseEntry(service, parsed?.method, ...result));
  }
  return { resourceType: 'Bundle', id: core.generateId(), type: 'batch-response', entry: responses };
}

async function transaction(service, entries) {
  const parsed = entries.map((entry, index) => parseEntry(service, entry, index));
  return service.repo.transaction(() => runTransaction(service, parsed), { deferReferences: true });
}

async function runTransaction(service, parsed) {
  const { repo } = service;
  const responses = new Array(parsed.length);
  const mapping = new Map();
  const run = async (entry, action) => {
    let result;
    repo.writeContext = entry;
    try {
      result = await action();
    } catch (error) {
      result = errorResponse(error);
    }
    if (result[0] >= 400) throw entryFailure(entry, ...result);
    responses[entry.index] = responseEntry(service, entry.method, ...result);
  };
  const body = (entry) => {
    const resource = rewrite(entry.entry.resource, mapping);
    const placeholder = unresolvedPlaceholder(resource);
    if (placeholder) {
      const [status, outcome] = errorResponse(
        new HttpError(
          400,
          'invalid',
          `Unable to satisfy placeholder ID ${placeholder.reference} found in ${placeholder.path}`,
        ),
      );
      throw entryFailure(entry, status, outcome);
    }
    return resource;
  };

  for (const entry of parsed.filter((e) => e.method === 'DELETE')) {
    await run(entry, () => service.dispatch(entry.request()));
  }

  const posts = parsed.filter((e) => e.method === 'POST');
  await planCreates(service, posts, mapping);
  for (const entry of parsed.filter((e) => e.method === 'PUT' && e.id && e.entry.fullUrl)) {
    mapping.set(entry.entry.fullUrl, `${entry.type}/${entry.id}`);
  }

  for (const entry of posts) {
    const { plan } = entry;
    const resource = body(entry);
    await run(entry, async () => {
      if (plan.create) return service.create(entry.type, resource, { id: plan.id });
      if (plan.dispatch) return service.dispatch(entry.request(resource));
      validate(resource, entry.type); // a conditional create that matched is still validated
      return [200, plan.existing ?? (await service.repo.readResource(entry.type, plan.id))];
    });
  }
  for (const entry of parsed.filter((e) => e.method === 'PUT' || e.method === 'PATCH')) {
    const resource = body(entry);
    await run(entry, () => service.dispatch(entry.request(resource)));
  }
  // Every write is made: now each reference must resolve (to a resource stored before, or
  // written by any entry of this transaction).
  try {
    repo.checkDeferredReferences();
  } catch (error) {
    if (!error.context) throw error;
    throw entryFailure(error.context, ...errorResponse(error));
  }
  for (const entry of parsed.filter((e) => e.method === 'GET' || e.method === 'HEAD')) {
    await run(entry, () => service.dispatch(entry.request()));
  }
  return { resourceType: 'Bundle', id: core.generateId(), type: 'transaction-response', entry: responses };
}

/**
 * Decide, before anything is created, the id each POST entry will have: a new one, or the one its
 * If-None-Exist matches (two entries with the same condition share one resource).
 */
async function planCreates(service, posts, mapping) {
  const byCondition = new Map();
  for (const entry of posts) {
    if (entry.id) {
      entry.plan = { dispatch: true };
      continue;
    }
    const condition = entry.ifNoneExist && `${entry.type}?${criteriaOf(entry.type, entry.ifNoneExist)}`;
    if (condition && byCondition.has(condition)) {
      entry.plan = { id: byCondition.get(condition) };
    } else if (condition) {
      let found;
      try {
        found = await conditionalMatches(service.repo, entry.type, entry.ifNoneExist);
      } catch (error) {
        throw entryFailure(entry, ...errorResponse(error));
      }
      if (found.length > 1) {
        const message = `If-None-Exist "${entry.ifNoneExist}" matched ${found.length} resources`;
        throw entryFailure(entry, ...errorResponse(new HttpError(412, 'duplicate', message)));
      }
      entry.plan = found.length
        ? { id: found[0].id, existing: found[0] }
        : { id: service.repo.generateId(), create: true };
      byCondition.set(condition, entry.plan.id);
    } else {
      entry.plan = { id: service.repo.generateId(), create: true };
    }
    if (entry.entry.fullUrl) mapping.set(entry.entry.fullUrl, `${entry.type}/${entry.plan.id}`);
    // A conditional reference spelled as this entry's If-None-Exist means this entry (as in HAPI).
    if (condition && !mapping.has(condition)) mapping.set(condition, `${entry.type}/${entry.plan.id}`);
  }
}

function parseEntry(service, entry, index) {
  const request = entry?.request;
  const { method, url } = request ?? {};
  const where = [`Bundle.entry[${index}].request`];
  if (!METHODS.has(method) || typeof url !== 'string' || !url) {
    throw new HttpError(400, 'invalid', `Bundle.entry[${index}] needs request.method and request.url`, where);
  }
  let relative = url.startsWith(`${service.publicBase}/`) ? url.slice(service.publicBase.length + 1) : url;
  relative = relative.replace(/^\/+/, '');
  if (/^[a-z][a-z0-9+.-]*:/i.test(relative)) {
    throw new HttpError(400, 'invalid', `Bundle.entry[${index}].request.url ${url} is not on this server`, where);
  }
  const [pathPart, queryString = ''] = splitOnce(relative, '?');
  const [type, id] = pathPart.split('/').filter(Boolean);
  if (type && !type.startsWith('$') && !core.isResourceType(type)) {
    throw new HttpError(404, 'not-found', `Bundle.entry[${index}]: unknown resource type "${type}"`, where);
  }
  if (['POST', 'PUT'].includes(method) && !entry.resource) {
    throw new HttpError(400, 'invalid', `Bundle.entry[${index}] (${method} ${url}) has no resource`, [
      `Bundle.entry[${index}]`,
    ]);
  }
  const query = {};
  for (const [name, value] of new URLSearchParams(queryString)) {
    query[name] = name in query ? [query[name], value].flat() : value;
  }
  const headers = {};
  if (request.ifNoneExist) headers['if-none-exist'] = request.ifNoneExist;
  if (request.ifMatch) headers['if-match'] = request.ifMatch;
  return {
    index,
    entry,
    method,
    url,
    type,
    id,
    ifNoneExist: method === 'POST' ? request.ifNoneExist : undefined,
    request: (body) => ({ method, path: `/${pathPart}`, query, body, headers }),
  };
}

/** The error a transaction fails with: the entry's status and outcome, saying which entry. */
function entryFailure(entry, status, outcome) {
  const prefix = `Bundle.entry[${entry.index}] (${entry.method} ${entry.url}): `;
  return HttpError.of(status, {
    ...outcome,
    issue: (outcome.issue ?? []).map((issue) => ({ ...issue, diagnostics: prefix + diagnosticsOf(issue) })),
  });
}

function responseEntry(service, method, status, body) {
  const response = { status: statusLine(status) };
  if (status >= 400 || body?.resourceType === 'OperationOutcome') {
    if (body) response.outcome = body;
    return { response };
  }
  if (body?.id && body.meta?.versionId && body.resourceType !== 'Bundle') {
    const { resourceType, id, meta } = body;
    if (method !== 'GET' && method !== 'HEAD') response.location = `${resourceType}/${id}/_history/${meta.versionId}`;
    response.etag = `W/"${meta.versionId}"`;
    if (meta.lastUpdated) response.lastModified = meta.lastUpdated;
    return { fullUrl: `${service.publicBase}/${resourceType}/${id}`, resource: body, response };
  }
  return body ? { resource: body, response } : { response };
}

function rewrite(value, mapping) {
  if (Array.isArray(value)) return value.map((item) => rewrite(item, mapping));
  if (!value || typeof value !== 'object') return value;
  const copy = {};
  for (const [key, item] of Object.entries(value)) {
    copy[key] =
      key === 'reference' && typeof item === 'string' && mapping.has(item) ? mapping.get(item) : rewrite(item, mapping);
  }
  return copy;
}

/** The first `reference` still pointing at a urn:uuid: placeholder, with its path. */
function unresolvedPlaceholder(value, path = value?.resourceType ?? '') {
  if (!value || typeof value !== 'object') return undefined;
  for (const [key, item] of Object.entries(value)) {
    const here = Array.isArray(value) ? `${path}[${key}]` : `${path}.${key}`;
    if (key === 'reference' && typeof item === 'string' && /^urn:(uuid|oid):/.test(item))
      return { reference: item, path: here };
    const found = unresolvedPlaceholder(item, here);
    if (found) return found;
  }
  return undefined;
}

function splitOnce(text, separator) {
  const at = text.indexOf(separator);
  return at < 0 ? [text] : [text.slice(0, at), text.slice(at + 1)];
}
