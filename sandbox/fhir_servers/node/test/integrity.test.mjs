// Writes are refused as a HAPI FHIR server (with its validator) refuses them: dangling references,
// broken invariants, resources that break our own profiles. Over real HTTP, on one server.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { client, observation, patient, startServer, transaction, unique } from './helpers.mjs';

let server;
let fhir;
before(async () => {
  server = await startServer();
  fhir = client(server.base);
});
after(() => server.stop());

/** Assert a refusal: status, an OperationOutcome whose issues say why and name the path. */
function refused(response, status, { code, expression, diagnostics } = {}) {
  assert.equal(response.status, status, JSON.stringify(response.body));
  assert.equal(response.body.resourceType, 'OperationOutcome');
  const { issue } = response.body;
  assert.ok(issue.length >= 1);
  for (const item of issue) {
    assert.equal(item.severity, 'error');
    assert.ok(item.diagnostics, 'each issue says what is wrong');
    assert.ok(item.expression?.length, `each issue names the path: ${JSON.stringify(item)}`);
  }
  if (code)
    assert.ok(
      issue.some((item) => item.code === code),
      `issue code ${code}: ${JSON.stringify(issue)}`,
    );
  if (expression) {
    assert.ok(
      issue.some((item) => item.expression.includes(expression)),
      `an issue at ${expression}: ${JSON.stringify(issue)}`,
    );
  }
  if (diagnostics) {
    assert.ok(
      issue.some((item) => diagnostics.test(item.diagnostics)),
      `${diagnostics}: ${JSON.stringify(issue)}`,
    );
  }
  return issue;
}

const created = async (path, resource) => {
  const response = await fhir.post(path, resource);
  assert.equal(response.status, 201, JSON.stringify(response.body));
  return response.body;
};
const countOf = async (query) => (await fhir.get(query)).body.total;
const provenance = (target, who, extra = {}) => ({
  resourceType: 'Provenance',
  target: [{ reference: target }],
  recorded: '2026-01-01T00:00:00Z',
  agent: [{ who: { reference: who } }],
  ...extra,
});

describe('referential integrity', () => {
  let pat;
  let device;
  before(async () => {
    pat = await created('/Patient', patient(unique('ri')));
    device = await created('/Device', { resourceType: 'Device' });
  });

  test('a reference to a resource that is not here is a 400 naming it and its path (HAPI-1094)', async () => {
    const response = await fhir.post('/Provenance', provenance('Patient/nope', `Device/${device.id}`));
    const [issue] = refused(response, 400, {
      code: 'processing',
      expression: 'Provenance.target[0]',
      diagnostics: /^Resource Patient\/nope not found, specified in path: Provenance\.target$/,
    });
    assert.equal(response.body.issue.length, 1, JSON.stringify(issue));
    const two = await fhir.post('/Provenance', provenance('Patient/nope', 'Device/countersign-cds-service'));
    assert.deepEqual(
      refused(two, 400).map((item) => item.expression[0]),
      ['Provenance.target[0]', 'Provenance.agent[0].who'],
    );
  });

  test('relative, versioned, absolute on this server, and logical references are accepted', async () => {
    const { versionId } = pat.meta;
    for (const reference of [
      `Patient/${pat.id}`,
      `Patient/${pat.id}/_history/${versionId}`,
      `${server.base}/Patient/${pat.id}`,
    ]) {
      assert.equal(
        (await fhir.post('/Provenance', provenance(reference, `Device/${device.id}`))).status,
        201,
        reference,
      );
    }
    const logical = {
      type: 'Practitioner',
      identifier: { system: 'urn:ietf:rfc:3986', value: 'https://ehr/Practitioner/1' },
    };
    const response = await fhir.post('/Provenance', {
      ...provenance(`Patient/${pat.id}`, `Device/${device.id}`),
      agent: [{ who: logical }],
    });
    assert.equal(response.status, 201, JSON.stringify(response.body));
  });

  test('every Reference element is checked: extensions, backbone elements, contained resources', async () => {
    const inExtension = observation({ extension: [{ url: 'urn:e', valueReference: { reference: 'Device/nope' } }] });
    refused(await fhir.post('/Observation', inExtension), 400, {
      expression: 'Observation.extension[0].valueReference',
    });
    const inAction = {
      resourceType: 'RequestGroup',
      status: 'draft',
      intent: 'proposal',
      action: [{ resource: { reference: 'MedicationRequest/draft-1' } }],
    };
    refused(await fhir.post('/RequestGroup', inAction), 400, { expression: 'RequestGroup.action[0].resource' });
    const inContained = observation({
      contained: [provenance('Patient/nope', `Device/${device.id}`, { id: 'p' })],
      focus: [{ reference: '#p' }],
    });
    refused(await fhir.post('/Observation', inContained), 400, { expression: 'Observation.contained[0].target[0]' });
  });

  test('a deleted target is a 400 (HAPI-1096)', async () => {
    const gone = await created('/Device', { resourceType: 'Device' });
    assert.equal((await fhir.delete(`/Device/${gone.id}`)).status, 200);
    refused(await fhir.post('/Observation', observation({ device: { reference: `Device/${gone.id}` } })), 400, {
      diagnostics: new RegExp(`Resource Device/${gone.id} is deleted, specified in path: Observation\\.device`),
    });
  });

  test('another server, a placeholder outside a transaction, a malformed or unknown type: 400', async () => {
    const at = (reference) => fhir.post('/Observation', observation({ subject: { reference } }));
    refused(await at('http://other.example/fhir/Patient/1'), 400, { diagnostics: /external reference/ });
    refused(await at('urn:uuid:0c3e9e4a-6a43-4c5e-9a43-2f0e0e7f1a11'), 400, { diagnostics: /placeholder/ });
    refused(await at('just-an-id'), 400, { diagnostics: /Invalid resource reference/ });
    refused(await fhir.post('/Observation', observation({ focus: [{ reference: 'NotAType/1' }] })), 400, {
      diagnostics: /Resource type is unknown/,
    });
  });

  test('a target type the element does not allow is a 422 (HAPI-0931), contained ones too', async () => {
    const other = await created('/Observation', observation());
    refused(await fhir.post('/Observation', observation({ subject: { reference: `Observation/${other.id}` } })), 422, {
      expression: 'Observation.subject',
      diagnostics: /Resource type 'Observation' is not valid for this path/,
    });
    const contained = observation({
      contained: [{ resourceType: 'Task', id: 't', status: 'draft', intent: 'order' }],
      basedOn: [{ reference: '#t' }],
    });
    refused(await fhir.post('/Observation', contained), 422, { expression: 'Observation.basedOn[0]' });
  });

  test('update, patch, conditional update and conditional create are checked; a matching conditional create is not', async () => {
    const stored = await created('/Observation', observation({ subject: { reference: `Patient/${pat.id}` } }));
    const dangling = { ...stored, subject: { reference: 'Patient/nope' } };
    refused(await fhir.put(`/Observation/${stored.id}`, dangling), 400);
    const patch = [{ op: 'add', path: '/focus', value: [{ reference: 'Patient/nope' }] }];
    refused(await fhir.patch(`/Observation/${stored.id}`, patch), 400, { expression: 'Observation.focus[0]' });
    assert.deepEqual((await fhir.get(`/Observation/${stored.id}`)).body, stored);

    const marker = unique('ri-cond');
    const identified = observation({
      identifier: [{ system: 'urn:test', value: marker }],
      subject: { reference: 'Patient/nope' },
    });
    refused(await fhir.put(`/Observation?identifier=urn:test|${marker}`, identified), 400);
    const header = { 'If-None-Exist': `identifier=urn:test|${marker}` };
    refused(await fhir.post('/Observation', identified, header), 400);
    assert.equal(await countOf(`/Observation?identifier=urn:test|${marker}`), 0);
    await created('/Observation', { ...identified, subject: { reference: `Patient/${pat.id}` } });
    assert.equal((await fhir.post('/Observation', identified, header)).status, 200); // matched: nothing written

    const self = unique('self');
    const linked = {
      resourceType: 'Patient',
      id: self,
      link: [{ other: { reference: `Patient/${self}` }, type: 'seealso' }],
    };
    assert.equal((await fhir.put(`/Patient/${self}`, linked)).status, 201);
  });

  test('a conditional reference resolves to its one match; none is a 404 (HAPI-1091), several a 412 (HAPI-2207)', async () => {
    const marker = unique('ri-match');
    const target = await created('/Patient', patient(marker));
    const obs = await created(
      '/Observation',
      observation({ subject: { reference: `Patient?identifier=urn:test|${marker}` } }),
    );
    assert.equal(obs.subject.reference, `Patient/${target.id}`);
    assert.equal((await fhir.get(`/Observation/${obs.id}`)).body.subject.reference, `Patient/${target.id}`);
    const none = observation({ subject: { reference: `Patient?identifier=urn:test|${marker}-none` } });
    refused(await fhir.post('/Observation', none), 404, { diagnostics: /No resources match this search/ });
    await created('/Patient', patient(marker));
    const two = observation({ subject: { reference: `Patient?identifier=urn:test|${marker}` } });
    refused(await fhir.post('/Observation', two), 412, { diagnostics: /Multiple resources match this search/ });
  });
});

describe('referential integrity in transactions', () => {
  test('entries may refer to each other in any order, by placeholder, conditional reference or id', async () => {
    const marker = unique('tx-ri');
    const putId = unique('tx-put');
    const bundle = transaction([
      {
        fullUrl: 'urn:uuid:3f0d1b8e-0000-4000-8000-000000000001',
        resource: provenance('urn:uuid:3f0d1b8e-0000-4000-8000-000000000002', `Patient/${putId}`, {
          entity: [{ role: 'source', what: { reference: `Patient?identifier=urn:test|${marker}` } }],
        }),
        request: { method: 'POST', url: 'Provenance' },
      },
      {
        fullUrl: 'urn:uuid:3f0d1b8e-0000-4000-8000-000000000002',
        resource: observation({ subject: { reference: `Patient/${putId}` } }),
        request: { method: 'POST', url: 'Observation' },
      },
      {
        fullUrl: 'urn:uuid:3f0d1b8e-0000-4000-8000-000000000003',
        resource: patient(marker),
        request: { method: 'POST', url: 'Patient', ifNoneExist: `Patient?identifier=urn:test|${marker}` },
      },
      {
        fullUrl: `${server.base}/Patient/${putId}`,
        resource: { resourceType: 'Patient', id: putId },
        request: { method: 'PUT', url: `Patient/${putId}` },
      },
    ]);
    const response = await fhir.post('', bundle);
    assert.equal(response.status, 200, JSON.stringify(response.body));
    const [prov, obs, pat] = response.body.entry.map((entry) => entry.resource);
    assert.equal(prov.target[0].reference, `Observation/${obs.id}`);
    assert.equal(prov.entity[0].what.reference, `Patient/${pat.id}`);
    assert.equal(obs.subject.reference, `Patient/${putId}`);
  });

  test('one dangling reference fails the whole transaction (400, naming the entry) and undoes it', async () => {
    const marker = unique('tx-ri-fail');
    const doomed = await created('/Patient', patient(`${marker}-del`));
    const bundle = transaction([
      { request: { method: 'DELETE', url: `Patient/${doomed.id}` } },
      {
        fullUrl: 'urn:uuid:5a1e0000-0000-4000-8000-000000000001',
        resource: patient(marker),
        request: { method: 'POST', url: 'Patient' },
      },
      {
        fullUrl: 'urn:uuid:5a1e0000-0000-4000-8000-000000000002',
        resource: provenance('urn:uuid:5a1e0000-0000-4000-8000-000000000001', 'Device/countersign-cds-service'),
        request: { method: 'POST', url: 'Provenance' },
      },
    ]);
    const issues = refused(await fhir.post('', bundle), 400, { expression: 'Provenance.agent[0].who' });
    assert.match(
      issues[0].diagnostics,
      /^Bundle\.entry\[2\] \(POST Provenance\): Resource Device\/countersign-cds-service not found/,
    );
    assert.equal(await countOf(`/Patient?identifier=urn:test|${marker}`), 0);
    assert.deepEqual((await fhir.get(`/Patient/${doomed.id}`)).body, doomed);
  });

  test('a reference to a resource deleted by the same transaction is a 400', async () => {
    const doomed = await created('/Patient', patient(unique('tx-del')));
    const bundle = transaction([
      { request: { method: 'DELETE', url: `Patient/${doomed.id}` } },
      {
        fullUrl: 'urn:uuid:6b2f0000-0000-4000-8000-000000000001',
        resource: observation({ subject: { reference: `Patient/${doomed.id}` } }),
        request: { method: 'POST', url: 'Observation' },
      },
    ]);
    refused(await fhir.post('', bundle), 400, { diagnostics: /is deleted/ });
    assert.equal((await fhir.get(`/Patient/${doomed.id}`)).status, 200);
  });

  test('a conditional reference with no match fails the transaction with 404', async () => {
    const marker = unique('tx-cond');
    const bundle = transaction([
      {
        fullUrl: 'urn:uuid:7c3a0000-0000-4000-8000-000000000001',
        resource: patient(marker),
        request: { method: 'POST', url: 'Patient' },
      },
      {
        fullUrl: 'urn:uuid:7c3a0000-0000-4000-8000-000000000002',
        resource: observation({ subject: { reference: `Patient?identifier=urn:test|${marker}-none` } }),
        request: { method: 'POST', url: 'Observation' },
      },
    ]);
    refused(await fhir.post('', bundle), 404);
    assert.equal(await countOf(`/Patient?identifier=urn:test|${marker}`), 0);
  });

  test('in a batch, only the entry with the dangling reference fails', async () => {
    const marker = unique('batch-ri');
    const response = await fhir.post(
      '',
      transaction(
        [
          { resource: patient(marker), request: { method: 'POST', url: 'Patient' } },
          {
            resource: observation({ subject: { reference: 'Patient/nope' } }),
            request: { method: 'POST', url: 'Observation' },
          },
        ],
        'batch',
      ),
    );
    assert.equal(response.status, 200);
    assert.deepEqual(
      response.body.entry.map((entry) => entry.response.status),
      ['201 Created', '400 Bad Request'],
    );
    assert.equal(await countOf(`/Patient?identifier=urn:test|${marker}`), 1);
  });
});

const task = (extra = {}) => ({
  resourceType: 'Task',
  status: 'draft',
  intent: 'order',
  authoredOn: '2026-01-02T10:00:00Z',
  lastModified: '2026-01-01T10:00:00Z', // before authoredOn: breaks inv-1
  ...extra,
});

describe('R4 invariants (422)', () => {
  test('Task inv-1 "Last modified date must be greater than or equal to authored-on date" is refused', async () => {
    const issues = refused(await fhir.post('/Task', task()), 422, { code: 'invariant', expression: 'Task' });
    assert.match(issues[0].diagnostics, /inv-1/);
    assert.match(issues[0].diagnostics, /Last modified date must be greater than or equal to authored-on date/);
    assert.match(
      issues[0].diagnostics,
      /lastModified\.exists\(\)\.not\(\) or authoredOn\.exists\(\)\.not\(\) or lastModified >= authoredOn/,
    );
    assert.equal((await fhir.post('/Task', task({ lastModified: '2026-01-02T10:00:00Z' }))).status, 201);
  });

  test('on update, patch and conditional update too; the stored resource is unchanged', async () => {
    const stored = await created('/Task', task({ lastModified: undefined }));
    refused(await fhir.put(`/Task/${stored.id}`, { ...stored, lastModified: '2020-01-01T00:00:00Z' }), 422);
    refused(
      await fhir.patch(`/Task/${stored.id}`, [{ op: 'add', path: '/lastModified', value: '2020-01-01T00:00:00Z' }]),
      422,
      {
        code: 'invariant',
        expression: 'Task',
      },
    );
    assert.deepEqual((await fhir.get(`/Task/${stored.id}`)).body, stored);
    const marker = unique('inv-cu');
    const identified = task({ identifier: [{ system: 'urn:test', value: marker }] });
    refused(await fhir.put(`/Task?identifier=urn:test|${marker}`, identified), 422);
    assert.equal(await countOf(`/Task?identifier=urn:test|${marker}`), 0);
  });

  test('in a transaction: 422, naming the entry, and everything before it is undone', async () => {
    const marker = unique('inv-tx');
    const bundle = transaction([
      {
        fullUrl: 'urn:uuid:8d4b0000-0000-4000-8000-000000000001',
        resource: patient(marker),
        request: { method: 'POST', url: 'Patient' },
      },
      {
        fullUrl: 'urn:uuid:8d4b0000-0000-4000-8000-000000000002',
        resource: task({ for: { reference: 'urn:uuid:8d4b0000-0000-4000-8000-000000000001' } }),
        request: { method: 'POST', url: 'Task' },
      },
    ]);
    const issues = refused(await fhir.post('', bundle), 422, { code: 'invariant' });
    assert.match(issues[0].diagnostics, /^Bundle\.entry\[1\] \(POST Task\): Constraint failed: inv-1/);
    assert.equal(await countOf(`/Patient?identifier=urn:test|${marker}`), 0);
  });

  test('datatype invariants (per-1, qty-3, sqty-1, ref-1) name the element', async () => {
    const cases = [
      [{ effectivePeriod: { start: '2026-02-01', end: '2026-01-01' } }, 'per-1', 'Observation.effectivePeriod'],
      [{ valueQuantity: { value: 1, code: 'mg' } }, 'qty-3', 'Observation.valueQuantity'],
      [{ referenceRange: [{ low: { value: 1, comparator: '<' } }] }, 'sqty-1', 'Observation.referenceRange[0].low'],
      [{ subject: { reference: '#nowhere' } }, 'ref-1', 'Observation.subject'],
      [{ referenceRange: [{ appliesTo: [{ text: 'adults' }] }] }, 'obs-3', 'Observation.referenceRange[0]'],
      [{ valueString: 'x', dataAbsentReason: { text: 'y' } }, 'obs-6', 'Observation'],
    ];
    for (const [extra, key, path] of cases) {
      const issues = refused(await fhir.post('/Observation', observation(extra)), 422, {
        code: 'invariant',
        expression: path,
      });
      assert.match(issues[0].diagnostics, new RegExp(`Constraint failed: ${key}: `), key);
      assert.match(issues[0].diagnostics, /FHIRPath: /);
    }
  });

  test('contained resources: their own invariants, and each must be referred to (dom-3)', async () => {
    const withTask = observation({ contained: [task({ id: 't' })], partOf: [{ reference: '#t' }] });
    refused(await fhir.post('/Observation', withTask), 422, {
      expression: 'Observation.contained[0]',
      diagnostics: /inv-1/,
    });
    const unreferenced = observation({ contained: [{ resourceType: 'Device', id: 'd' }] });
    refused(await fhir.post('/Observation', unreferenced), 422, { diagnostics: /dom-3/ });
    const referenced = observation({ contained: [{ resourceType: 'Device', id: 'd' }], device: { reference: '#d' } });
    assert.equal((await fhir.post('/Observation', referenced)).status, 201);
  });

  test('the entries of a stored Bundle are checked too (not their references)', async () => {
    const document = {
      resourceType: 'Bundle',
      type: 'collection',
      entry: [{ fullUrl: 'urn:uuid:9e5c0000-0000-4000-8000-000000000001', resource: task() }],
    };
    refused(await fhir.post('/Bundle', document), 422, {
      expression: 'Bundle.entry[0].resource',
      diagnostics: /inv-1/,
    });
    const fine = task({ lastModified: undefined, for: { reference: 'Patient/on-another-server' } });
    assert.equal(
      (await fhir.post('/Bundle', { ...document, entry: [{ ...document.entry[0], resource: fine }] })).status,
      201,
    );
  });
});

const PROFILE = 'https://countersign.health/fhir/StructureDefinition/';
const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
const GOVERNANCE = 'https://countersign.health/fhir/CodeSystem/ai-governance-event';

describe('Countersign profiles (meta.profile) and valid resources of every type Countersign writes', () => {
  const refs = {};
  const audit = (profile, extra) => ({
    resourceType: 'AuditEvent',
    meta: { profile: [`${PROFILE}${profile}`] },
    recorded: '2026-01-01T10:00:00Z',
    outcome: '0',
    agent: [
      { who: { reference: refs.device }, requestor: false },
      { who: { reference: refs.practitioner }, requestor: true },
    ],
    source: { observer: { reference: refs.device } },
    entity: [{ what: { reference: refs.patient } }, { what: { reference: refs.device } }],
    ...extra,
  });
  const examples = () => ({
    'ai-cds-service-call-audit': audit('ai-cds-service-call-audit', {
      type: { system: DCM, code: '110112', display: 'Query' },
      subtype: [{ system: GOVERNANCE, code: 'cds-hooks-service-call', display: 'CDS Hooks service call' }],
      action: 'E',
    }),
    'ai-write-back-audit': audit('ai-write-back-audit', {
      type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' },
      subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: 'create' }],
      action: 'C',
    }),
    'ai-service-read-audit': audit('ai-service-read-audit', {
      type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' },
      subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: 'search-type' }],
      action: 'E',
      entity: [{ what: { reference: refs.patient } }, { query: 'UGF0aWVudD9faWQ9MQ==' }],
    }),
    'ai-change-control-audit': audit('ai-change-control-audit', {
      type: { system: DCM, code: '110113', display: 'Security Alert' },
      subtype: [
        { system: DCM, code: '110131', display: 'Software Configuration' },
        { system: GOVERNANCE, code: 'model-activate' },
      ],
      action: 'U',
      entity: [{ what: { reference: refs.device } }],
    }),
    'ai-override-task': {
      resourceType: 'Task',
      meta: { profile: [`${PROFILE}ai-override-task`] },
      identifier: [{ system: 'urn:ietf:rfc:3986', value: 'urn:uuid:0b7c1f2e-1111-4222-8333-444455556666' }],
      status: 'rejected',
      businessStatus: { text: 'overridden' },
      intent: 'proposal',
      code: {
        coding: [
          {
            system: 'http://hl7.org/fhir/CodeSystem/task-code',
            code: 'approve',
            display: 'Activate/approve the focal resource',
          },
        ],
      },
      focus: { reference: refs.requestGroup },
      for: { reference: refs.patient },
      encounter: { reference: refs.encounter },
      authoredOn: '2026-01-01T10:00:00Z',
      lastModified: '2026-01-01T10:05:00Z',
      requester: { reference: refs.device },
      owner: { reference: refs.practitioner },
      statusReason: { coding: [{ system: 'http://example.org/cds-hooks/override-reason', code: 'patient-declined' }] },
      note: [{ authorReference: { reference: refs.practitioner }, time: '2026-01-01T10:05:00Z', text: 'declined' }],
      input: [{ type: { text: 'cds-hooks-card-uuid' }, valueString: '0b7c1f2e-1111-4222-8333-444455556666' }],
    },
  });

  before(async () => {
    const pat = await created(
      '/Patient',
      patient(unique('prof'), {
        gender: 'female',
        birthDate: '1950-03-01',
        name: [{ family: 'Doe', given: ['Jane'] }],
      }),
    );
    const practitioner = await created('/Practitioner', { resourceType: 'Practitioner', name: [{ family: 'House' }] });
    const encounter = await created('/Encounter', {
      resourceType: 'Encounter',
      status: 'in-progress',
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IMP' },
      subject: { reference: `Patient/${pat.id}` },
      period: { start: '2026-01-01T08:00:00Z' },
    });
    const device = await created('/Device', {
      resourceType: 'Device',
      identifier: [{ system: 'https://countersign.health/fhir/model', value: 'med-safety' }],
      deviceName: [{ name: 'Medication safety model', type: 'model-name' }],
      version: [{ value: '1.2.0' }],
      type: { text: 'AI model' },
      url: 'https://countersign.health/model-cards/med-safety',
    });
    Object.assign(refs, {
      patient: `Patient/${pat.id}`,
      practitioner: `Practitioner/${practitioner.id}`,
      encounter: `Encounter/${encounter.id}`,
      device: `Device/${device.id}`,
    });
    const order = await created('/MedicationRequest', {
      resourceType: 'MedicationRequest',
      status: 'draft',
      intent: 'proposal',
      subject: { reference: refs.patient },
      medicationCodeableConcept: { text: 'metformin 500 mg' },
    });
    const requestGroup = await created('/RequestGroup', {
      resourceType: 'RequestGroup',
      meta: { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'AIAST' }] },
      status: 'active',
      intent: 'proposal',
      subject: { reference: refs.patient },
      encounter: { reference: refs.encounter },
      authoredOn: '2026-01-01T10:00:00Z',
      author: { reference: refs.device },
      action: [
        {
          title: 'Reduce the dose',
          priority: 'urgent',
          type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/action-type', code: 'update' }] },
          resource: { reference: `MedicationRequest/${order.id}` },
        },
      ],
    });
    refs.requestGroup = `RequestGroup/${requestGroup.id}`;
  });

  test('a valid resource of each type Countersign writes is accepted', async () => {
    const resources = [
      {
        resourceType: 'Condition',
        subject: { reference: refs.patient },
        code: { coding: [{ system: 'http://snomed.info/sct', code: '44054006' }] },
        recordedDate: '2026-01-01',
        onsetPeriod: { start: '2020-01-01', end: '2021-01-01' },
      },
      {
        resourceType: 'MedicationRequest',
        status: 'draft',
        intent: 'order',
        subject: { reference: refs.patient },
        medicationCodeableConcept: { text: 'metformin 1 g' },
        dosageInstruction: [
          {
            timing: { repeat: { frequency: 2, period: 1, periodUnit: 'd' } },
            doseAndRate: [{ doseQuantity: { value: 1, unit: 'g', system: 'http://unitsofmeasure.org', code: 'g' } }],
          },
        ],
      },
      {
        resourceType: 'ServiceRequest',
        status: 'draft',
        intent: 'proposal',
        subject: { reference: refs.patient },
        code: { text: 'eGFR' },
        requester: { reference: refs.device },
      },
      observation({
        subject: { reference: refs.patient },
        encounter: { reference: refs.encounter },
        effectiveDateTime: '2026-01-01T09:00:00Z',
        valueQuantity: {
          value: 28,
          unit: 'mL/min/1.73m2',
          system: 'http://unitsofmeasure.org',
          code: 'mL/min/{1.73_m2}',
        },
        referenceRange: [{ low: { value: 60, system: 'http://unitsofmeasure.org', code: 'mL/min/{1.73_m2}' } }],
      }),
      {
        resourceType: 'GuidanceResponse',
        requestIdentifier: { system: 'urn:ietf:rfc:3986', value: 'urn:uuid:2d2b9b1a-0000-4000-8000-000000000001' },
        moduleUri: 'https://countersign.health/cds-services/medication-safety',
        status: 'success',
        subject: { reference: refs.patient },
        encounter: { reference: refs.encounter },
        occurrenceDateTime: '2026-01-01T10:00:00Z',
        performer: { reference: refs.device },
        result: { reference: refs.requestGroup },
      },
      {
        resourceType: 'Provenance',
        target: [{ reference: refs.requestGroup }],
        recorded: '2026-01-01T10:00:00Z',
        occurredPeriod: { start: '2026-01-01T09:59:00Z', end: '2026-01-01T10:00:00Z' },
        agent: [
          {
            type: {
              coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'author' }],
            },
            who: { reference: refs.device },
            onBehalfOf: { reference: refs.practitioner },
          },
        ],
        entity: [{ role: 'source', what: { reference: refs.patient } }],
      },
      {
        resourceType: 'DocumentReference',
        status: 'current',
        docStatus: 'preliminary',
        subject: { reference: refs.patient },
        author: [{ reference: refs.device }],
        context: { encounter: [{ reference: refs.encounter }] },
        content: [{ attachment: { contentType: 'text/markdown', data: 'IyBEaXNjaGFyZ2U=' } }],
      },
      {
        resourceType: 'AdverseEvent',
        actuality: 'potential',
        subject: { reference: refs.patient },
        date: '2026-01-01T10:00:00Z',
        recorder: { reference: refs.practitioner },
        suspectEntity: [{ instance: { reference: refs.device } }],
      },
      ...Object.values(examples()),
    ];
    for (const resource of resources) {
      const response = await fhir.post(`/${resource.resourceType}`, resource);
      assert.equal(
        response.status,
        201,
        `${resource.resourceType} ${resource.meta?.profile ?? ''}: ${JSON.stringify(response.body)}`,
      );
    }
  });

  test('each profile refuses what breaks it: 422 naming the element and the profile', async () => {
    const e = examples();
    const cases = [
      [
        { ...e['ai-write-back-audit'], subtype: undefined },
        'AuditEvent.subtype',
        /minimum required = 1, but only found 0 .*ai-write-back-audit\|0\.1\.0/,
      ],
      [{ ...e['ai-write-back-audit'], action: 'R' }, 'AuditEvent.action', /"R" is not the fixed value "C"/],
      [
        { ...e['ai-cds-service-call-audit'], entity: [{ what: { reference: refs.patient } }] },
        'AuditEvent.entity',
        /minimum required = 2, but only found 1/,
      ],
      [
        { ...e['ai-cds-service-call-audit'], type: { system: DCM, code: '110113' } },
        'AuditEvent.type',
        /does not match the pattern/,
      ],
      [
        {
          ...e['ai-service-read-audit'],
          subtype: [
            { system: 'http://hl7.org/fhir/restful-interaction', code: 'search-type' },
            { system: 'urn:x', code: 'y' },
          ],
        },
        'AuditEvent.subtype[1]',
        /pattern/,
      ],
      [
        { ...e['ai-change-control-audit'], subtype: [{ system: DCM, code: '110131' }] },
        'AuditEvent.subtype',
        /minimum required = 2/,
      ],
      [
        { ...e['ai-override-task'], status: 'completed' },
        'Task.status',
        /"completed" is not the fixed value "rejected"/,
      ],
      [
        {
          ...e['ai-override-task'],
          code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' }] },
        },
        'Task.code',
        /ai-override-task/,
      ],
      [{ ...e['ai-override-task'], focus: undefined }, 'Task.focus', /minimum required = 1/],
      [
        { ...e['ai-write-back-audit'], meta: { profile: [`${PROFILE}ai-override-task`] } },
        'AuditEvent',
        /profile type was 'Task'/,
      ],
    ];
    for (const [resource, path, diagnostics] of cases) {
      refused(await fhir.post(`/${resource.resourceType}`, resource), 422, { expression: path, diagnostics });
    }
  });

  test('a versioned canonical is the same profile; an unknown (IG) profile is not refused', async () => {
    const e = examples();
    const versioned = {
      ...e['ai-write-back-audit'],
      meta: { profile: [`${PROFILE}ai-write-back-audit|0.1.0`] },
      action: 'R',
    };
    refused(await fhir.post('/AuditEvent', versioned), 422, { expression: 'AuditEvent.action' });
    const ig = { profile: ['http://hl7.org/fhir/uv/aitransparency/StructureDefinition/AI-Provenance'] };
    assert.equal((await fhir.post('/Provenance', provenance(refs.patient, refs.device, { meta: ig }))).status, 201);
  });

  test('in a transaction the profile is checked before anything is kept', async () => {
    const marker = unique('prof-tx');
    const bundle = transaction([
      {
        fullUrl: 'urn:uuid:aa6d0000-0000-4000-8000-000000000001',
        resource: patient(marker),
        request: { method: 'POST', url: 'Patient' },
      },
      {
        fullUrl: 'urn:uuid:aa6d0000-0000-4000-8000-000000000002',
        resource: { ...examples()['ai-override-task'], intent: 'order' },
        request: { method: 'POST', url: 'Task' },
      },
    ]);
    refused(await fhir.post('', bundle), 422, { expression: 'Task.intent' });
    assert.equal(await countOf(`/Patient?identifier=urn:test|${marker}`), 0);
  });
});
