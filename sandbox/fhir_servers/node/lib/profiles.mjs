// Countersign's own profiles: every StructureDefinition in the repository's fhir_profiles/structure_definitions is
// loaded at start-up, and a resource whose meta.profile names one is checked against its
// differential, as HAPI's validator checks a resource against a profile it knows: cardinality
// (min/max), fixed[x], pattern[x], maxLength, constraints, allowed types of a choice element and of
// a Reference, and slicing (value/pattern/exists/type discriminators). A profile we do not have
// (an IG's, e.g. http://hl7.org/fhir/uv/aitransparency/StructureDefinition/AI-Provenance) is not
// refused: HAPI only warns that it cannot find it.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileConstraint, evaluate } from './fhirpath.mjs';
import { core } from './medplum.mjs';
import { resourceSchema, slotsOf } from './schema.mjs';

export const PROFILE_DIRECTORY = fileURLToPath(new URL('../../../../fhir_profiles/structure_definitions/', import.meta.url));
const HL7_SD = 'http://hl7.org/fhir/StructureDefinition/';
/** ElementDefinition properties that only document, or that we check: anything else is reported at start-up. */
const UNDERSTOOD = new Set(
  (
    'id path sliceName slicing min max constraint maxLength type short definition comment requirements alias ' +
    'label mustSupport isSummary isModifier isModifierReason meaningWhenMissing orderMeaning example mapping ' +
    'extension modifierExtension base representation code condition'
  ).split(' '),
);
const profiles = new Map();

/** Load (again) every StructureDefinition of `directory`; returns the canonical URLs loaded. */
export function loadProfiles(directory = PROFILE_DIRECTORY, warn = (text) => process.stderr.write(`${text}\n`)) {
  profiles.clear();
  if (!existsSync(directory)) {
    warn(`FHIR test server: no profile directory ${directory}; meta.profile is not checked`);
    return [];
  }
  for (const file of readdirSync(directory)
    .filter((name) => name.endsWith('.json'))
    .sort()) {
    const definition = JSON.parse(readFileSync(join(directory, file), 'utf8'));
    if (definition.resourceType !== 'StructureDefinition' || typeof definition.url !== 'string') {
      warn(`FHIR test server: ${file} is not a StructureDefinition with a url; ignored`);
      continue;
    }
    addProfile(definition, (text) => warn(`FHIR test server: profile ${file}: ${text}`));
  }
  return [...profiles.keys()];
}

/** Compile one profile (a constraint on a core R4 resource, differential only) and make it known. */
export function addProfile(definition, warn = () => {}) {
  const profile = compileProfile(definition, warn);
  profiles.set(definition.url, profile);
  return profile;
}

export function knownProfiles() {
  return [...profiles.keys()];
}

function compileProfile(definition, warn) {
  const { url, type } = definition;
  const schema = resourceSchema(type);
  if (!schema) throw new Error(`profile ${url}: ${type} is not an R4 resource type`);
  const root = newNode(type, undefined);
  for (const element of definition.differential?.element ?? definition.snapshot?.element ?? []) {
    const id = element.id ?? element.path;
    const segments = id.split('.');
    if (segments[0] !== type) {
      warn(`element ${id} is not in ${type}; ignored`);
      continue;
    }
    let node = root;
    for (const segment of segments.slice(1)) {
      const [name, sliceName] = segment.split(':');
      let child = node.children.get(name);
      if (!child) {
        child = newNode(name, undefined);
        node.children.set(name, child);
      }
      if (sliceName) {
        let slice = child.slices.get(sliceName);
        if (!slice) {
          slice = newNode(name, undefined, sliceName);
          child.slices.set(sliceName, slice);
        }
        node = slice;
      } else {
        node = child;
      }
    }
    node.element = compileElement(element, definition.version ? `${url}|${definition.version}` : url, warn);
  }
  checkPaths(root, schema, type, warn);
  return { url, version: definition.version, type, baseDefinition: definition.baseDefinition, root };
}

const newNode = (name, element, sliceName) => ({ name, element, sliceName, children: new Map(), slices: new Map() });

function compileElement(element, url, warn) {
  const compiled = { id: element.id ?? element.path, min: element.min, max: element.max, url };
  for (const [key, value] of Object.entries(element)) {
    if (key.startsWith('fixed')) compiled.fixed = value;
    else if (key.startsWith('pattern')) compiled.pattern = value;
    else if (key === 'binding' || key.startsWith('minValue') || key.startsWith('maxValue')) {
      warn(`${compiled.id}: ${key} is not checked by this test server`);
    } else if (key.startsWith('defaultValue') || key === 'contentReference') {
      warn(`${compiled.id}: ${key} is not checked by this test server`);
    } else if (!UNDERSTOOD.has(key)) {
      warn(`${compiled.id}: ${key} is not understood by this test server; ignored`);
    }
  }
  if (element.maxLength !== undefined) compiled.maxLength = element.maxLength;
  if (element.type?.length) {
    compiled.types = new Set(element.type.map((t) => t.code));
    const targets = element.type.flatMap((t) => t.targetProfile ?? []);
    if (targets.length) compiled.targets = targets;
  }
  compiled.constraints = (element.constraint ?? [])
    .filter((constraint) => (constraint.severity ?? 'error') === 'error' && constraint.expression)
    .map((constraint) => compileConstraint(constraint, url));
  if (element.slicing) {
    compiled.slicing = element.slicing;
    for (const discriminator of element.slicing.discriminator ?? []) {
      if (!['value', 'pattern', 'exists', 'type'].includes(discriminator.type)) {
        warn(`${compiled.id}: ${discriminator.type} discriminators are not supported; values match no slice`);
      }
    }
  }
  return compiled;
}

/** Warn about differential elements that are not elements of the R4 type. */
function checkPaths(node, schema, path, warn) {
  for (const child of node.children.values()) {
    const where = `${path}.${child.name}`;
    const slot = schema && slotsOf(schema).get(child.name); // also the type-specific "valueQuantity"
    const element = schema?.elements[child.name] ?? slot?.element;
    if (!element) {
      warn(`${where} is not an element of the R4 type; it is never present`);
      continue;
    }
    const code = slot?.code ?? element.type?.[0]?.code;
    const single = Boolean(slot) || element.type?.length === 1;
    const inner =
      single && code && code !== 'Resource' && !core.isPrimitiveType(code)
        ? (schema.innerTypes?.find((t) => t.name === code) ?? safeDataType(code))
        : undefined;
    for (const part of [child, ...child.slices.values()]) checkPaths(part, inner, where, warn);
  }
}

function safeDataType(code) {
  try {
    return core.getDataType(code);
  } catch {
    return undefined;
  }
}

/**
 * Check `resource` against each of our profiles its meta.profile names; push the issues. `frame`
 * gives %rootResource for constraints ({ root } typed).
 */
export function checkProfiles(resource, path, issues, frame) {
  const seen = new Set();
  for (const canonical of resource.meta.profile ?? []) {
    if (typeof canonical !== 'string') continue;
    let profile = profiles.get(canonical.split('|')[0]);
    while (profile && !seen.has(profile.url)) {
      seen.add(profile.url);
      checkProfile(profile, resource, path, issues, frame);
      profile = profiles.get(profile.baseDefinition); // a profile on one of ours: that one too
    }
  }
}

function checkProfile(profile, resource, path, issues, frame) {
  if (resource.resourceType !== profile.type) {
    issues.push(
      issue(
        'structure',
        path,
        `Specified profile type was '${profile.type}' in profile '${profile.url}', but found type '${resource.resourceType}'`,
      ),
    );
    return;
  }
  const typed = { type: resource.resourceType, value: resource };
  const context = { issues, frame: { resource: typed, root: frame?.root ?? typed } };
  checkNode(
    profile.root,
    [{ value: resource, path, type: resource.resourceType, schema: resourceSchema(profile.type) }],
    context,
  );
}

function checkNode(node, instances, context) {
  for (const instance of instances) {
    if (node.element) checkValue(node.element, instance, context);
    for (const child of node.children.values()) {
      const values = childValues(instance, child.name);
      const where = `${instance.path}.${child.name}`;
      if (child.element) {
        checkCardinality(child.element, values.length, where, context);
        if (child.element.types && child.name.endsWith('[x]')) checkChoiceTypes(child.element, values, context);
      }
      if (child.slices.size) checkSlices(child, values, where, context);
      checkNode(child, values, context);
    }
  }
}

/** The values of element `name` (may be a choice "value[x]") in an instance, with paths and types. */
function childValues(instance, name) {
  const { value, schema } = instance;
  if (!value || typeof value !== 'object' || !schema) return [];
  const slots = slotsOf(schema);
  const keys = [];
  if (name.endsWith('[x]')) {
    const base = name.slice(0, -3);
    for (const key of Object.keys(value)) {
      if (key.startsWith(base) && slots.get(key)?.name === name) keys.push(key);
    }
  } else if (name in value) {
    keys.push(name);
  }
  const values = [];
  for (const key of keys) {
    const slot = slots.get(key);
    const add = (item, path) => {
      if (item === null || item === undefined) return;
      const type = slot?.kind === 'resource' ? item?.resourceType : slot?.code;
      let childSchema;
      if (slot?.kind === 'complex') childSchema = slot.schema();
      else if (slot?.kind === 'resource') childSchema = resourceSchema(item?.resourceType);
      values.push({ value: item, path, type, schema: childSchema, key });
    };
    const item = value[key];
    if (Array.isArray(item)) item.forEach((entry, index) => add(entry, `${instance.path}.${key}[${index}]`));
    else add(item, `${instance.path}.${key}`);
  }
  return values;
}

function checkCardinality(element, count, where, context) {
  if (element.min !== undefined && count < element.min) {
    context.issues.push(
      issue(
        'structure',
        where,
        `${where}: minimum required = ${element.min}, but only found ${count} (from ${element.url})`,
      ),
    );
  }
  const max = element.max === undefined || element.max === '*' ? Infinity : Number(element.max);
  if (count > max) {
    context.issues.push(
      issue('structure', where, `${where}: max allowed = ${max}, but found ${count} (from ${element.url})`),
    );
  }
}

function checkChoiceTypes(element, values, context) {
  for (const { path, type } of values) {
    if (!element.types.has(type)) {
      const allowed = [...element.types].join(', ');
      context.issues.push(
        issue('structure', path, `${path}: type ${type} is not allowed here, only ${allowed} (from ${element.url})`),
      );
    }
  }
}

function checkValue(element, instance, context) {
  const { value, path } = instance;
  const { issues } = context;
  if (element.fixed !== undefined && !core.deepEquals(value, element.fixed)) {
    issues.push(
      issue(
        'value',
        path,
        `${path}: value ${show(value)} is not the fixed value ${show(element.fixed)} (from ${element.url})`,
      ),
    );
  }
  if (element.pattern !== undefined && !matchesPattern(value, element.pattern)) {
    issues.push(
      issue(
        'value',
        path,
        `${path}: value ${show(value)} does not match the pattern ${show(element.pattern)} (from ${element.url})`,
      ),
    );
  }
  if (element.maxLength !== undefined && typeof value === 'string' && value.length > element.maxLength) {
    issues.push(
      issue(
        'value',
        path,
        `${path}: ${value.length} characters, more than maxLength ${element.maxLength} (from ${element.url})`,
      ),
    );
  }
  if (element.targets && typeof value?.reference === 'string') checkTarget(element, value.reference, path, issues);
  if (element.constraints.length) {
    const typed = { type: instance.type ?? 'BackboneElement', value };
    for (const check of element.constraints) {
      const broken = evaluate(check, typed, path, context.frame);
      if (broken) issues.push(broken);
    }
  }
}

/** A Reference of a profiled element must point at one of the types its targetProfile allows. */
function checkTarget(element, reference, path, issues) {
  const type = referenceType(reference);
  if (!type) return;
  const allowed = element.targets.map((url) => (url.startsWith(HL7_SD) ? url.slice(HL7_SD.length) : profileType(url)));
  if (allowed.includes(undefined) || allowed.includes('Resource') || allowed.includes(type)) return;
  issues.push(
    issue(
      'structure',
      path,
      `${path}: a reference to a ${type} is not allowed here, only to ${allowed.join(', ')} (from ${element.url})`,
    ),
  );
}

/** "Patient" for Patient/1, Patient/1/_history/2, http://x/fhir/Patient/1 and Patient?identifier=a|b. */
function referenceType(reference) {
  if (reference.startsWith('#') || reference.startsWith('urn:')) return undefined;
  const conditional = reference.indexOf('?');
  if (conditional >= 0) return reference.slice(0, conditional).split('/').at(-1);
  const parts = reference.split('/');
  const history = parts.lastIndexOf('_history');
  return history >= 2 ? parts[history - 2] : parts.at(-2);
}

const profileType = (url) => profiles.get(url.split('|')[0])?.type;

function checkSlices(node, values, where, context) {
  const slicing = node.element?.slicing;
  const slices = [...node.slices.values()];
  const matched = new Map(slices.map((slice) => [slice, []]));
  // value[x]:valueQuantity without a slicing of its own: the type-specific form of a choice element.
  const byType = !slicing && node.name.endsWith('[x]');
  for (const value of values) {
    let slice;
    if (byType) slice = slices.find((candidate) => candidate.sliceName === value.key);
    else if (slicing) slice = slices.find((candidate) => inSlice(value, candidate, slicing));
    if (slice) matched.get(slice).push(value);
    else if (slicing?.rules === 'closed') {
      context.issues.push(
        issue(
          'structure',
          value.path,
          `${value.path} matches no slice of ${where}, and the slicing is closed (from ${node.element.url})`,
        ),
      );
    }
  }
  for (const slice of slices) {
    const found = matched.get(slice);
    if (slice.element) checkCardinality(slice.element, found.length, `${where}:${slice.sliceName}`, context);
    checkNode(slice, found, context);
  }
}

/** Does `instance` belong to `slice`? Every discriminator must say so. */
function inSlice(instance, slice, slicing) {
  return (slicing.discriminator ?? []).every(({ type, path }) => {
    const target = path === '$this' ? slice : descendant(slice, path);
    if (type === 'type') {
      const wanted = target?.element?.types;
      return Boolean(wanted) && (path === '$this' ? wanted.has(instance.type) : false);
    }
    const actual = path === '$this' ? [instance.value] : valuesAt(instance.value, path);
    if (type === 'exists') {
      if (target?.element?.min >= 1) return actual.length > 0;
      if (target?.element?.max === '0') return actual.length === 0;
      return false;
    }
    if (type === 'value' || type === 'pattern') {
      const element = target?.element;
      if (element?.fixed !== undefined) return actual.some((value) => core.deepEquals(value, element.fixed));
      if (element?.pattern !== undefined) return actual.some((value) => matchesPattern(value, element.pattern));
    }
    return false;
  });
}

function descendant(node, path) {
  let current = node;
  for (const name of path.split('.')) {
    current = current?.children.get(name);
    if (!current) return undefined;
  }
  return current;
}

/** Plain JSON navigation for a discriminator path ("coding.system"); arrays are flattened. */
function valuesAt(value, path) {
  let current = [value];
  for (const name of path.split('.')) {
    const next = [];
    for (const item of current) {
      if (!item || typeof item !== 'object') continue;
      const child = item[name];
      if (Array.isArray(child)) next.push(...child);
      else if (child !== undefined && child !== null) next.push(child);
    }
    current = next;
  }
  return current;
}

/**
 * pattern[x] semantics: a primitive must be equal; every property of an object pattern must match;
 * every item of an array pattern must match some item of the instance's array.
 */
export function matchesPattern(actual, pattern) {
  if (Array.isArray(pattern)) {
    if (!Array.isArray(actual)) return false;
    return pattern.every((wanted) => actual.some((item) => matchesPattern(item, wanted)));
  }
  if (pattern && typeof pattern === 'object') {
    if (!actual || typeof actual !== 'object' || Array.isArray(actual)) return false;
    return Object.entries(pattern).every(([key, wanted]) => matchesPattern(actual[key], wanted));
  }
  return actual === pattern;
}

const show = (value) => {
  const text = JSON.stringify(value);
  return text && text.length > 200 ? `${text.slice(0, 200)}…` : text;
};

const issue = (code, path, diagnostics) => ({ severity: 'error', code, diagnostics, expression: [path] });
