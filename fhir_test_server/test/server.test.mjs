// Each gap of the bare Medplum library that this server closes, checked over real HTTP.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, test } from 'node:test';

let base;
let child;

async function start(extra = []) {
  const process_ = spawn('node', ['server.mjs', '--port', '0', ...extra], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = await once(process_.stdout, 'data');
  return { process: process_, base: line.toString().trim().replace('FHIR test server listening on ', '') };
}

before(async () => ({ process: child, base } = await start()));
after(() => child.kill());

const json = { 'Content-Type': 'application/fhir+json' };
const post = (path, body, headers = {}) =>
  fetch(`${base}${path}`, { method: 'POST', headers: { ...json, ...headers }, body: JSON.stringify(body) });
const observation = (extra = {}) => ({ resourceType: 'Observation', status: 'final', code: { text: 'eGFR' }, ...extra });

test('invalid resources are refused with 400 and an OperationOutcome', async () => {
  const response = await post('/Observation', { resourceType: 'Observation', status: 'final' });
  assert.equal(response.status, 400);
  const body = await response.json();
  assert.equal(body.resourceType, 'OperationOutcome');
  assert.deepEqual(body.issue[0].expression, ['Observation.code']);
});

test('a failing transaction leaves nothing behind', async () => {
  const marker = `tx-${Date.now()}`;
  const bundle = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { fullUrl: 'urn:uuid:p', resource: { resourceType: 'Patient', identifier: [{ system: 's', value: marker }] }, request: { method: 'POST', url: 'Patient' } },
      { resource: { resourceType: 'Observation', status: 'final' }, request: { method: 'POST', url: 'Observation' } },
    ],
  };
  assert.equal((await post('', bundle)).status, 400);
  const search = await (await fetch(`${base}/Patient?identifier=s|${marker}`)).json();
  assert.equal(search.total, 0);
});

test('a transaction resolves urn:uuid references and answers per entry', async () => {
  const bundle = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { resource: observation({ subject: { reference: 'urn:uuid:p2' } }), request: { method: 'POST', url: 'Observation' } },
      { fullUrl: 'urn:uuid:p2', resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
    ],
  };
  const response = await post('', bundle);
  assert.equal(response.status, 200);
  const result = await response.json();
  assert.equal(result.type, 'transaction-response');
  const [obs, patient] = result.entry;
  assert.equal(obs.response.status, '201 Created');
  assert.equal(obs.resource.subject.reference, `Patient/${patient.resource.id}`);
  assert.match(patient.response.location, /^Patient\/.+\/_history\/.+/);
});

test('conditional create: 201 on no match, 200 on one, 412 on several', async () => {
  const marker = `cc-${Date.now()}`;
  const patient = { resourceType: 'Patient', identifier: [{ system: 'urn:test', value: marker }] };
  const header = { 'If-None-Exist': `identifier=urn:test|${marker}` };
  assert.equal((await post('/Patient', patient, header)).status, 201);
  assert.equal((await post('/Patient', patient, header)).status, 200);
  await post('/Patient', patient);
  assert.equal((await post('/Patient', patient, header)).status, 412);
  assert.equal((await post('/Patient', { resourceType: 'Patient', foo: 1 }, { 'If-None-Exist': 'identifier=x|y' })).status, 400);
});

test('conditional create inside a transaction does not duplicate on retry', async () => {
  const marker = `txc-${Date.now()}`;
  const bundle = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [{ resource: { resourceType: 'Patient', identifier: [{ system: 'urn:test', value: marker }] }, request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=urn:test|${marker}` } }],
  };
  assert.equal((await post('', bundle)).status, 200);
  const retry = await (await post('', bundle)).json();
  assert.equal(retry.entry[0].response.status, '200 OK');
  const search = await (await fetch(`${base}/Patient?identifier=urn:test|${marker}`)).json();
  assert.equal(search.total, 1);
});

test('unknown search parameters are a 400, known ones work', async () => {
  assert.equal((await fetch(`${base}/Observation?no-such-param=1`)).status, 400);
  assert.equal((await fetch(`${base}/Observation?patient=x&code=http://loinc.org|98979-8&_sort=-date`)).status, 200);
});

test('searches are paged with absolute next links', async () => {
  const subject = { reference: `Patient/paging-${Date.now()}` };
  for (let i = 0; i < 5; i += 1) await post('/Observation', observation({ subject }));
  const first = await (await fetch(`${base}/Observation?subject=${subject.reference}&_count=2`)).json();
  assert.equal(first.entry.length, 2);
  assert.equal(first.total, 5);
  const next = first.link.find((link) => link.relation === 'next');
  assert.ok(next.url.startsWith(base));
  const seen = new Set(first.entry.map((e) => e.resource.id));
  let page = first;
  while (page.link.find((link) => link.relation === 'next')) {
    page = await (await fetch(page.link.find((link) => link.relation === 'next').url)).json();
    for (const entry of page.entry ?? []) seen.add(entry.resource.id);
  }
  assert.equal(seen.size, 5);
});

test('malformed JSON and unknown types are refused', async () => {
  const malformed = await fetch(`${base}/Patient`, { method: 'POST', headers: json, body: '{"resourceType":' });
  assert.equal(malformed.status, 400);
  assert.equal((await fetch(`${base}/NotAType/1`)).status, 404);
});

test('--require-bearer refuses requests without the token', async () => {
  const guarded = await start(['--require-bearer', 'sekret']);
  try {
    assert.equal((await fetch(`${guarded.base}/metadata`)).status, 401);
    const ok = await fetch(`${guarded.base}/metadata`, { headers: { Authorization: 'Bearer sekret' } });
    assert.equal(ok.status, 200);
    assert.equal((await ok.json()).fhirVersion, '4.0.1');
  } finally {
    guarded.process.kill();
  }
});
