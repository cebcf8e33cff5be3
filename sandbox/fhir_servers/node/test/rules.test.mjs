// In-process checks of the rule engines: which R4 constraints are evaluated by whom (all of them
// but ele-1), and the profile checker on synthetic profiles (features our own profiles do not use).
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { describe, test } from 'node:test';
import { core, definitions } from '../lib/medplum.mjs';
import { SKIPPED, checkInvariants, constraintCoverage } from '../lib/invariants.mjs';
import { PROFILE_DIRECTORY, addProfile, loadProfiles, matchesPattern } from '../lib/profiles.mjs';

const r4 = ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json'].flatMap((file) =>
  definitions.readJson(file).entry.map((entry) => entry.resource),
);

describe('every error constraint of R4 is evaluated', () => {
  const rows = constraintCoverage(r4);

  test('all but ele-1, each by Medplum, here (FHIRPath) or here (JavaScript)', () => {
    assert.ok(rows.length > 8000, `${rows.length} constraint uses`);
    const skipped = new Set(rows.filter((row) => row.by === 'skipped').map((row) => row.key));
    assert.deepEqual([...skipped].sort(), ['ele-1']);
    assert.deepEqual([...SKIPPED.keys()].sort(), ['ele-1']);
    assert.deepEqual(
      rows.filter((row) => !['medplum', 'here', 'native', 'skipped'].includes(row.by)),
      [],
      'no constraint is left to nobody',
    );
    const native = new Set(rows.filter((row) => row.by === 'native').map((row) => row.key));
    assert.deepEqual([...native].sort(), ['csd-1', 'dom-3', 'que-2', 'sdf-9', 'txt-1', 'txt-2']);
    for (const key of ['per-1', 'ref-1', 'qty-3', 'rng-2', 'att-1', 'org-1', 'sqty-1']) {
      assert.ok(
        rows.some((row) => row.key === key && row.by === 'here'),
        key,
      );
    }
    assert.ok(rows.some((row) => row.key === 'inv-1' && row.type === 'Task' && row.by === 'medplum'));
  });

  test('every FHIRPath expression evaluated parses with Medplum', () => {
    for (const row of rows.filter((r) => r.by === 'medplum' || r.by === 'here')) {
      assert.doesNotThrow(() => core.parseFhirPath(row.expression), `${row.key} ${row.expression}`);
    }
  });
});

const issuesOf = (resource) => checkInvariants(resource, []);
const keysOf = (issues) =>
  issues.map((issue) => /Constraint failed: (\S+):/.exec(issue.diagnostics)?.[1] ?? issue.code);

describe('invariants Medplum leaves out', () => {
  test('datatype roots, nested resources, org-1 and the JavaScript ones', () => {
    const obs = { resourceType: 'Observation', status: 'final', code: { text: 'x' } };
    assert.deepEqual(keysOf(issuesOf({ ...obs, effectivePeriod: { start: '2024-02-01', end: '2024-01-01' } })), [
      'per-1',
    ]);
    assert.deepEqual(keysOf(issuesOf({ ...obs, effectivePeriod: { start: '2024-01-01', end: '2024-02-01' } })), []);
    assert.deepEqual(keysOf(issuesOf({ ...obs, valueRange: { low: { value: 5 }, high: { value: 1 } } })), ['rng-2']);
    const document = {
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { data: 'aGk=' } }],
    };
    assert.deepEqual(keysOf(issuesOf(document)), ['att-1']);
    const identifierPeriod = { identifier: [{ value: 'a', period: { start: '2024-02-01', end: '2024-01-01' } }] };
    assert.deepEqual(keysOf(issuesOf({ ...obs, ...identifierPeriod })), ['per-1']); // a datatype inside a datatype
    assert.deepEqual(keysOf(issuesOf({ resourceType: 'Organization' })), ['org-1']);
    assert.deepEqual(keysOf(issuesOf({ resourceType: 'Organization', name: 'A' })), []);
    const questionnaire = {
      resourceType: 'Questionnaire',
      status: 'draft',
      item: [{ linkId: 'a', type: 'group', item: [{ linkId: 'a', type: 'string' }] }],
    };
    assert.deepEqual(keysOf(issuesOf(questionnaire)), ['que-2']);
    const codeSystem = {
      resourceType: 'CodeSystem',
      status: 'draft',
      content: 'complete',
      concept: [{ code: 'a', concept: [{ code: 'a' }] }],
    };
    assert.deepEqual(keysOf(issuesOf(codeSystem)), ['csd-1']);
    const contained = { ...obs, contained: [{ resourceType: 'Patient', id: 'p' }] };
    assert.deepEqual(keysOf(issuesOf(contained)), ['dom-3']);
    assert.deepEqual(keysOf(issuesOf({ ...contained, subject: { reference: '#p' } })), []);
    const nestedTask = {
      resourceType: 'Task',
      status: 'draft',
      intent: 'order',
      authoredOn: '2024-02-01',
      lastModified: '2024-01-01',
    };
    assert.deepEqual(
      keysOf(issuesOf({ resourceType: 'Bundle', type: 'collection', entry: [{ resource: nestedTask }] })),
      ['inv-1'],
    );
  });

  test('a logical reference (identifier only) keeps ref-1', () => {
    const obs = { resourceType: 'Observation', status: 'final', code: { text: 'x' } };
    assert.deepEqual(issuesOf({ ...obs, subject: { identifier: { system: 'urn:a', value: 'b' } } }), []);
    assert.deepEqual(keysOf(issuesOf({ ...obs, subject: { reference: '#nowhere' } })), ['ref-1']);
  });

  test('references are collected with their element, not inside a stored Bundle', () => {
    const references = [];
    checkInvariants(
      {
        resourceType: 'Observation',
        status: 'final',
        code: { text: 'x' },
        subject: { reference: 'Patient/1' },
        extension: [{ url: 'http://e', valueReference: { reference: 'Device/2' } }],
      },
      references,
    );
    assert.deepEqual(
      references.map((r) => [r.path, r.reference.reference, r.slot.targets && [...r.slot.targets].sort().join()]),
      [
        ['Observation.extension[0].valueReference', 'Device/2', undefined],
        ['Observation.subject', 'Patient/1', 'Device,Group,Location,Patient'],
      ].sort((a, b) => (a[0] < b[0] ? 1 : -1)),
    );
    const inBundle = [];
    checkInvariants(
      {
        resourceType: 'Bundle',
        type: 'collection',
        entry: [{ resource: { resourceType: 'Basic', code: { text: 'x' }, subject: { reference: 'Patient/1' } } }],
      },
      inBundle,
    );
    assert.deepEqual(inBundle, []);
  });
});

describe('profiles', () => {
  test('every Countersign profile loads, with nothing it uses left unchecked', () => {
    const warnings = [];
    const urls = loadProfiles(undefined, (text) => warnings.push(text));
    assert.deepEqual(warnings, []);
    assert.equal(urls.length, readdirSync(PROFILE_DIRECTORY).filter((file) => file.endsWith('.json')).length);
    assert.ok(urls.length >= 6);
    assert.ok(urls.every((url) => url.startsWith('https://countersign.health/fhir/StructureDefinition/')));
  });

  test('pattern[x] semantics: every pattern property and array item must be found', () => {
    const pattern = { coding: [{ system: 's', code: 'c' }] };
    assert.ok(
      matchesPattern(
        {
          coding: [
            { system: 'x', code: 'y' },
            { system: 's', code: 'c', display: 'd' },
          ],
        },
        pattern,
      ),
    );
    assert.ok(!matchesPattern({ coding: [{ system: 's', code: 'other' }] }, pattern));
    assert.ok(!matchesPattern({ text: 'c' }, pattern));
    assert.ok(matchesPattern('E', 'E') && !matchesPattern('R', 'E'));
  });

  const url = 'https://countersign.health/fhir/StructureDefinition/test-synthetic';
  const base = {
    resourceType: 'StructureDefinition',
    url,
    version: '9',
    type: 'Observation',
    baseDefinition: 'http://hl7.org/fhir/StructureDefinition/Observation',
    derivation: 'constraint',
  };
  const synthetic = {
    ...base,
    differential: {
      element: [
        {
          id: 'Observation',
          path: 'Observation',
          constraint: [{ key: 'syn-1', severity: 'error', human: 'needs a note', expression: 'note.exists()' }],
        },
        { id: 'Observation.identifier', path: 'Observation.identifier', max: '1' },
        { id: 'Observation.identifier.value', path: 'Observation.identifier.value', min: 1, maxLength: 5 },
        { id: 'Observation.value[x]', path: 'Observation.value[x]', type: [{ code: 'Quantity' }] },
        {
          id: 'Observation.subject',
          path: 'Observation.subject',
          type: [{ code: 'Reference', targetProfile: ['http://hl7.org/fhir/StructureDefinition/Patient'] }],
        },
        {
          id: 'Observation.category',
          path: 'Observation.category',
          slicing: { discriminator: [{ type: 'pattern', path: '$this' }], rules: 'closed' },
        },
        {
          id: 'Observation.category:lab',
          path: 'Observation.category',
          sliceName: 'lab',
          min: 1,
          max: '1',
          patternCodeableConcept: {
            coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }],
          },
        },
        {
          id: 'Observation.category:ai',
          path: 'Observation.category',
          sliceName: 'ai',
          max: '1',
          patternCodeableConcept: { coding: [{ system: 'urn:ai', code: 'ai' }] },
        },
      ],
    },
  };
  const lab = {
    coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }],
  };
  const good = {
    resourceType: 'Observation',
    meta: { profile: [`${url}|9`] },
    status: 'final',
    code: { text: 'x' },
    note: [{ text: 'n' }],
    identifier: [{ value: 'abc' }],
    valueQuantity: { value: 1 },
    subject: { reference: 'Patient/1' },
    category: [lab, { coding: [{ system: 'urn:ai', code: 'ai' }] }],
  };
  const problems = (resource) => issuesOf(resource).map((issue) => `${issue.code} ${issue.expression[0]}`);

  test('min/max, maxLength, constraint, choice types, reference targets, slicing (closed, slice cardinality)', () => {
    const warnings = [];
    addProfile(synthetic, (text) => warnings.push(text));
    assert.deepEqual(warnings, []);
    assert.deepEqual(problems(good), []);
    assert.deepEqual(problems({ ...good, note: undefined }), ['invariant Observation']);
    assert.deepEqual(problems({ ...good, identifier: [{ value: 'a' }, { value: 'b' }] }), [
      'structure Observation.identifier',
    ]);
    assert.deepEqual(problems({ ...good, identifier: [{ system: 'urn:x' }] }), [
      'structure Observation.identifier[0].value',
    ]);
    assert.deepEqual(problems({ ...good, identifier: [{ value: 'toolong' }] }), [
      'value Observation.identifier[0].value',
    ]);
    assert.deepEqual(problems({ ...good, valueQuantity: undefined, valueString: 's' }), [
      'structure Observation.valueString',
    ]);
    assert.deepEqual(problems({ ...good, subject: { reference: 'Group/1' } }), ['structure Observation.subject']);
    assert.deepEqual(problems({ ...good, category: [{ coding: [{ system: 'urn:ai', code: 'ai' }] }] }), [
      'structure Observation.category:lab',
    ]);
    assert.deepEqual(problems({ ...good, category: [lab, lab] }), ['structure Observation.category:lab']);
    assert.deepEqual(problems({ ...good, category: [lab, { text: 'other' }] }), ['structure Observation.category[1]']);
    // Without meta.profile, or with an unknown profile, none of this applies.
    assert.deepEqual(problems({ ...good, meta: undefined, note: undefined, category: undefined }), []);
    const unknown = { profile: ['http://hl7.org/fhir/uv/aitransparency/StructureDefinition/AI-Provenance'] };
    assert.deepEqual(problems({ ...good, meta: unknown, note: undefined }), []);
  });

  test('nested elements count per parent; a profile on one of ours applies both', () => {
    const parentUrl = `${url}-audit`;
    addProfile({
      ...base,
      url: parentUrl,
      type: 'AuditEvent',
      differential: { element: [{ id: 'AuditEvent.agent.who', path: 'AuditEvent.agent.who', min: 1 }] },
    });
    addProfile({
      ...base,
      url: `${url}-audit-child`,
      type: 'AuditEvent',
      baseDefinition: parentUrl,
      differential: { element: [{ id: 'AuditEvent.action', path: 'AuditEvent.action', min: 1, fixedCode: 'E' }] },
    });
    const audit = {
      resourceType: 'AuditEvent',
      meta: { profile: [`${url}-audit-child`] },
      type: { code: 'rest' },
      recorded: '2024-01-01T00:00:00Z',
      action: 'E',
      agent: [{ requestor: true, who: { display: 'a' } }, { requestor: false }],
      source: { observer: { display: 'o' } },
    };
    assert.deepEqual(problems(audit), ['structure AuditEvent.agent[1].who']);
    assert.deepEqual(problems({ ...audit, action: 'R', agent: [{ requestor: true, who: { display: 'a' } }] }), [
      'value AuditEvent.action',
    ]);
    assert.deepEqual(problems({ ...audit, resourceType: 'AuditEvent', meta: { profile: [url] } }).length, 1);
  });

  test('a profile that uses what this server cannot check says so when loaded', () => {
    const warnings = [];
    addProfile(
      {
        ...base,
        url: `${url}-unsupported`,
        differential: {
          element: [
            { id: 'Observation.code', path: 'Observation.code', binding: { strength: 'required', valueSet: 'urn:vs' } },
            { id: 'Observation.nonsense', path: 'Observation.nonsense', min: 1 },
          ],
        },
      },
      (text) => warnings.push(text),
    );
    assert.equal(warnings.length, 2, warnings.join('\n'));
    assert.match(warnings[0], /binding is not checked/);
    assert.match(warnings[1], /Observation\.nonsense is not an element/);
  });
});

describe('narratives (txt-1, txt-2), as HAPI checks them', () => {
  const div = (xhtml) => ({ resourceType: 'Patient', text: { status: 'generated', div: xhtml } });
  const notes = (xhtml) => issuesOf(div(xhtml)).map((issue) => `${keysOf([issue])[0]} ${issue.diagnostics}`);
  const ns = 'xmlns="http://www.w3.org/1999/xhtml"';

  test('basic formatting, tables, links and styles are fine', () => {
    assert.deepEqual(notes(`<div ${ns}><p>Hello <b>x</b><br/></p><!-- c --></div>`), []);
    const table = `<div ${ns}><table><tr><td>t</td></tr></table><a href="http://x">l</a><span style="color:red">s</span></div>`;
    assert.deepEqual(notes(table), []);
    assert.deepEqual(notes(`<div ${ns}>&#160;<img src="data:image/png;base64,AA=="/></div>`), []);
  });

  test('script, forms, event attributes, javascript: links, other roots and malformed XHTML break txt-1', () => {
    const bad = [
      [`<div ${ns}><script>x</script>t</div>`, /Invalid element name in the XHTML \('script'\)/],
      [`<div ${ns}><input/>t</div>`, /'input'/],
      [`<div ${ns}><u>t</u></div>`, /'u'/],
      [`<div ${ns}><p onclick="x()">t</p></div>`, /Invalid attribute name in the XHTML \('onclick' on 'p'\)/],
      [`<div ${ns}><a href="javascript:alert(1)">l</a></div>`, /active content/],
      [`<span ${ns}>t</span>`, /must start with div/],
      ['<div><p>t</p></div>', /Wrong namespace on the XHTML \('null'/],
      [`<div ${ns}><p>t</div>`, /Malformed XHTML/],
    ];
    for (const [xhtml, expected] of bad) {
      const [first, ...rest] = notes(xhtml);
      assert.match(first ?? '', /^txt-1 /, xhtml);
      assert.match(first, expected, xhtml);
      assert.ok(
        rest.every((note) => /^txt-/.test(note)),
        xhtml,
      );
    }
  });

  test('no text and no image breaks txt-2', () => {
    assert.deepEqual(
      notes(`<div ${ns}> <p> </p></div>`).map((note) => note.slice(0, 5)),
      ['txt-2'],
    );
  });
});

test('profiles: the type-specific form of a choice element (value[x]:valueQuantity, Observation.valueQuantity)', () => {
  const url = 'https://countersign.health/fhir/StructureDefinition/test-choice';
  const warnings = [];
  addProfile(
    {
      resourceType: 'StructureDefinition',
      url,
      type: 'Observation',
      derivation: 'constraint',
      differential: {
        element: [
          {
            id: 'Observation.value[x]:valueQuantity',
            path: 'Observation.value[x]',
            sliceName: 'valueQuantity',
            min: 1,
          },
          { id: 'Observation.valueQuantity.unit', path: 'Observation.valueQuantity.unit', min: 1 },
        ],
      },
    },
    (text) => warnings.push(text),
  );
  assert.deepEqual(warnings, []);
  const obs = { resourceType: 'Observation', meta: { profile: [url] }, status: 'final', code: { text: 'x' } };
  const problems = (resource) => checkInvariants(resource, []).map((issue) => issue.expression[0]);
  assert.deepEqual(problems({ ...obs, valueQuantity: { value: 1, unit: 'g' } }), []);
  assert.deepEqual(problems({ ...obs, valueString: 'x' }), ['Observation.value[x]:valueQuantity']);
  assert.deepEqual(problems({ ...obs, valueQuantity: { value: 1 } }), ['Observation.valueQuantity.unit']);
});
