// The FHIR REST interactions on top of Medplum's engine, with the gaps of the bare library closed:
// validation and referential integrity on every write (also conditional ones; see repository.mjs),
// If-None-Exist through the same path as a plain create, If-Match, 400 on unknown search
// parameters, default paging, 410 for deleted resources. Requests run one at a time, so a
// transaction's undo journal never sees another's writes.
import { capabilityStatement } from './capabilities.mjs';
import { core, router } from './medplum.mjs';
import { HttpError, errorResponse, outcome, routerResponse } from './outcomes.mjs';
import { JournaledRepository } from './repository.mjs';
import { addPageLinks, checkSearchParameters, conditionalMatches, pageWindow } from './search.mjs';
import { processBundle } from './transaction.mjs';
import { checkShape, validate } from './validation.mjs';

export class FhirService {
  constructor(publicBase) {
    this.publicBase = publicBase;
    this.repo = new JournaledRepository(publicBase);
    this.router = new router.FhirRouter();
    this.queue = Promise.resolve();
  }

  /** Serialise requests: each runs alone, like a database transaction. Resolves to [status, body]. */
  handle(request) {
    const run = this.queue.then(() => this.dispatch(request).catch(errorResponse));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** One interaction; `path` is relative to the base ("/Patient/1"), `query` a name → value(s) object. */
  async dispatch({ method, path, query = {}, body, headers = {} }) {
    const [type, id, ...rest] = path.split('/').filter(Boolean).map(decodeSegment);
    if (!type) {
      if (method === 'POST') return [200, await processBundle(this, body)];
      throw new HttpError(400, 'not-supported', `${method} on the base URL is not supported (system search is not)`);
    }
    if (type === 'metadata' && !id && method === 'GET') return [200, capabilityStatement()];
    if (type === '_admin') {
      if (id === 'reset' && !rest.length && method === 'POST') return this.reset();
      throw new HttpError(404, 'not-found', `no admin operation ${method} ${path}`);
    }
    if (!core.isResourceType(type)) throw new HttpError(404, 'not-found', `Unknown resource type "${type}"`, [type]);
    const ifMatch = parseVersion(headers['if-match']);
    if (!id) {
      if (method === 'GET') return this.search(type, query);
      if (method === 'POST') return this.create(type, body, { ifNoneExist: headers['if-none-exist'] });
      if (method === 'PUT') return this.conditionalUpdate(type, query, body, { ifMatch });
      if (method === 'DELETE') return this.conditionalDelete(type, query);
      if (method === 'PATCH') requireCriteria(type, query, 'conditional patch');
    } else if (id === '_search' && !rest.length && method === 'POST') {
      return this.search(type, mergeQuery(query, body));
    } else if (!rest.length && !id.startsWith('_') && !id.startsWith('$')) {
      if (method === 'PUT') return this.update(type, id, body, { ifMatch });
      if (method === 'DELETE') return this.remove(type, id, { ifMatch });
    }
    return this.route(method, path, query, body, headers);
  }

  async reset() {
    this.repo.clear();
    return [200, outcome('information', 'informational', 'all data removed')];
  }

  /** Create; with If-None-Exist: 0 matches → 201, 1 → 200 with it (nothing created), more → 412. */
  async create(type, resource, { ifNoneExist, id } = {}) {
    checkShape(resource, type); // the repository validates all of it as it stores it
    if (ifNoneExist) {
      validate(resource, type); // also when it matches and nothing is stored
      const found = await conditionalMatches(this.repo, type, ifNoneExist);
      if (found.length > 1) {
        throw new HttpError(412, 'duplicate', `If-None-Exist "${ifNoneExist}" matched ${found.length} resources`);
      }
      if (found.length === 1) return [200, found[0]];
    }
    return [201, await this.repo.createResource({ ...resource, id }, { assignedId: Boolean(id) })];
  }

  /** Update, or create with the client's id (HAPI's update-as-create). If-Match: 412 on another version. */
  async update(type, id, resource, { ifMatch } = {}) {
    checkShape(resource, type); // the repository validates all of it as it stores it
    if (resource.id !== id) {
      throw new HttpError(400, 'invalid', `the resource id (${resource.id ?? 'none'}) must match the URL id ${id}`, [
        `${type}.id`,
      ]);
    }
    const existed = this.repo.exists(type, id);
    if (ifMatch !== undefined && (!existed || this.repo.currentVersion(type, id) !== ifMatch)) {
      throw new HttpError(412, 'conflict', `If-Match W/"${ifMatch}" is not the current version of ${type}/${id}`);
    }
    return [existed ? 200 : 201, await this.repo.updateResource(resource)];
  }

  async conditionalUpdate(type, query, resource, { ifMatch } = {}) {
    const criteria = requireCriteria(type, query, 'conditional update');
    validate(resource, type);
    const found = await conditionalMatches(this.repo, type, criteria);
    if (found.length > 1) throw new HttpError(412, 'duplicate', `"${criteria}" matched ${found.length} resources`);
    if (found.length === 0) {
      return resource.id ? this.update(type, resource.id, resource, { ifMatch }) : this.create(type, resource);
    }
    const { id } = found[0];
    if (resource.id && resource.id !== id) {
      throw new HttpError(400, 'invalid', `the resource id ${resource.id} is not the matched ${type}/${id}`, [
        `${type}.id`,
      ]);
    }
    return this.update(type, id, { ...resource, id }, { ifMatch });
  }

  async remove(type, id, { ifMatch } = {}) {
    if (!this.repo.exists(type, id)) {
      await this.repo.readResource(type, id).catch((error) => {
        if (core.getStatus(error.outcome ?? {}) !== 410) throw error; // 404; already deleted is fine
      });
      return [200, outcome('information', 'informational', `${type}/${id} was already deleted`)];
    }
    if (ifMatch !== undefined && this.repo.currentVersion(type, id) !== ifMatch) {
      throw new HttpError(412, 'conflict', `If-Match W/"${ifMatch}" is not the current version of ${type}/${id}`);
    }
    await this.repo.deleteResource(type, id);
    return [200, outcome('information', 'informational', `${type}/${id} deleted`)];
  }

  async conditionalDelete(type, query) {
    const criteria = requireCriteria(type, query, 'conditional delete');
    const found = await conditionalMatches(this.repo, type, criteria);
    if (found.length > 1) throw new HttpError(412, 'duplicate', `"${criteria}" matched ${found.length} resources`);
    if (!found.length) return [200, outcome('information', 'informational', `nothing matched "${criteria}"`)];
    return this.remove(type, found[0].id);
  }

  async search(type, query) {
    checkSearchParameters(type, query);
    const window = pageWindow(query);
    checkSort(type, query._sort);
    const params = toSearchParams(query);
    if ([query._summary].flat().includes('count')) window.count = 0;
    params.set('_count', String(window.count));
    params.set('_offset', String(window.offset));
    params.set('_total', 'accurate');
    const request = core.parseSearchRequest(`${type}?${params}`);
    const fields = request.fields;
    request.fields = undefined;
    const bundle = await this.repo.search(request);
    const entry = (bundle.entry ?? []).map(({ resource, search }) => ({
      fullUrl: `${this.publicBase}/${resource.resourceType}/${resource.id}`,
      resource: fields && search?.mode !== 'include' ? elementsOnly(resource, fields) : resource,
      search,
    }));
    const page = { resourceType: 'Bundle', id: core.generateId(), type: 'searchset', total: bundle.total };
    if (entry.length) page.entry = entry;
    return [200, addPageLinks(page, `${this.publicBase}/${type}?${params}`, window)];
  }

  /** Everything else the library routes itself (read, vread, history, patch), on our repository. */
  async route(method, path, query, body, headers) {
    const search = toSearchParams(query);
    const request = router.makeSimpleRequest(method, search.size ? `${path}?${search}` : path, body);
    request.headers = headers;
    return routerResponse(await this.router.handleRequest(request, this.repo));
  }
}

function requireCriteria(type, query, what) {
  const names = Object.keys(query).filter((name) => name !== '_format' && name !== '_pretty');
  if (!names.length) throw new HttpError(400, 'invalid', `${what} of ${type} needs search criteria in the URL`);
  checkSearchParameters(type, query);
  return toSearchParams(Object.fromEntries(names.map((name) => [name, query[name]]))).toString();
}

function checkSort(type, sort) {
  const known = core.getSearchParameters(type) ?? {};
  for (const field of [sort ?? []].flat().flatMap((value) => value.split(','))) {
    const name = field.replace(/^-/, '');
    if (name && !['_id', '_lastUpdated'].includes(name) && !(name in known)) {
      throw new HttpError(400, 'not-supported', `Unknown sort parameter "${name}" for ${type}`, ['_sort']);
    }
  }
}

/** _elements: keep the named top-level elements (and the mandatory ones), tag the copy SUBSETTED. */
function elementsOnly(resource, fields) {
  const kept = { resourceType: resource.resourceType, id: resource.id, meta: { ...resource.meta } };
  for (const field of fields) if (field in resource) kept[field] = resource[field];
  kept.meta.tag = [
    ...(kept.meta.tag ?? []),
    { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED' },
  ];
  return kept;
}

function toSearchParams(query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) for (const item of [value].flat()) params.append(name, item);
  return params;
}

/** POST _search: the form body's parameters join those of the URL. */
function mergeQuery(query, form) {
  const merged = { ...query };
  for (const [name, value] of Object.entries(form ?? {})) {
    merged[name] = name in merged ? [merged[name], value].flat() : value;
  }
  return merged;
}

function decodeSegment(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, 'invalid', `malformed URL segment ${segment}`);
  }
}

/** W/"3" or "3" → 3; undefined when absent. */
export function parseVersion(etag) {
  if (!etag) return undefined;
  const match = /^(?:W\/)?"?([^"]*)"?$/.exec(String(etag).trim());
  return match ? match[1] : String(etag);
}
