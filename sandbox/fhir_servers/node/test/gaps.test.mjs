// Each gap of the bare Medplum library that this server closes, checked over real HTTP.
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

const countOf = async (query) => (await fhir.get(query)).body.total;

function assertOutcome(response, status, code) {
  assert.equal(response.status, status, JSON.stringify(response.body));
  assert.equal(response.body.resourceType, 'OperationOutcome');
  const [issue] = response.body.issue;
  assert.equal(issue.severity, 'error');
  if (code) assert.ok([code].flat().includes(issue.code), `issue code ${issue.code}`);
  assert.ok(issue.diagnostics, 'the issue says what is wrong');
  return response.body.issue;
}

describe('validation of every write', () => {
  test('create: a missing required element is a 400 naming it', async () => {
    const issues = assertOutcome(
      await fhir.post('/Observation', { resourceType: 'Observation', status: 'final' }),
      400,
      ['structure', 'invalid'],
    );
    assert.deepEqual(issues[0].expression, ['Observation.code']);
  });

  test('create: an unknown element, a malformed date and a code outside its required value set', async () => {
    assertOutcome(await fhir.post('/Patient', { resourceType: 'Patient', foo: 1 }), 400, 'structure');
    assertOutcome(await fhir.post('/Patient', { resourceType: 'Patient', birthDate: '2020-13-45' }), 400);
    const issues = assertOutcome(await fhir.post('/Patient', { resourceType: 'Patient', gender: 'x' }), 400, 'invalid');
    assert.deepEqual(issues[0].expression, ['Patient.gender']);
    assert.equal((await fhir.post('/Patient', { resourceType: 'Patient', gender: 'female' })).status, 201);
  });

  test('create: the body must be the type of the URL', async () => {
    assertOutcome(await fhir.post('/Observation', { resourceType: 'Patient' }), 400, 'invalid');
  });

  test('update and patch: an invalid result is refused and the stored resource is unchanged', async () => {
    const created = (await fhir.post('/Observation', observation())).body;
    const { id } = created;
    assertOutcome(await fhir.put(`/Observation/${id}`, { resourceType: 'Observation', id, status: 'final' }), 400);
    assertOutcome(await fhir.put(`/Observation/${id}`, { ...created, status: 'not-a-status' }), 400);
    assertOutcome(await fhir.patch(`/Observation/${id}`, [{ op: 'remove', path: '/code' }]), 400);
    const read = await fhir.get(`/Observation/${id}`);
    assert.deepEqual(read.body, created);
    const patched = await fhir.patch(`/Observation/${id}`, [{ op: 'replace', path: '/status', value: 'amended' }]);
    assert.equal(patched.status, 200);
    assert.equal(patched.body.status, 'amended');
  });

  test('conditional create is validated even when it would match', async () => {
    const marker = unique('cc-valid');
    assert.equal((await fhir.post('/Patient', patient(marker))).status, 201);
    const header = { 'If-None-Exist': `identifier=urn:test|${marker}` };
    assertOutcome(await fhir.post('/Patient', patient(marker, { foo: 1 }), header), 400);
  });

  test('conditional update is validated', async () => {
    const marker = unique('cu-valid');
    assertOutcome(await fhir.put(`/Patient?identifier=urn:test|${marker}`, patient(marker, { gender: 'x' })), 400);
    assert.equal(await countOf(`/Patient?identifier=urn:test|${marker}`), 0);
  });
});

const replaceGender = {
  name: 'operation',
  part: [
    { name: 'type', valueCode: 'replace' },
    { name: 'path', valueString: 'Patient.gender' },
    { name: 'value', valueCode: 'female' },
  ],
};

describe('atomic transactions', () => {
  test('a failing entry undoes the deletes, updates and creates before it', async () => {
    const marker = unique('tx');
    const toDelete = (await fhir.post('/Patient', patient(`${marker}-d`))).body;
    const toUpdate = (await fhir.post('/Patient', patient(`${marker}-u`, { gender: 'male' }))).body;
    const toPatch = (await fhir.post('/Patient', patient(`${marker}-p`, { gender: 'male' }))).body;
    const bundle = transaction([
      { request: { method: 'DELETE', url: `Patient?identifier=urn:test|${marker}-d` } },
      {
        resource: { resourceType: 'Parameters', parameter: [replaceGender] },
        request: { method: 'PATCH', url: `Patient/${toPatch.id}` },
      },
      { resource: { ...toUpdate, gender: 'female' }, request: { method: 'PUT', url: `Patient/${toUpdate.id}` } },
      { fullUrl: 'urn:uuid:new', resource: patient(`${marker}-n`), request: { method: 'POST', url: 'Patient' } },
      {
        resource: observation({ subject: { reference: 'urn:uuid:new' } }),
        request: { method: 'POST', url: 'Observation' },
      },
      // Runs last (PUTs after POSTs), when every other write has been made: invalid.
      { resource: { resourceType: 'Patient', id: 'bad', foo: 1 }, request: { method: 'PUT', url: 'Patient/bad' } },
    ]);
    const response = await fhir.post('', bundle);
    const issues = assertOutcome(response, 400);
    assert.match(issues[0].diagnostics, /Bundle\.entry\[5\]/);
    assert.deepEqual((await fhir.get(`/Patient/${toDelete.id}`)).body, toDelete);
    assert.deepEqual((await fhir.get(`/Patient/${toUpdate.id}`)).body, toUpdate);
    assert.deepEqual((await fhir.get(`/Patient/${toPatch.id}`)).body, toPatch);
    assert.equal((await fhir.get(`/Patient/${toUpdate.id}/_history`)).body.entry.length, 1);
    assert.equal(await countOf(`/Patient?identifier=urn:test|${marker}-n`), 0);
  });

  test('a 400, a 404, a 412 (If-Match) and a 412 (If-None-Exist) fail the whole transaction with that status', async () => {
    const marker = unique('tx-status');
    const create = { resource: patient(marker), request: { method: 'POST', url: 'Patient' } };
    const invalid = {
      resource: { resourceType: 'Observation', status: 'final' },
      request: { method: 'POST', url: 'Observation' },
    };
    assertOutcome(await fhir.post('', transaction([create, invalid])), 400);
    const missing = await fhir.post('', transaction([create, { request: { method: 'GET', url: 'Patient/nope' } }]));
    assertOutcome(missing, 404);

    const stored = (await fhir.post('/Patient', patient(`${marker}-v`))).body;
    const stale = { resource: stored, request: { method: 'PUT', url: `Patient/${stored.id}`, ifMatch: 'W/"stale"' } };
    assertOutcome(await fhir.post('', transaction([create, stale])), 412);

    await fhir.post('/Patient', patient(`${marker}-twice`));
    await fhir.post('/Patient', patient(`${marker}-twice`));
    const ambiguous = {
      resource: patient(`${marker}-twice`),
      request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=urn:test|${marker}-twice` },
    };
    assertOutcome(await fhir.post('', transaction([create, ambiguous])), 412);
    assert.equal(await countOf(`/Patient?identifier=urn:test|${marker}`), 0);
  });

  test('urn:uuid references resolve in any order, also between conditional creates', async () => {
    const marker = unique('tx-ref');
    const bundle = transaction([
      {
        resource: observation({ subject: { reference: 'urn:uuid:p' }, focus: [{ reference: 'urn:uuid:d' }] }),
        request: { method: 'POST', url: 'Observation', ifNoneExist: `identifier=urn:test|${marker}-o` },
      },
      {
        fullUrl: 'urn:uuid:p',
        resource: patient(marker),
        request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=urn:test|${marker}` },
      },
      { fullUrl: 'urn:uuid:d', resource: { resourceType: 'Device' }, request: { method: 'POST', url: 'Device' } },
    ]);
    bundle.entry[0].resource.identifier = [{ system: 'urn:test', value: `${marker}-o` }];
    const response = await fhir.post('', bundle);
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(response.body.type, 'transaction-response');
    const [obs, pat, device] = response.body.entry;
    assert.equal(obs.resource.subject.reference, `Patient/${pat.resource.id}`);
    assert.equal(obs.resource.focus[0].reference, `Device/${device.resource.id}`);
    for (const entry of response.body.entry) {
      assert.equal(entry.response.status, '201 Created');
      assert.match(entry.response.location, /^(Observation|Patient|Device)\/[^/]+\/_history\/[^/]+$/);
      assert.match(entry.response.etag, /^W\/".+"$/);
    }
    const again = await fhir.post('', bundle);
    assert.deepEqual(
      again.body.entry.slice(0, 2).map((entry) => [entry.response.status, entry.resource.id]),
      [
        ['200 OK', obs.resource.id],
        ['200 OK', pat.resource.id],
      ],
    );
  });

  test('an unresolvable urn:uuid reference is a 400', async () => {
    const bundle = transaction([
      {
        resource: observation({ subject: { reference: 'urn:uuid:nowhere' } }),
        request: { method: 'POST', url: 'Observation' },
      },
    ]);
    assert.match(assertOutcome(await fhir.post('', bundle), 400)[0].diagnostics, /urn:uuid:nowhere/);
  });

  test('entries run in FHIR order: DELETE, POST, PUT, GET', async () => {
    const marker = unique('tx-order');
    const old = (await fhir.post('/Patient', patient(marker))).body;
    const id = unique('client-id');
    const bundle = transaction([
      { request: { method: 'GET', url: `Patient?identifier=urn:test|${marker}` } },
      { resource: patient(marker, { id, gender: 'other' }), request: { method: 'PUT', url: `Patient/${id}` } },
      {
        resource: patient(marker),
        request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=urn:test|${marker}` },
      },
      { request: { method: 'DELETE', url: `Patient/${old.id}` } },
    ]);
    const response = await fhir.post('', bundle);
    assert.equal(response.status, 200, JSON.stringify(response.body));
    const [search, put, post, del] = response.body.entry;
    assert.equal(del.response.status, '200 OK');
    assert.equal(post.response.status, '201 Created'); // the old one was deleted first
    assert.equal(put.response.status, '201 Created');
    assert.equal(search.resource.total, 2); // the GET saw both writes
  });

  test('two entries with the same If-None-Exist become one resource', async () => {
    const marker = unique('tx-dup');
    const entry = {
      resource: patient(marker),
      request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=urn:test|${marker}` },
    };
    const response = await fhir.post('', transaction([entry, entry]));
    assert.deepEqual(
      response.body.entry.map((e) => e.response.status),
      ['201 Created', '200 OK'],
    );
    assert.equal(await countOf(`/Patient?identifier=urn:test|${marker}`), 1);
  });

  test('a batch answers each entry on its own', async () => {
    const marker = unique('batch');
    const response = await fhir.post(
      '',
      transaction(
        [
          { resource: patient(marker), request: { method: 'POST', url: 'Patient' } },
          {
            resource: { resourceType: 'Observation', status: 'final' },
            request: { method: 'POST', url: 'Observation' },
          },
          { request: { method: 'GET', url: 'Patient/nope' } },
        ],
        'batch',
      ),
    );
    assert.equal(response.status, 200);
    assert.equal(response.body.type, 'batch-response');
    const statuses = response.body.entry.map((e) => e.response.status);
    assert.deepEqual(statuses, ['201 Created', '400 Bad Request', '404 Not Found']);
    assert.equal(response.body.entry[1].response.outcome.resourceType, 'OperationOutcome');
    assert.equal(await countOf(`/Patient?identifier=urn:test|${marker}`), 1);
  });
});

describe('conditional create', () => {
  test('If-None-Exist: 201 on no match, 200 with the match on one, 412 on several', async () => {
    const marker = unique('cc');
    const header = { 'If-None-Exist': `identifier=urn:test|${marker}` };
    const first = await fhir.post('/Patient', patient(marker), header);
    assert.equal(first.status, 201);
    const second = await fhir.post('/Patient', patient(marker), header);
    assert.equal(second.status, 200);
    assert.equal(second.body.id, first.body.id);
    assert.equal(await countOf(`/Patient?identifier=urn:test|${marker}`), 1);
    await fhir.post('/Patient', patient(marker));
    assertOutcome(await fhir.post('/Patient', patient(marker), header), 412);
  });

  test('on _tag, and with an unknown parameter (400)', async () => {
    const code = unique('tag');
    const tagged = { resourceType: 'Device', meta: { tag: [{ system: 'urn:tags', code }] } };
    const header = { 'If-None-Exist': `_tag=urn:tags|${code}` };
    assert.equal((await fhir.post('/Device', tagged, header)).status, 201);
    assert.equal((await fhir.post('/Device', tagged, header)).status, 200);
    assertOutcome(await fhir.post('/Device', tagged, { 'If-None-Exist': 'nonsense=1' }), 400);
  });
});

describe('search', () => {
  test('unknown parameters, modifiers and sort keys are a 400 naming them', async () => {
    const issues = assertOutcome(await fhir.get('/Observation?no-such-param=1'), 400);
    assert.match(issues[0].diagnostics, /no-such-param/);
    assertOutcome(await fhir.get('/Observation?code:bogus=1'), 400);
    assertOutcome(await fhir.get('/Observation?_sort=bogus'), 400);
    assertOutcome(await fhir.get('/Observation?_count=many'), 400);
  });

  test('known parameters, modifiers and result parameters are accepted', async () => {
    const queries = [
      '/Observation?patient=x&code=http://loinc.org|98979-8&_sort=-date',
      '/Observation?subject:Patient=x&status:not=final&_include=Observation:subject&_total=accurate',
      '/Patient?name:contains=a&birthdate=ge2000-01-01&_elements=name&_summary=false&_format=json&_pretty=true',
      '/Patient?_id=1&_lastUpdated=gt2000-01-01&_revinclude=Observation:subject&_maxresults=5&_tag=a|b',
    ];
    for (const query of queries) assert.equal((await fhir.get(query)).status, 200, query);
  });

  test('results are paged, 20 by default, with absolute next links to the end', async () => {
    const patientId = unique('paging');
    assert.equal((await fhir.put(`/Patient/${patientId}`, { resourceType: 'Patient', id: patientId })).status, 201);
    const subject = { reference: `Patient/${patientId}` };
    for (let i = 0; i < 45; i += 1) await fhir.post('/Observation', observation({ subject }));
    const first = (await fhir.get(`/Observation?subject=${subject.reference}`)).body;
    assert.equal(first.total, 45);
    assert.equal(first.entry.length, 20);
    assert.ok(first.link.find((link) => link.relation === 'self'));
    const seen = new Set();
    let page = first;
    let pages = 0;
    for (;;) {
      pages += 1;
      for (const entry of page.entry ?? []) {
        assert.ok(entry.fullUrl.startsWith(server.base));
        seen.add(entry.resource.id);
      }
      const next = page.link.find((link) => link.relation === 'next');
      if (!next) break;
      assert.ok(next.url.startsWith(`${server.base}/Observation?`), next.url);
      page = (await fhir.get(next.url)).body;
    }
    assert.equal(pages, 3);
    assert.equal(seen.size, 45);
    assert.ok(page.link.find((link) => link.relation === 'previous'));

    const counted = (await fhir.get(`/Observation?subject=${subject.reference}&_count=0`)).body;
    assert.equal(counted.total, 45);
    assert.equal(counted.entry, undefined);
    const capped = (await fhir.get(`/Observation?subject=${subject.reference}&_count=5000`)).body;
    assert.equal(capped.entry.length, 45);
    assert.match(capped.link[0].url, /_count=1000/);
  });
});
