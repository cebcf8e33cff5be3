// Search as a HAPI server answers it: unknown parameters (and modifiers) are refused with 400
// instead of silently matching nothing, results are paged (default 20, at most 1000) with absolute
// self/previous/next links and a total, and If-None-Exist criteria are matched quickly.
import { core } from './medplum.mjs';
import { HttpError } from './outcomes.mjs';

export const RESULT_PARAMETERS = new Set([
  ...'_count _sort _id _lastUpdated _include _revinclude _elements _summary _total _offset'.split(' '),
  ...'_format _maxresults _pretty _profile _security _tag _source'.split(' '),
]);
/** Medplum's own parameters, unknown to a plain FHIR server. */
const MEDPLUM_ONLY = new Set(['_compartment', '_project']);
const MODIFIERS = new Set(
  'missing exact contains text not above below in not-in of-type identifier iterate code-text'.split(' '),
);
export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 1000;

/** 400 for a parameter that is neither a result parameter nor a SearchParameter of the type. */
export function checkSearchParameters(resourceType, query) {
  const known = core.getSearchParameters(resourceType) ?? {};
  for (const name of Object.keys(query)) {
    if (name.startsWith('_has:') || name === '_has') {
      throw new HttpError(400, 'not-supported', `_has (reverse chaining) is not supported by this test server`, [name]);
    }
    const [head, ...chain] = name.split('.');
    const [base, modifier] = head.split(':');
    const isKnown = RESULT_PARAMETERS.has(base) || (base in known && !MEDPLUM_ONLY.has(base));
    if (!isKnown) {
      throw new HttpError(
        400,
        'not-supported',
        `Unknown search parameter "${base}" for resource type ${resourceType}`,
        [name],
      );
    }
    if (modifier && !MODIFIERS.has(modifier) && !(chain.length || core.isResourceType(modifier))) {
      throw new HttpError(400, 'not-supported', `Unknown modifier ":${modifier}" on search parameter "${base}"`, [
        name,
      ]);
    }
  }
}

/** The page asked for: _count (default 20, 0 for only the total, at most 1000) and _offset. */
export function pageWindow(query) {
  const count = integerParameter(query, '_count', DEFAULT_PAGE_SIZE);
  const offset = integerParameter(query, '_offset', 0);
  return { count: Math.min(count, MAX_PAGE_SIZE), offset };
}

function integerParameter(query, name, fallback) {
  const raw = [query[name]].flat().at(-1);
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw))
    throw new HttpError(400, 'invalid', `${name} must be a non-negative integer, not "${raw}"`, [name]);
  return Number.parseInt(raw, 10);
}

/** self, previous and next links as absolute URLs of this server. */
export function addPageLinks(bundle, absoluteUrl, { count, offset }) {
  const self = new URL(absoluteUrl);
  const at = (start) => {
    const url = new URL(self);
    url.searchParams.set('_count', String(count));
    url.searchParams.set('_offset', String(start));
    return url.toString();
  };
  const link = [{ relation: 'self', url: self.toString() }];
  if (offset > 0 && count > 0) link.push({ relation: 'previous', url: at(Math.max(offset - count, 0)) });
  if (count > 0 && offset + count < bundle.total) link.push({ relation: 'next', url: at(offset + count) });
  return { ...bundle, link };
}

/**
 * The resources matching If-None-Exist criteria (and conditional URLs, and conditional references
 * "Patient?identifier=..."). A single identifier or _tag token (what conditional creates use) is
 * matched directly on the stored resources: the library evaluates FHIRPath on every stored
 * resource, which grows too slow for a write-back test run. Synchronous, so that the repository's
 * write path can resolve conditional references.
 */
export function matchesSync(repo, resourceType, criteria, what = 'If-None-Exist') {
  const params = [...new URLSearchParams(criteriaOf(resourceType, criteria))];
  if (!params.length) throw new HttpError(400, 'invalid', `${what} has no search criteria`);
  const query = {};
  for (const [name, value] of params) query[name] = name in query ? [query[name], value].flat() : value;
  checkSearchParameters(resourceType, query);
  const field = { _tag: (r) => r.meta?.tag, identifier: (r) => r.identifier }[params[0][0]];
  if (params.length !== 1 || !field || params[0][1].includes(',') || params[0][1].includes('\\')) {
    const bundle = repo.searchSync(core.parseSearchRequest(`${resourceType}?${new URLSearchParams(params)}`));
    return (bundle.entry ?? []).map((entry) => entry.resource);
  }
  const value = params[0][1];
  const bar = value.indexOf('|');
  const [system, code] = bar < 0 ? [undefined, value] : [value.slice(0, bar), value.slice(bar + 1)];
  const matches = (token) =>
    (code === '' || (token.code ?? token.value) === code) &&
    (system === undefined || (system === '' ? !token.system : token.system === system));
  const found = [];
  for (const resource of repo.storedResources(resourceType)) {
    const tokens = field(resource);
    if (Array.isArray(tokens) ? tokens.some(matches) : tokens && matches(tokens)) found.push(core.deepClone(resource));
  }
  return found;
}

/** "Patient?identifier=a" and "identifier=a" are the same criteria (HAPI accepts both in If-None-Exist). */
export function criteriaOf(resourceType, criteria) {
  return criteria.startsWith(`${resourceType}?`) ? criteria.slice(resourceType.length + 1) : criteria;
}

export async function conditionalMatches(repo, resourceType, criteria) {
  return matchesSync(repo, resourceType, criteria);
}
