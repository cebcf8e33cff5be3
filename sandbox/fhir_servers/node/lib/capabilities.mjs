// GET /metadata: what this server does, per resource type, as a HAPI server describes itself.
import { core } from './medplum.mjs';

const MEDPLUM_ONLY = new Set(['_compartment', '_project']);
const INTERACTIONS = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'];
let statement;

export function capabilityStatement() {
  statement ??= build();
  return statement;
}

function build() {
  const types = core
    .getResourceTypes()
    .filter((type) => core.isResourceType(type))
    .sort();
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    publisher: 'Countersign',
    kind: 'instance',
    software: { name: 'Countersign FHIR test server (Medplum engine)', version: '0.1.0' },
    implementation: { description: 'In-memory FHIR R4 server for tests; data is lost when it stops' },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [
      {
        mode: 'server',
        resource: types.map((type) => ({
          type,
          interaction: INTERACTIONS.map((code) => ({ code })),
          versioning: 'versioned',
          readHistory: true,
          updateCreate: true,
          conditionalCreate: true,
          conditionalUpdate: true,
          conditionalDelete: 'single',
          searchParam: Object.values(core.getSearchParameters(type) ?? {})
            .filter((parameter) => !MEDPLUM_ONLY.has(parameter.code))
            .map((parameter) => ({ name: parameter.code, definition: parameter.url, type: parameter.type })),
        })),
        interaction: [{ code: 'transaction' }, { code: 'batch' }],
      },
    ],
  };
}
