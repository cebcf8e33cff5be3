// The plain REST interactions, HTTP details, and the command-line flags.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { client, patient, startServer, unique } from './helpers.mjs';

const log = join(mkdtempSync(join(tmpdir(), 'fhir-log-')), 'requests.jsonl');
let server;
let fhir;
let guarded;
let other;
before(async () => {
  // Started together: loading the R4 definitions is most of a start.
  [server, guarded, other] = await Promise.all([
    startServer(),
    startServer(['--require-bearer', 'sekret', '--log-requests', log]),
    startServer(['--base-path', '/r4/']),
  ]);
  fhir = client(server.base);
});
after(() => Promise.all([server, guarded, other].map((s) => s?.stop())));

test('metadata is an R4 CapabilityStatement in application/fhir+json', async () => {
  const response = await fhir.get('/metadata');
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type'), /^application\/fhir\+json/);
  assert.equal(response.body.resourceType, 'CapabilityStatement');
  assert.equal(response.body.fhirVersion, '4.0.1');
  const patientType = response.body.rest[0].resource.find((r) => r.type === 'Patient');
  assert.ok(patientType.searchParam.some((p) => p.name === 'identifier'));
});

test('create, read, update, vread, history, delete', async () => {
  const created = await fhir.post('/Patient', patient(unique('crud'), { id: 'ignored' }));
  assert.equal(created.status, 201);
  const { id, meta } = created.body;
  assert.notEqual(id, 'ignored');
  assert.equal(created.headers.get('etag'), `W/"${meta.versionId}"`);
  assert.equal(created.headers.get('location'), `${server.base}/Patient/${id}/_history/${meta.versionId}`);
  assert.deepEqual((await fhir.get(`/Patient/${id}`)).body, created.body);

  const updated = await fhir.put(`/Patient/${id}`, { ...created.body, gender: 'female' });
  assert.equal(updated.status, 200);
  assert.notEqual(updated.body.meta.versionId, meta.versionId);
  assert.equal(updated.headers.get('etag'), `W/"${updated.body.meta.versionId}"`);
  assert.equal((await fhir.get(`/Patient/${id}/_history/${meta.versionId}`)).body.gender, undefined);
  for (let i = 0; i < 2; i += 1) {
    const history = (await fhir.get(`/Patient/${id}/_history`)).body;
    assert.deepEqual(
      history.entry.map((e) => e.resource.meta.versionId),
      [updated.body.meta.versionId, meta.versionId],
    );
  }

  assert.equal((await fhir.put(`/Patient/${id}`, { ...created.body, id: 'other' })).status, 400);
  assert.equal((await fhir.put(`/Patient/${id}`, created.body, { 'If-Match': `W/"${meta.versionId}"` })).status, 412);

  assert.equal((await fhir.delete(`/Patient/${id}`)).status, 200);
  assert.equal((await fhir.get(`/Patient/${id}`)).status, 410);
  assert.equal((await fhir.get('/Patient/never-existed')).status, 404);
});

test('update of an unknown id creates it (201)', async () => {
  const id = unique('put');
  const response = await fhir.put(`/Patient/${id}`, { resourceType: 'Patient', id });
  assert.equal(response.status, 201);
  assert.ok(response.headers.get('location').includes(`/Patient/${id}/_history/`));
});

test('conditional update and delete', async () => {
  const marker = unique('cond');
  const url = `/Patient?identifier=urn:test|${marker}`;
  const created = await fhir.put(url, patient(marker));
  assert.equal(created.status, 201);
  const updated = await fhir.put(url, patient(marker, { gender: 'male' }));
  assert.equal(updated.status, 200);
  assert.equal(updated.body.id, created.body.id);
  assert.equal((await fhir.delete(url)).status, 200);
  assert.equal((await fhir.get(`/Patient/${created.body.id}`)).status, 410);
  assert.equal((await fhir.delete('/Patient')).status, 400);
});

test('POST _search with a form body', async () => {
  const marker = unique('form');
  await fhir.post('/Patient', patient(marker));
  const response = await fetch(`${server.base}/Patient/_search`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ identifier: `urn:test|${marker}` }),
  });
  assert.equal(response.status, 200);
  assert.equal((await response.json()).total, 1);
});

test('bodies: application/json is accepted; other types, broken JSON and unknown types are refused', async () => {
  const json = await fhir.post('/Patient', { resourceType: 'Patient' }, { 'Content-Type': 'application/json' });
  assert.equal(json.status, 201);
  assert.equal((await fhir.post('/Patient', '{}', { 'Content-Type': 'text/plain' })).status, 415);
  const broken = await fhir.post('/Patient', '{"resourceType":');
  assert.equal(broken.status, 400);
  assert.equal(broken.body.resourceType, 'OperationOutcome');
  const unknown = await fhir.get('/NotAType/1');
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.resourceType, 'OperationOutcome');
  assert.equal((await fhir.get('/../elsewhere')).status, 404);
});

test('Prefer: return=minimal answers without a body; an Authorization header is ignored', async () => {
  const headers = { Prefer: 'return=minimal', Authorization: 'Bearer anything' };
  const response = await fhir.post('/Patient', { resourceType: 'Patient' }, headers);
  assert.equal(response.status, 201);
  assert.equal(response.body, undefined);
  assert.ok(response.headers.get('location'));
});

test('--require-bearer refuses requests without the token; --log-requests logs each without it', async () => {
  try {
    const guardedFhir = client(guarded.base);
    assert.equal((await guardedFhir.get('/metadata')).status, 401);
    assert.equal((await guardedFhir.get('/metadata', { Authorization: 'Bearer wrong' })).status, 401);
    assert.equal((await guardedFhir.get('/Patient?_count=1', { Authorization: 'Bearer sekret' })).status, 200);
  } finally {
    assert.equal(await guarded.stop(), 0, 'SIGTERM ends the server cleanly');
  }
  const text = readFileSync(log, 'utf8');
  assert.ok(!text.includes('sekret'));
  const lines = text
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));
  assert.deepEqual(lines, [
    { method: 'GET', path: '/fhir/metadata', query: '', authorization_present: false },
    { method: 'GET', path: '/fhir/metadata', query: '', authorization_present: true },
    { method: 'GET', path: '/fhir/Patient', query: '?_count=1', authorization_present: true },
  ]);
});

test('--base-path, and POST _admin/reset removes all data', async () => {
  assert.match(other.base, /^http:\/\/127\.0\.0\.1:\d+\/r4$/);
  const otherFhir = client(other.base);
  await otherFhir.post('/Patient', { resourceType: 'Patient' });
  assert.equal((await otherFhir.get('/Patient')).body.total, 1);
  assert.equal((await otherFhir.post('/_admin/reset')).status, 200);
  assert.equal((await otherFhir.get('/Patient')).body.total, 0);
});
