// Search: unknown parameters are refused (400) instead of silently matching nothing, and results
// are paged with absolute self/next links, as a HAPI server pages them.
import { core } from './medplum.mjs';
import { HttpError } from './outcomes.mjs';

const RESULT_PARAMETERS = new Set([
  '_count', '_sort', '_id', '_lastUpdated', '_include', '_revinclude', '_elements', '_summary',
  '_total', '_offset', '_format', '_maxresults', '_profile', '_security', '_tag', '_source',
]);
export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 1000;

export function checkSearchParameters(resourceType, query) {
  const known = core.getSearchParameters(resourceType) ?? {};
  for (const name of Object.keys(query)) {
    const base = name.split(/[:.]/)[0];
    if (!RESULT_PARAMETERS.has(base) && !(base in known)) {
      throw new HttpError(400, 'not-supported', `unknown search parameter ${name} for ${resourceType}`, [name]);
    }
  }
}

export function pageWindow(query) {
  const count = Math.min(Number.parseInt(query._count ?? DEFAULT_PAGE_SIZE, 10) || DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
  const offset = Math.max(Number.parseInt(query._offset ?? '0', 10) || 0, 0);
  return { count, offset };
}

export function addPageLinks(bundle, absoluteUrl, { count, offset }) {
  const self = new URL(absoluteUrl);
  const links = [{ relation: 'self', url: self.toString() }];
  const shown = bundle.entry?.filter((entry) => entry.search?.mode !== 'include').length ?? 0;
  if (typeof bundle.total === 'number' ? offset + shown < bundle.total : shown === count) {
    const next = new URL(self);
    next.searchParams.set('_count', String(count));
    next.searchParams.set('_offset', String(offset + count));
    links.push({ relation: 'next', url: next.toString() });
  }
  return { ...bundle, link: links };
}
