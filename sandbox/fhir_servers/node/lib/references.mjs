// Referential integrity on write, as a HAPI FHIR JPA server enforces it by default
// (enforceReferentialIntegrityOnWrite, allowExternalReferences=false, allowInlineMatchUrlReferences):
//   Patient/1, Patient/1/_history/2 (the version is ignored, as HAPI strips it), <our base>/Patient/1
//     → the resource must exist here: 400 "Resource Patient/1 not found, specified in path: X"
//       (HAPI-1094), or 400 "... is deleted, ..." (HAPI-1096) when it was deleted
//   Patient?identifier=a|b (a conditional reference) → replaced by Patient/<id> of its one match;
//     none: 404 (HAPI-1091), several: 412 (HAPI-2207)
//   http://elsewhere/fhir/Patient/1 → 400, external references are not allowed (HAPI-0507)
//   urn:uuid:… outside a transaction (or unresolved in one) → 400
//   a target type the element does not allow (Observation.subject → Medication/1) → 422 (HAPI-0931)
//   #id → must name a contained resource: that is invariant ref-1 (invariants.mjs), 422
//   identifier-only (logical) references → not checked
// Unlike HAPI, which only follows references on the paths of its reference SearchParameters, every
// Reference element is checked, extensions' valueReference included; not those inside the entries
// of a stored Bundle (they refer to each other by fullUrl).
import { core } from './medplum.mjs';
import { HttpError } from './outcomes.mjs';
import { matchesSync } from './search.mjs';

const CONDITIONAL = /^([A-Za-z]+)\?(.*)$/s;

/** Replace each conditional reference (Type?criteria) by Type/id of its single match, in place. */
export function resolveConditionalReferences(repo, references) {
  for (const { reference, path } of references) {
    const value = reference.reference;
    const match = typeof value === 'string' ? CONDITIONAL.exec(value) : null;
    if (!match) continue;
    const [, type, criteria] = match;
    if (!core.isResourceType(type)) {
      throw new HttpError(
        400,
        'processing',
        `Invalid match URL "${value}" at ${elementPath(path)} - ${type} is not a resource type`,
        [path],
      );
    }
    const found = matchesSync(repo, type, criteria, `The conditional reference "${value}"`);
    if (found.length === 0) {
      throw new HttpError(404, 'not-found', `Invalid match URL "${value}" - No resources match this search`, [path]);
    }
    if (found.length > 1) {
      throw new HttpError(412, 'duplicate', `Invalid match URL "${value}" - Multiple resources match this search`, [
        path,
      ]);
    }
    reference.reference = `${type}/${found[0].id}`;
  }
}

/**
 * Throw an HttpError naming every literal reference of `references` that does not resolve here
 * (status: that of the first problem). `self` ({ type, id }) is the resource being written, which
 * may refer to itself.
 */
export function checkReferences(repo, references, { publicBase, self } = {}) {
  const problems = [];
  for (const { reference, path, slot, root } of references) {
    const problem =
      typeof reference.reference === 'string' && reference.reference.startsWith('#')
        ? containedProblem(reference.reference, path, slot, root)
        : referenceProblem(repo, reference.reference, path, slot, publicBase, self);
    if (problem) problems.push(problem);
  }
  if (!problems.length) return;
  throw HttpError.of(problems[0].status, {
    resourceType: 'OperationOutcome',
    issue: problems.map(({ status: _status, ...issue }) => issue),
  });
}

const problemAt = (path) => (status, diagnostics) => ({
  status,
  severity: 'error',
  code: 'processing',
  diagnostics,
  expression: [path],
});

/** #id: that it names a contained resource is invariant ref-1; here, that its type is allowed. */
function containedProblem(value, path, slot, root) {
  const type = root?.contained?.find?.((resource) => resource?.id === value.slice(1))?.resourceType;
  if (!type || !slot?.targets || slot.targets.has(type)) return undefined;
  return problemAt(path)(
    422,
    `Invalid reference found at path '${elementPath(path)}'. Resource type '${type}' (contained ${value}) is not ` +
      `valid for this path (allowed: ${[...slot.targets].join(', ')})`,
  );
}

function referenceProblem(repo, value, path, slot, publicBase, self) {
  if (typeof value !== 'string') return undefined; // a logical reference (identifier only)
  const where = elementPath(path);
  const problem = problemAt(path);
  let local = value;
  if (/^[a-z][a-z0-9+.-]*:/i.test(value)) {
    if (publicBase && value.startsWith(`${publicBase}/`)) {
      local = value.slice(publicBase.length + 1);
    } else if (/^urn:(uuid|oid):/i.test(value)) {
      return problem(
        400,
        `Invalid resource reference found at path[${where}] - ${value} is a placeholder, which only resolves ` +
          `to an entry of the same transaction Bundle`,
      );
    } else {
      return problem(
        400,
        `Resource contains external reference to URL "${value}" but this server is not configured to allow ` +
          `external references (at ${where})`,
      );
    }
  }
  const parts = local.split('/');
  const [type, id] = parts;
  const wellFormed = parts.length === 2 || (parts.length === 4 && parts[2] === '_history' && parts[3]);
  if (!wellFormed || !type || !id) {
    return problem(400, `Invalid resource reference found at path[${where}] - not Type/id - ${value}`);
  }
  if (!core.isResourceType(type)) {
    return problem(
      400,
      `Invalid resource reference found at path[${where}] - Resource type is unknown or not supported on this server - ${value}`,
    );
  }
  if (slot?.targets && !slot.targets.has(type)) {
    return problem(
      422,
      `Invalid reference found at path '${where}'. Resource type '${type}' is not valid for this path ` +
        `(allowed: ${[...slot.targets].join(', ')})`,
    );
  }
  if (self && self.type === type && self.id === id) return undefined;
  if (repo.exists(type, id)) return undefined;
  if (repo.wasDeleted(type, id)) return problem(400, `Resource ${type}/${id} is deleted, specified in path: ${where}`);
  return problem(400, `Resource ${type}/${id} not found, specified in path: ${where}`);
}

/** "Provenance.target[0]" → "Provenance.target", as HAPI names the path. */
const elementPath = (path) => path.replace(/\[\d+\]/g, '');
