// The R4 invariants (ElementDefinition.constraint, severity error) that Medplum's validateResource
// does not evaluate, and the walk that finds where they apply. Medplum evaluates the constraints
// declared on the elements of a resource (and of the datatypes inside it) and the root constraints
// of the resource written, but not:
//   - the root constraints of a datatype value (per-1 of a Period, ref-1 of a Reference, qty-3 of a
//     Quantity, rng-2, rat-1, att-1, cpt-2, age-1, sqty-1, ...): evaluated here on every such value;
//   - the root constraints of a resource inside another (contained, Bundle.entry.resource,
//     Parameters.parameter.resource: dom-2..5, inv-1, obs-6, ...): evaluated here;
//   - the keys it skips: org-1 and sdf-19 (evaluated here with FHIRPath) and dom-3, and que-2,
//     csd-1, sdf-9, which it "evaluates" with descendants()/children() stubbed to empty (checked
//     here in JavaScript, see NATIVE).
// txt-1/txt-2 (htmlChecks(), which Medplum answers with true) are checked in xhtml.mjs. Not checked
// (SKIPPED): ele-1 (as in HAPI; an empty object or array is a 400 structure error anyway).
// The same walk collects every Reference (with its element) for the referential integrity check,
// and checks every resource met (contained ones included) against our own profiles.
import { compileConstraint, constraintIssue, evaluate } from './fhirpath.mjs';
import { core } from './medplum.mjs';
import { checkProfiles } from './profiles.mjs';
import { dataTypeSchema, resourceSchema, slotsOf } from './schema.mjs';
import { narrativeProblems } from './xhtml.mjs';

const HL7_SD = 'http://hl7.org/fhir/StructureDefinition/';
/** Medplum's validator skips these everywhere (see its skippedConstraintKeys). */
const MEDPLUM_SKIPS = new Set(['ele-1', 'dom-3', 'org-1', 'sdf-19']);
/** Not checked at all, and why. */
export const SKIPPED = new Map([
  [
    'ele-1',
    'children() is a stub in Medplum; HAPI does not enforce ele-1 either; an empty object or array is refused as a structure error (400)',
  ],
]);
/** Element constraints whose FHIRPath (htmlChecks()) Medplum answers with true: checked in xhtml.mjs. */
const NARRATIVE_KEYS = new Set(['txt-1', 'txt-2']);

/**
 * Constraints whose FHIRPath Medplum cannot evaluate faithfully (descendants() and children() are
 * stubs there that answer an empty collection), written here in JavaScript with the same meaning.
 * Each gets (resource, path, issues, check) and pushes an issue when it is broken.
 */
const NATIVE = {
  // "If a resource is contained in another resource, it SHALL be referred to from elsewhere in the
  // resource or SHALL refer to the containing resource"
  'dom-3': (resource, path, issues, check) => {
    if (!Array.isArray(resource.contained) || !resource.contained.length) return;
    const strings = new Set();
    collectStrings(resource, strings);
    resource.contained.forEach((contained, index) => {
      if (!contained || typeof contained !== 'object') return;
      if (contained.id !== undefined && strings.has(`#${contained.id}`)) return;
      if (containsString(contained, '#')) return;
      issues.push(constraintIssue(check, `${path}.contained[${index}]`, 'checked in JavaScript'));
    });
  },
  // "Link ids should be unique within the Questionnaire"
  'que-2': (resource, path, issues, check) => {
    const seen = new Set();
    const walk = (items) => {
      for (const item of Array.isArray(items) ? items : []) {
        if (typeof item?.linkId === 'string') {
          if (seen.has(item.linkId)) issues.push(constraintIssue(check, path, `duplicate linkId "${item.linkId}"`));
          seen.add(item.linkId);
        }
        walk(item?.item);
      }
    };
    walk(resource.item);
  },
  // "Within a code system definition, all the codes SHALL be unique"
  'csd-1': (resource, path, issues, check) => {
    const seen = new Set();
    const walk = (concepts) => {
      for (const concept of Array.isArray(concepts) ? concepts : []) {
        if (typeof concept?.code === 'string') {
          if (seen.has(concept.code)) issues.push(constraintIssue(check, path, `duplicate code "${concept.code}"`));
          seen.add(concept.code);
        }
        walk(concept?.concept);
      }
    };
    walk(resource.concept);
  },
  // "In any snapshot or differential, no label, code or requirements on an element without a "." in the path"
  'sdf-9': (resource, path, issues, check) => {
    for (const part of ['snapshot', 'differential']) {
      for (const element of Array.isArray(resource[part]?.element) ? resource[part].element : []) {
        if (typeof element?.path !== 'string' || element.path.includes('.')) continue;
        if (element.label !== undefined || element.code !== undefined || element.requirements !== undefined) {
          issues.push(constraintIssue(check, `${path}.${part}`, 'checked in JavaScript'));
        }
      }
    }
  },
};

/**
 * Check `resource` (already structurally valid): invariants Medplum left out, and our profiles.
 * Returns the issues; when `references` is an array, every Reference met is pushed onto it as
 * { reference, path, slot, root } (root: the resource whose contained ones #id names; not those
 * inside the entries of a stored Bundle, which refer to each other by fullUrl).
 */
export function checkInvariants(resource, references) {
  const issues = [];
  visitResource(resource, resource.resourceType, { issues, references }, { top: true });
  return issues;
}

function visitResource(resource, path, context, { top = false, container, collect = true }) {
  const schema = resourceSchema(resource.resourceType);
  if (!schema) return; // Medplum has already refused an unknown type
  const typed = { type: resource.resourceType, value: resource };
  const frame = {
    resource: typed,
    root: container ?? typed,
    issues: context.issues,
    context,
    references: collect ? context.references : undefined,
    inBundle: resource.resourceType === 'Bundle' || !collect,
  };
  const plan = rootPlan(resource.resourceType, top);
  for (const check of plan.fhirpath) {
    const issue = evaluate(check, typed, path, frame);
    if (issue) frame.issues.push(issue);
  }
  for (const check of plan.native) NATIVE[check.key](resource, path, frame.issues, check);
  if (resource.meta?.profile) checkProfiles(resource, path, frame.issues, frame);
  walkObject(resource, schema, path, frame);
}

function walkObject(object, schema, path, frame) {
  const slots = slotsOf(schema);
  for (const key of Object.keys(object)) {
    const slot = slots.get(key);
    if (slot === undefined) {
      // "_given": the id and extensions of primitive values; an extension may hold a Reference.
      if (key.charCodeAt(0) === 95 && object[key] && typeof object[key] === 'object') {
        visitAll(object[key], primitiveElementSlot(), `${path}.${key}`, frame);
      }
      continue;
    }
    if (slot.kind !== 'primitive') visitAll(object[key], slot, `${path}.${key}`, frame);
  }
}

function visitAll(value, slot, path, frame) {
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index += 1) visitValue(value[index], slot, `${path}[${index}]`, frame);
  } else {
    visitValue(value, slot, path, frame);
  }
}

function visitValue(value, slot, path, frame) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return; // Medplum refused it already
  if (slot.kind === 'resource') {
    const contained = slot.name === 'contained';
    visitResource(value, path, frame.context, {
      container: contained ? frame.root : undefined,
      collect: Boolean(frame.references) && !frame.inBundle,
    });
    return;
  }
  if (slot.datatype) {
    const typed = { type: slot.code, value };
    for (const check of datatypePlan(slot)) {
      if (check.key === 'ref-1' && !isLocalReference(value)) continue;
      const issue = evaluate(check, typed, path, frame);
      if (issue) frame.issues.push(issue);
    }
    if (slot.code === 'Narrative' && typeof value.div === 'string') {
      checkNarrative(value.div, `${path}.div`, frame.issues);
    }
    if (slot.code === 'Reference' && frame.references) {
      frame.references.push({ reference: value, path, slot, root: frame.root.value });
    }
  }
  walkObject(value, slot.schema(), path, frame);
}

/**
 * ref-1 ("reference.startsWith('#').not() or ...") is about local references only. Without a
 * reference (a logical reference: identifier only) Medplum's FHIRPath answers empty rather than
 * true, which would refuse every identifier-only Reference: the HL7 validator accepts them, so
 * ref-1 is only evaluated for a reference starting with '#' (for any other its first part holds).
 */
const isLocalReference = (value) => typeof value.reference === 'string' && value.reference.startsWith('#');

let narrativeChecks;
function checkNarrative(div, path, issues) {
  narrativeChecks ??= Object.fromEntries(
    core
      .getDataType('Narrative')
      .elements.div.constraints.filter((constraint) => NARRATIVE_KEYS.has(constraint.key))
      .map((constraint) => [constraint.key, compileConstraint(constraint, `${HL7_SD}Narrative`)]),
  );
  const { txt1, txt2 } = narrativeProblems(div);
  if (txt1.length) {
    issues.push(constraintIssue(narrativeChecks['txt-1'], path, `checked in JavaScript: ${txt1.join('; ')}`));
  }
  if (txt2) issues.push(constraintIssue(narrativeChecks['txt-2'], path, 'checked in JavaScript: no text and no image'));
}

let elementSlot;
/** A slot standing for the Element of a primitive ("_birthDate"): its extensions are walked. */
function primitiveElementSlot() {
  elementSlot ??= {
    name: 'Element',
    path: 'Element',
    code: 'Element',
    kind: 'complex',
    isArray: false,
    element: { constraints: [] },
    datatype: false, // Element has no root constraint but ele-1
    profiles: [],
    schema: () => core.getDataType('Element'),
  };
  return elementSlot;
}

const rootPlans = new Map();

/** Root constraints of a resource type: all of them for a nested resource, Medplum's gaps for the one written. */
function rootPlan(type, top) {
  const cacheKey = `${top ? 'top' : 'nested'}:${type}`;
  let plan = rootPlans.get(cacheKey);
  if (plan) return plan;
  plan = { fhirpath: [], native: [] };
  const url = `${HL7_SD}${type}`;
  for (const constraint of core.getDataType(type).constraints ?? []) {
    const { key } = constraint;
    if (constraint.severity !== 'error' || SKIPPED.has(key)) continue;
    const check = compileConstraint(constraint, url);
    if (NATIVE[key]) plan.native.push(check);
    else if (!top || MEDPLUM_SKIPS.has(key)) plan.fhirpath.push(check);
  }
  rootPlans.set(cacheKey, plan);
  return plan;
}

/**
 * Root constraints of the datatype of `slot` (and of its type profiles, e.g. SimpleQuantity's
 * sqty-1), less those Medplum evaluated on the element itself (ext-1 of an extension).
 */
function datatypePlan(slot) {
  if (slot.rootChecks) return slot.rootChecks;
  const onElement = new Set((slot.element.constraints ?? []).map((c) => c.key));
  const checks = new Map();
  for (const type of [slot.code, ...slot.profiles]) {
    for (const constraint of dataTypeSchema(type)?.constraints ?? []) {
      const { key } = constraint;
      if (constraint.severity !== 'error' || SKIPPED.has(key) || onElement.has(key)) continue;
      if (!checks.has(key)) checks.set(key, compileConstraint(constraint, `${HL7_SD}${type}`));
    }
  }
  slot.rootChecks = [...checks.values()];
  return slot.rootChecks;
}

function collectStrings(value, strings) {
  if (typeof value === 'string') strings.add(value);
  else if (Array.isArray(value)) for (const item of value) collectStrings(item, strings);
  else if (value && typeof value === 'object') for (const key in value) collectStrings(value[key], strings);
}

function containsString(value, wanted) {
  if (typeof value === 'string') return value === wanted;
  if (Array.isArray(value)) return value.some((item) => containsString(item, wanted));
  if (value && typeof value === 'object') return Object.values(value).some((item) => containsString(item, wanted));
  return false;
}

/**
 * Who checks each error constraint of the R4 core StructureDefinitions (for the tests and README):
 * [{ type, path, key, expression, by }] with `by` one of "medplum" (validateResource, on the
 * element or at the root of the resource written), "here" (FHIRPath evaluated by this module: root
 * of a datatype value or of a nested resource, org-1, sdf-19), "native" (JavaScript, see NATIVE)
 * or "skipped" (see SKIPPED).
 */
export function constraintCoverage(structureDefinitions) {
  const rows = [];
  for (const definition of structureDefinitions) {
    if (definition.resourceType !== 'StructureDefinition' || !definition.snapshot) continue;
    if (definition.kind === 'logical') continue; // MetadataResource: not a type any instance has
    if (definition.derivation === 'constraint' && definition.kind === 'resource') continue; // profiles
    const [root, ...elements] = definition.snapshot.element;
    const add = (element, constraint, by) =>
      rows.push({
        type: definition.id,
        path: element.path,
        key: constraint.key,
        expression: constraint.expression,
        by,
      });
    for (const constraint of root.constraint ?? []) {
      if (constraint.severity !== 'error') continue;
      const { key } = constraint;
      if (SKIPPED.has(key)) add(root, constraint, 'skipped');
      else if (NATIVE[key]) add(root, constraint, 'native');
      else if (definition.kind === 'resource') add(root, constraint, MEDPLUM_SKIPS.has(key) ? 'here' : 'medplum');
      else add(root, constraint, 'here'); // datatype root: datatypePlan()
    }
    for (const element of elements) {
      for (const constraint of element.constraint ?? []) {
        if (constraint.severity !== 'error') continue;
        const { key } = constraint;
        if (SKIPPED.has(key)) add(element, constraint, 'skipped');
        else if (NARRATIVE_KEYS.has(key)) add(element, constraint, 'native');
        else if (MEDPLUM_SKIPS.has(key)) add(element, constraint, 'uncovered');
        else add(element, constraint, 'medplum');
      }
    }
  }
  return rows;
}
