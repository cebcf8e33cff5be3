// The FHIR REST interactions on top of Medplum's MemoryRepository and FhirRouter, with the gaps
// of the bare library closed: validation on every write, conditional create through the same
// path, 400 on unknown search parameters, default paging, and one request at a time (so that a
// transaction's undo log can never interleave with another request).
import { core, router } from './medplum.mjs';
import { HttpError, errorResponse, outcome, statusOf } from './outcomes.mjs';
import { addPageLinks, checkSearchParameters, pageWindow } from './search.mjs';
import { validate } from './validation.mjs';
import { processBundle } from './transaction.mjs';

export class FhirService {
  constructor(publicBase) {
    this.publicBase = publicBase;
    this.repo = new router.MemoryRepository();
    this.router = new router.FhirRouter();
    this.queue = Promise.resolve();
  }

  /** Serialise requests: each runs alone, like a database transaction. */
  handle(request) {
    const run = this.queue.then(() => this.dispatch(request).catch(errorResponse));
    this.queue = run.catch(() => undefined);
    return run;
  }

  async dispatch({ method, path, query, body, headers }) {
    const [type, id, ...rest] = path.split('/').filter(Boolean);
    if (!type) {
      if (method !== 'POST') throw new HttpError(405, 'not-supported', `${method} on the base is not supported`);
      return [200, await processBundle(this, body)];
    }
    if (type === 'metadata') return [200, this.capabilities()];
    if (type === '_admin' && id === 'reset' && method === 'POST') {
      this.repo.clear();
      return [200, outcome('information', 'informational', 'all data removed')];
    }
    if (!core.isResourceType(type)) throw new HttpError(404, 'not-found', `unknown resource type ${type}`);
    if (method === 'POST' && !id) return this.create(type, body, { ifNoneExist: headers['if-none-exist'] });
    if (method === 'PUT' && id && !rest.length) return this.update(type, id, body);
    if (method === 'DELETE' && id && !rest.length) return this.remove(type, id);
    if ((method === 'GET' && !id) || (method === 'POST' && id === '_search')) return this.search(type, query);
    return this.route(method, path, query, body, headers);
  }

  async create(type, resource, { ifNoneExist, assignedId = false } = {}) {
    validate(resource, type);
    if (ifNoneExist) {
      const found = await this.conditionalMatches(type, ifNoneExist);
      if (found.length > 1) throw new HttpError(412, 'duplicate', `If-None-Exist matched ${found.length} resources`);
      if (found.length === 1) return [200, found[0].resource];
    }
    const toCreate = assignedId ? resource : { ...resource, id: undefined };
    return [201, await this.repo.createResource(toCreate, { assignedId })];
  }

  /** Matches for If-None-Exist. Token criteria on _tag or identifier are checked directly: the
   * library evaluates FHIRPath on every stored resource, which grows too slow for write-back. */
  async conditionalMatches(type, criteria) {
    const params = [...new URLSearchParams(criteria)];
    const field = { _tag: (r) => r.meta?.tag, identifier: (r) => r.identifier }[params[0]?.[0]];
    if (params.length !== 1 || !field) {
      return ((await this.repo.search(core.parseSearchRequest(`${type}?${criteria}`))).entry ?? []);
    }
    const value = params[0][1];
    const bar = value.indexOf('|');
    const [system, code] = bar < 0 ? [undefined, value] : [value.slice(0, bar), value.slice(bar + 1)];
    const matches = (token) => (token.code ?? token.value) === code && (system === undefined || token.system === system);
    const found = [];
    for (const resource of this.repo.resources.get(type)?.values() ?? []) {
      if ((field(resource) ?? []).some(matches)) found.push({ resource });
    }
    return found;
  }

  async update(type, id, resource) {
    validate(resource, type);
    if (resource.id !== id) throw new HttpError(400, 'invalid', 'the resource id must match the URL');
    let existed = true;
    try {
      await this.repo.readResource(type, id);
    } catch {
      existed = false;
    }
    return [existed ? 200 : 201, await this.repo.updateResource(resource)];
  }

  async remove(type, id) {
    await this.repo.deleteResource(type, id);
    return [200, outcome('information', 'informational', `${type}/${id} deleted`)];
  }

  async search(type, query) {
    checkSearchParameters(type, query);
    const window = pageWindow(query);
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      for (const item of [value].flat()) params.append(name, item);
    }
    params.set('_count', String(window.count));
    params.set('_offset', String(window.offset));
    params.set('_total', 'accurate');
    const bundle = await this.repo.search(core.parseSearchRequest(`${type}?${params}`));
    const entries = (bundle.entry ?? []).map((entry) => ({
      fullUrl: `${this.publicBase}/${entry.resource.resourceType}/${entry.resource.id}`,
      ...entry,
    }));
    const page = { ...bundle, entry: entries.length ? entries : undefined };
    return [200, addPageLinks(page, `${this.publicBase}/${type}?${new URLSearchParams(params)}`, window)];
  }

  async route(method, path, query, body, headers) {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      for (const item of [value].flat()) search.append(name, item);
    }
    const request = router.makeSimpleRequest(method, search.size ? `${path}?${search}` : path, body);
    request.headers = headers;
    const [result, resource] = await this.router.handleRequest(request, this.repo);
    return [statusOf(result), resource ?? result];
  }

  capabilities() {
    return {
      resourceType: 'CapabilityStatement',
      status: 'active',
      date: new Date().toISOString(),
      kind: 'instance',
      software: { name: 'Countersign FHIR test server (Medplum engine)' },
      fhirVersion: '4.0.1',
      format: ['application/fhir+json', 'application/json'],
      rest: [{ mode: 'server', interaction: [{ code: 'transaction' }, { code: 'batch' }] }],
    };
  }
}
