// Every resource written is validated as HAPI would: against the R4 StructureDefinitions (Medplum's
// validateResource: elements, cardinality, types, formats) and, as HAPI's parser checks its
// enumerations, the codes of elements with a required binding (Patient.gender, Task.status, ...):
// those refusals are 400. Then the R4 invariants (FHIRPath constraints of severity error: Medplum's
// own evaluation plus invariants.mjs for what it leaves out) and our own profiles named in
// meta.profile: those are 422, as HAPI's RequestValidatingInterceptor answers.
import { checkInvariants } from './invariants.mjs';
import { core, definitions } from './medplum.mjs';
import { HttpError, diagnosticsOf } from './outcomes.mjs';

/**
 * Throws HttpError 400 (issue code "structure" or "invalid") unless `resource` is a structurally
 * valid `expectedType`, or 422 (issue code "invariant", "structure", "value" or "processing") when
 * it breaks an invariant or one of our profiles. When `references` is an array, every Reference of
 * the resource is pushed onto it ({ reference, path, slot, root }) for the referential integrity check.
 */
export function validate(resource, expectedType, references) {
  checkShape(resource, expectedType);
  validateContent(resource, references);
}

/** The cheap part: a JSON object of the expected resource type. */
export function checkShape(resource, expectedType) {
  if (!resource || typeof resource !== 'object' || Array.isArray(resource)) {
    throw new HttpError(400, 'structure', 'the body must be a FHIR resource (a JSON object)');
  }
  if (expectedType && resource.resourceType !== expectedType) {
    throw new HttpError(
      400,
      'invalid',
      `expected a ${expectedType}, got ${resource.resourceType ?? 'no resourceType'}`,
      ['resourceType'],
    );
  }
}

const INVARIANT_CODES = new Set(['invariant', 'processing']);

function validateContent(resource, references) {
  const tokens = {};
  let issues;
  try {
    issues = core.validateResource(resource, { collect: { tokens } });
  } catch (error) {
    const found = error?.outcome?.issue;
    if (!found) throw error;
    issues = found;
  }
  issues = issues.filter((issue) => issue.severity === 'error' || issue.severity === 'fatal');
  const structural = issues.filter((issue) => !INVARIANT_CODES.has(issue.code)).map(structureIssue);
  structural.push(...bindingIssues(tokens));
  const invariants = issues.filter((issue) => INVARIANT_CODES.has(issue.code)).map(medplumInvariantIssue);
  if (structural.length) {
    throw HttpError.of(400, { resourceType: 'OperationOutcome', issue: [...structural, ...invariants] });
  }
  invariants.push(...checkInvariants(resource, references));
  if (invariants.length) throw HttpError.of(422, { resourceType: 'OperationOutcome', issue: invariants });
}

function structureIssue(issue) {
  return {
    severity: 'error',
    code: issue.code === 'structure' ? 'structure' : 'invalid',
    diagnostics: `${diagnosticsOf(issue)}${issue.expression?.length ? ` (${issue.expression.join(', ')})` : ''}`,
    ...(issue.expression?.length ? { expression: issue.expression } : {}),
  };
}

/** Medplum's "Constraint inv-1 not met: <human>" with {"fhirpath": ...} in diagnostics, in our (HAPI's) words. */
function medplumInvariantIssue(issue) {
  const text = issue.details?.text ?? '';
  let data = {};
  try {
    data = JSON.parse(issue.diagnostics ?? '{}');
  } catch {
    // not Medplum's JSON: keep the text only
  }
  const where = issue.expression?.join(', ') ?? '';
  const match = /^Constraint (\S+) not met: (.*)$/s.exec(text);
  const diagnostics = match
    ? `Constraint failed: ${match[1]}: '${match[2]}' (FHIRPath: ${data.fhirpath}) at ${where}`
    : `${text}${data.fhirpath ? ` (FHIRPath: ${data.fhirpath})` : ''}${data.error ? `: ${data.error}` : ''} at ${where}`;
  return {
    severity: 'error',
    code: match ? 'invariant' : 'processing',
    diagnostics,
    ...(issue.expression?.length ? { expression: issue.expression } : {}),
  };
}

/** Issues for `code` values outside the value set of their required binding. */
function bindingIssues(tokens) {
  const issues = [];
  for (const [url, values] of Object.entries(tokens)) {
    const codes = expansion(url.split('|')[0]);
    if (!codes) continue; // not enumerable here (e.g. mime types, languages): not checked
    for (const value of values) {
      if (value.type === 'code' && typeof value.value === 'string' && !codes.has(value.value)) {
        issues.push({
          severity: 'error',
          code: 'invalid',
          diagnostics: `Unknown code "${value.value}": not in the required value set ${url}`,
          expression: [value.path],
        });
      }
    }
  }
  return issues;
}

let terminology;
const expansions = new Map();

/** The set of codes of a value set, or undefined when it cannot be enumerated from the definitions. */
function expansion(url, seen = new Set()) {
  if (expansions.has(url)) return expansions.get(url);
  terminology ??= loadTerminology();
  const valueSet = terminology.valueSets.get(url);
  let codes;
  if (valueSet?.compose && !seen.has(url)) {
    seen.add(url);
    codes = new Set();
    for (const include of valueSet.compose.include ?? []) {
      const part = includeCodes(include, seen);
      if (!part) {
        codes = undefined;
        break;
      }
      for (const code of part) codes.add(code);
    }
    for (const exclude of codes ? (valueSet.compose.exclude ?? []) : []) {
      const part = includeCodes(exclude, seen);
      if (!part) {
        codes = undefined;
        break;
      }
      for (const code of part) codes.delete(code);
    }
  }
  expansions.set(url, codes);
  return codes;
}

function includeCodes(include, seen) {
  if (include.filter?.length) return undefined;
  const sets = [];
  if (include.concept) {
    sets.push(include.concept.map((concept) => concept.code));
  } else if (include.system) {
    const codeSystem = terminology.codeSystems.get(include.system);
    if (codeSystem?.content !== 'complete' || !codeSystem.concept) return undefined;
    sets.push(flatten(codeSystem.concept));
  }
  for (const url of include.valueSet ?? []) {
    const codes = expansion(url.split('|')[0], seen);
    if (!codes) return undefined;
    sets.push([...codes]);
  }
  return sets.length ? sets.flat() : undefined;
}

const flatten = (concepts) => concepts.flatMap((concept) => [concept.code, ...flatten(concept.concept ?? [])]);

function loadTerminology() {
  const valueSets = new Map();
  const codeSystems = new Map();
  for (const file of ['fhir/r4/valuesets.json', 'fhir/r4/v3-codesystems.json']) {
    for (const { resource } of definitions.readJson(file).entry ?? []) {
      if (resource.resourceType === 'ValueSet') valueSets.set(resource.url, resource);
      if (resource.resourceType === 'CodeSystem') codeSystems.set(resource.url, resource);
    }
  }
  return { valueSets, codeSystems };
}

/** Load the terminology now rather than on the first write (keeps the first request fast). */
export function preloadTerminology() {
  terminology ??= loadTerminology();
}
