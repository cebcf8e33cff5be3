// What each JSON property of a FHIR type is, compiled once per type from Medplum's R4 schemas: the
// walkers of invariants.mjs and profiles.mjs look a property up in a Map instead of asking the
// schema (and FHIRPath) for every value of every write.
import { core } from './medplum.mjs';

const HL7_SD = 'http://hl7.org/fhir/StructureDefinition/';
const compiled = new WeakMap();

/**
 * A property slot: { name (the element name, e.g. "value[x]"), path ("Observation.value[x]"),
 * code (the type of this JSON key: "Quantity", "Reference", "Resource", "string", or a backbone's
 * inner type name), kind ("primitive" | "resource" | "complex"), isArray, element (Medplum's
 * InternalSchemaElement), targets (Set of allowed reference target types, or undefined for any),
 * profiles (type profiles such as SimpleQuantity), schema() (the InternalTypeSchema of a complex value) }.
 */
export function slotsOf(schema) {
  let slots = compiled.get(schema);
  if (slots) return slots;
  slots = new Map();
  for (const [name, element] of Object.entries(schema.elements)) {
    const choice = name.endsWith('[x]');
    const base = choice ? name.slice(0, -3) : name;
    for (const type of element.type ?? []) {
      const key = choice ? base + core.capitalize(type.code) : base;
      if (!slots.has(key)) slots.set(key, makeSlot(schema, name, element, type));
    }
  }
  compiled.set(schema, slots);
  return slots;
}

function makeSlot(schema, name, element, type) {
  const { code } = type;
  const kind = isPrimitiveCode(code) ? 'primitive' : code === 'Resource' ? 'resource' : 'complex';
  let inner;
  return {
    name,
    path: element.path,
    code,
    kind,
    isArray: Boolean(element.isArray),
    element,
    /** true for a datatype (Period, Reference, ...), false for a backbone element of this type. */
    datatype: kind === 'complex' && !schema.innerTypes?.some((t) => t.name === code),
    targets: code === 'Reference' ? referenceTargets(type.targetProfile) : undefined,
    profiles: (type.profile ?? []).filter((url) => url.startsWith(HL7_SD)).map((url) => url.slice(HL7_SD.length)),
    schema() {
      inner ??= schema.innerTypes?.find((t) => t.name === code) ?? core.getDataType(code);
      return inner;
    },
  };
}

/** The resource types a Reference element may point to; undefined when any (Reference(Any) or a non-core profile). */
function referenceTargets(targetProfiles) {
  if (!targetProfiles?.length) return undefined;
  const types = new Set();
  for (const url of targetProfiles) {
    if (!url.startsWith(HL7_SD)) return undefined; // a profile we cannot resolve to a type: not checked
    const type = url.slice(HL7_SD.length);
    if (type === 'Resource' || type === 'DomainResource') return undefined;
    types.add(type);
  }
  return types;
}

export function isPrimitiveCode(code) {
  return code.startsWith('http://') || core.isPrimitiveType(code) || (code[0] >= 'a' && code[0] <= 'z');
}

/** The schema of a resource type, or undefined for an unknown one. */
export function resourceSchema(type) {
  return typeof type === 'string' && core.isResourceType(type) ? core.getDataType(type) : undefined;
}

/** The data type schema named `type` (Period, SimpleQuantity, ...), or undefined. */
export function dataTypeSchema(type) {
  try {
    return core.getDataType(type);
  } catch {
    return undefined;
  }
}
