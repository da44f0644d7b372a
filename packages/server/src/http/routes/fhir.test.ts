import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'

import { AccessFixture, type Answer } from '../../../test/access-fixture.js'
import { dialects } from '../../../test/support.js'
import { systemContext } from '../../context.js'
import { destroyDataKey } from '../../keys/index.js'
import type { Patient } from '../../records/index.js'

const base = '/v1/organizations/alpha/fhir'

// What the fixture's patients are called and born on: none of it may leave in a URL or a log.
const phi = ['Testpatient', 'Fixture', '1970-01-01', 'Zebediah', 'Quackenbush', '1931-05-17']

interface Outcome {
  resourceType: string
  issue: { severity: string; code: string; diagnostics: string; expression?: string[] }[]
}

interface Bundle {
  resourceType: string
  link: { relation: string; url: string }[]
  entry: { fullUrl: string; resource: Record<string, unknown> }[]
}

for (const { dialect, skip } of dialects) {
  describe(`FHIR API over HTTPS on ${dialect}`, { skip }, () => {
    const fixture = new AccessFixture()
    const links: string[] = []
    let origin: string
    let shredded: Patient
    let named: Patient

    /** GET as `who`, keeping every Bundle link for the PHI scan. */
    const get = async (path: string, who: string | undefined, headers = {}) => {
      const answer = await fixture.call('GET', path, who, undefined, headers)
      const body = answer.json as Partial<Bundle> | undefined
      for (const link of body?.link ?? []) links.push(link.url)
      for (const entry of body?.entry ?? []) links.push(entry.fullUrl)
      return answer
    }

    const outcome = (answer: Answer, status: number, code: string): Outcome => {
      assert.equal(answer.status, status, answer.text)
      assert.match(String(answer.headers['content-type']), /^application\/fhir\+json/)
      const body = answer.json as Outcome
      assert.equal(body.resourceType, 'OperationOutcome')
      assert.equal(body.issue[0]?.code, code, answer.text)
      return body
    }

    before(async () => {
      await fixture.start(dialect)
      origin = fixture.running.ward.config.auth.origin
      const ward = fixture.running.ward
      const system = systemContext('test')
      // A patient of the clinician's care team with a name of their own, to scan for.
      named = await ward.fleet.createPatient(system, 'alpha', {
        name: { family: 'Quackenbush', given: ['Zebediah'] },
        birthDate: '1931-05-17',
      })
      await fixture.access.addPatient(system, fixture.alpha, fixture.team, named)
      await fixture.addReadings(named)
      shredded = await fixture.createPatient('alpha')
      await fixture.access.addPatient(system, fixture.alpha, fixture.team, shredded)
      await fixture.addReadings(shredded)
      await ward.store.transaction((tx) =>
        destroyDataKey(tx, ward.keyring, {
          organizationId: fixture.alpha.id,
          dataKeyId: shredded.dataKeyId,
          reason: 'patient-request',
        }),
      )
    })
    after(async () => {
      await fixture.stop()
    })

    const observationIdOf = async (patient: Patient) =>
      (
        await fixture.running.ward.store.db
          .selectFrom('observations')
          .select('id')
          .where('patient_id', '=', patient.id)
          .executeTakeFirstOrThrow()
      ).id

    test('answers application/fhir+json, with name and birth date for a carer only', async () => {
      const read = await get(`${base}/Patient/${named.pseudonym}`, 'clinician')
      assert.equal(read.status, 200, read.text)
      assert.match(String(read.headers['content-type']), /^application\/fhir\+json/)
      const patient = read.json as Record<string, unknown>
      assert.equal(patient['resourceType'], 'Patient')
      assert.deepEqual(patient['name'], [{ family: 'Quackenbush', given: ['Zebediah'] }])
      assert.equal(patient['birthDate'], '1931-05-17')

      // Support reads the Patient by pseudonym only, and never an Observation.
      const support = await get(`${base}/Patient/${named.pseudonym}`, 'support')
      assert.equal(support.status, 200, support.text)
      assert.equal((support.json as Record<string, unknown>)['name'], undefined)
      assert.doesNotMatch(support.text, /Quackenbush|1931/)
      const observation = await get(`${base}/Observation?patient=${named.pseudonym}`, 'support')
      outcome(observation, 403, 'forbidden')

      // The patient reads themself, identity included.
      const own = await get(`${base}/Patient?_id=${fixture.own.pseudonym}`, 'patient')
      assert.equal(own.status, 200, own.text)
      const entry = (own.json as Bundle).entry[0]
      assert.equal(entry?.resource['birthDate'], '1970-01-01')
    })

    test('serves a CapabilityStatement listing exactly what is supported, to anyone', async () => {
      const answer = await get(`${base}/metadata`, undefined)
      assert.equal(answer.status, 200, answer.text)
      assert.match(String(answer.headers['content-type']), /^application\/fhir\+json/)
      const statement = answer.json as {
        resourceType: string
        fhirVersion: string
        implementation: { url: string }
        rest: { resource: { type: string; interaction: { code: string }[] }[] }[]
      }
      assert.equal(statement.resourceType, 'CapabilityStatement')
      assert.equal(statement.fhirVersion, '4.0.1')
      assert.equal(statement.implementation.url, `${origin}${base}/`)
      const served = statement.rest[0]?.resource.map(
        (resource) => `${resource.type}:${resource.interaction.map((i) => i.code).join(',')}`,
      )
      assert.deepEqual(served, [
        'Patient:read,search-type',
        'Observation:read,search-type',
        'Device:read,search-type',
        'AuditEvent:search-type',
      ])
      // The same for an organization that does not exist: it tells nothing about which do.
      const other = await get('/v1/organizations/no-such-org/fhir/metadata', undefined)
      assert.equal(other.status, 200)
      // What is not listed is not served.
      outcome(await get(`${base}/Encounter/1`, 'clinician'), 404, 'not-found')
    })

    test('answers 401 as an OperationOutcome with a Bearer challenge', async () => {
      const answer = await get(`${base}/Patient/${fixture.own.pseudonym}`, undefined)
      outcome(answer, 401, 'login')
      assert.match(String(answer.headers['www-authenticate']), /^Bearer/)
    })

    test('refuses bad search parameters with 400 naming the parameter, never its value', async () => {
      const patient = fixture.own.pseudonym
      const cases: [string, string][] = [
        [`Observation?patient=${patient}&_count=0`, '_count'],
        [`Observation?patient=${patient}&_count=5000`, '_count'],
        [`Observation?patient=${patient}&date=yesterday`, 'date'],
        [`Observation?patient=${patient}&date=ap2026-01-01`, 'date'],
        [`Observation?patient=${patient}&date=ge2026-01-01&date=le2026-02-01&date=2026`, 'date'],
        [`Observation?patient=${patient}&date=ge2026-02-01&date=lt2026-01-01`, 'date'],
        [`Observation?patient=${patient}&code=8867-4`, 'code'],
        [`Observation?patient=${patient}&_sort=value`, '_sort'],
        [`Observation?patient=${patient}&_cursor=not-a-cursor`, '_cursor'],
        [`Observation?patient=${patient}&name=Quackenbush`, 'name'],
        [`Observation?patient=${patient}&patient=${patient}`, 'patient'],
        ['Observation?patient=Quackenbush', 'patient'],
        // No cross-patient search: without a patient, nothing is searched.
        ['Observation?code=http://loinc.org|8867-4', 'patient'],
        ['Device?_count=5', 'patient'],
        ['Patient?_count=5', '_id'],
        ['Patient?identifier=urn:other|Quackenbush', 'identifier'],
      ]
      for (const [query, parameter] of cases) {
        const answer = await get(`${base}/${query}`, 'clinician')
        const body = outcome(answer, 400, 'invalid')
        assert.deepEqual(body.issue[0]?.expression, [parameter], query)
        assert.doesNotMatch(answer.text, /Quackenbush|yesterday|not-a-cursor|ap2026/, query)
      }
    })

    test('answers 404 alike for absent ids and for another organization’s', async () => {
      const beta = fixture.betaPatient
      const betaObservation = await observationIdOf(beta)
      const betaDevice = (await fixture.running.ward.fleet.listDevices('beta'))[0]?.id ?? ''
      const pairs: [string, string][] = [
        [`Patient/${beta.pseudonym}`, 'Patient/pt-aaaaaaaaaaaaaaaaaaaa'],
        [`Observation/${betaObservation}`, `Observation/${randomUUID()}`],
        [`Device/${betaDevice}`, `Device/${randomUUID()}`],
        [`Observation?patient=${beta.pseudonym}`, 'Observation?patient=pt-aaaaaaaaaaaaaaaaaaaa'],
        [`Device?patient=${beta.pseudonym}`, 'Device?patient=pt-aaaaaaaaaaaaaaaaaaaa'],
        [`Patient?_id=${beta.pseudonym}`, 'Patient?_id=pt-aaaaaaaaaaaaaaaaaaaa'],
      ]
      for (const [theirs, absent] of pairs) {
        const one = outcome(await get(`${base}/${theirs}`, 'clinician'), 404, 'not-found')
        const two = outcome(await get(`${base}/${absent}`, 'clinician'), 404, 'not-found')
        assert.deepEqual(one, two, theirs)
        assert.equal(one.issue[0]?.diagnostics, 'ERR_NOT_FOUND: no such resource')
      }
      // A device's serial is not its FHIR id.
      const serial = (await fixture.running.ward.fleet.listDevices('alpha'))[0]?.serial ?? ''
      outcome(await get(`${base}/Device/${serial}`, 'support'), 404, 'not-found')
    })

    test('answers 410 for a crypto-shredded patient, to those who may read them', async () => {
      outcome(await get(`${base}/Patient/${shredded.pseudonym}`, 'clinician'), 410, 'deleted')
      outcome(
        await get(`${base}/Observation?patient=${shredded.pseudonym}`, 'clinician'),
        410,
        'deleted',
      )
      outcome(
        await get(`${base}/Observation/${await observationIdOf(shredded)}`, 'clinician'),
        410,
        'deleted',
      )
      // Others learn nothing of it.
      outcome(
        await get(`${base}/Patient/${shredded.pseudonym}`, 'device-engineer'),
        403,
        'forbidden',
      )
    })

    test('pages Observations by absolute next links that follow to the end', async () => {
      const seen: string[] = []
      let path: string | undefined =
        `${base}/Observation?patient=Patient/${named.pseudonym}&_count=1&_sort=-date`
      let pages = 0
      while (path !== undefined) {
        const answer = await get(path, 'clinician')
        assert.equal(answer.status, 200, answer.text)
        const bundle = answer.json as Bundle
        const self = bundle.link.find((link) => link.relation === 'self')
        assert.ok(self?.url.startsWith(`${origin}${base}/Observation?`), self?.url)
        for (const entry of bundle.entry) {
          assert.equal(
            entry.fullUrl,
            `${origin}${base}/Observation/${String(entry.resource['id'])}`,
          )
          seen.push(String(entry.resource['effectiveDateTime'] ?? entry.resource['id']))
        }
        const next = bundle.link.find((link) => link.relation === 'next')?.url
        if (next !== undefined) {
          assert.ok(next.startsWith(`${origin}${base}/Observation?`), next)
          const url = new URL(next)
          assert.equal(url.searchParams.get('patient'), `Patient/${named.pseudonym}`)
          assert.equal(url.searchParams.get('_count'), '1')
          path = `${url.pathname}${url.search}`
        } else {
          path = undefined
        }
        pages += 1
        assert.ok(pages <= 4, 'paging ends')
      }
      assert.equal(pages, 3)
      assert.equal(new Set(seen).size, 3)
    })

    test('records the policy rule and purpose of use of every read, break-glass included', async () => {
      const before = (await fixture.auditEvents('alpha')).length
      assert.equal(
        (await get(`${base}/Device?patient=${named.pseudonym}`, 'clinician')).status,
        200,
      )
      const denied = await get(
        `${base}/Observation?patient=${fixture.other.pseudonym}`,
        'clinician',
      )
      outcome(denied, 403, 'forbidden')

      const opened = await fixture.call(
        'POST',
        `/v1/organizations/alpha/patients/${fixture.other.pseudonym}/break-glass`,
        'clinician',
        { reasonCode: 'patient-unresponsive', reason: 'unresponsive in the emergency room' },
      )
      assert.equal(opened.status, 201, opened.text)
      // Under the grant the clinician names ETREAT; without it, the default TREAT is refused.
      outcome(
        await get(`${base}/Patient/${fixture.other.pseudonym}`, 'clinician'),
        403,
        'forbidden',
      )
      const emergency = await get(`${base}/Patient/${fixture.other.pseudonym}`, 'clinician', {
        'x-purpose-of-use': 'ETREAT',
      })
      assert.equal(emergency.status, 200, emergency.text)
      assert.equal((emergency.json as Record<string, unknown>)['birthDate'], '1970-01-01')

      const events = (await fixture.auditEvents('alpha')).slice(before)
      const reads = events.filter((event) => event.subtype.code.startsWith('fhir.'))
      assert.deepEqual(
        reads.map((event) => [
          event.subtype.code,
          event.policy.rule,
          event.purposeOfUse.join(),
          event.entity[0]?.patient,
        ]),
        [
          ['fhir.device.search', 'clinician.care-team', 'TREAT', named.pseudonym],
          ['fhir.patient.read', 'clinician.emergency-access', 'ETREAT', fixture.other.pseudonym],
        ],
      )
    })

    test('limits API tokens to their scopes', async () => {
      const token = (scopes: string[]) =>
        fixture.principal('clinician', {
          method: 'api-token',
          mfaVerified: false,
          scopes,
          credentialId: `token-${scopes.join('-')}`,
        })
      fixture.principals.set('ehr-feed', token(['fhir:read']))
      fixture.principals.set('readings-only', token(['observation:read']))
      const path = `${base}/Observation?patient=${named.pseudonym}`
      assert.equal((await get(path, 'ehr-feed')).status, 200)
      const refused = outcome(await get(path, 'readings-only'), 403, 'forbidden')
      assert.match(refused.issue[0]?.diagnostics ?? '', /deny\.token-scope/)
      // An auditor's AuditEvent search needs a second factor, which no token has.
      fixture.principals.set(
        'audit-token',
        fixture.principal('auditor', {
          method: 'api-token',
          mfaVerified: false,
          scopes: ['fhir:audit'],
        }),
      )
      outcome(await get(`${base}/AuditEvent`, 'audit-token'), 403, 'forbidden')
    })

    test('lets auditors and privacy officers search AuditEvent, and no one else', async () => {
      for (const role of ['auditor', 'privacy-officer']) {
        const answer = await get(
          `${base}/AuditEvent?patient=${named.pseudonym}&date=ge2026-01-01&_count=2`,
          role,
        )
        assert.equal(answer.status, 200, answer.text)
        const bundle = answer.json as Bundle
        assert.ok(bundle.entry.length > 0)
        for (const entry of bundle.entry) {
          assert.equal(entry.resource['resourceType'], 'AuditEvent')
          assert.ok(entry.fullUrl.startsWith(`${origin}${base}/AuditEvent/`))
        }
        const next = bundle.link.find((link) => link.relation === 'next')
        if (next !== undefined) {
          const url = new URL(next.url)
          const page = await get(`${url.pathname}${url.search}`, role)
          assert.equal(page.status, 200, page.text)
        }
      }
      for (const role of ['clinician', 'support', 'security-officer', 'patient']) {
        outcome(await get(`${base}/AuditEvent`, role), 403, 'forbidden')
      }
    })

    test('no link URL, log line or audit event carries a name or birth date', async () => {
      assert.ok(links.length > 10, 'the other tests collected links')
      for (const url of links) {
        for (const value of phi) assert.ok(!url.includes(value), `${value} in ${url}`)
        assert.ok(url.startsWith(`${origin}${base}/`), url)
      }
      const log = fixture.logLines.join('\n')
      assert.ok(log.includes('fhir'), 'the FHIR routes logged')
      for (const value of phi) assert.ok(!log.includes(value), `${value} in the service log`)
      const audit = await fixture.allAuditText()
      for (const value of phi) assert.ok(!audit.includes(value), `${value} in an audit event`)
    })

    test('describes the FHIR routes in OpenAPI', async () => {
      const answer = await fixture.call('GET', '/openapi.json', undefined)
      const paths = Object.keys((answer.json as { paths: Record<string, unknown> }).paths)
      for (const path of [
        'Patient/{id}',
        'Patient',
        'Observation/{id}',
        'Observation',
        'Device/{id}',
        'Device',
        'AuditEvent',
        'metadata',
      ]) {
        assert.ok(paths.includes(`/v1/organizations/{organization}/fhir/${path}`), path)
      }
    })
  })
}

for (const { dialect, skip } of dialects) {
  describe(`FHIR API with real sign-in and API tokens on ${dialect}`, { skip }, () => {
    const fixture = new AccessFixture()
    const password = 'copper meadow whistles slowly'

    before(async () => {
      // No test principals: Ward's own sessions and API tokens authenticate every request.
      await fixture.start(dialect, { authenticate: null })
    })
    after(async () => {
      await fixture.stop()
    })

    const post = async (path: string, body: unknown, token?: string) =>
      fixture.call(
        'POST',
        path,
        undefined,
        body,
        token === undefined ? {} : { authorization: `Bearer ${token}` },
      )

    test('an EHR integration reads FHIR with a token scoped fhir:read, and only with it', async () => {
      const ward = fixture.running.ward
      const created = await ward.people.createUser(systemContext('test'), {
        organizationId: fixture.alpha.id,
        loginName: 'ehr.clinician',
        roles: ['clinician'],
      })
      assert.equal(
        (await post('/auth/setup', { setupToken: created.setupToken, password })).status,
        204,
      )
      await fixture.access.addMember(
        systemContext('test'),
        fixture.alpha,
        fixture.team,
        created.user.id,
      )
      const signIn = await post('/auth/sign-in', {
        login: 'ehr.clinician',
        password,
        mode: 'bearer',
      })
      assert.equal(signIn.status, 200, signIn.text)
      const session = (signIn.json as { token: string }).token
      const issue = async (scopes: string[]) => {
        const answer = await post('/auth/tokens', { label: 'EHR feed', scopes, days: 1 }, session)
        assert.equal(answer.status, 201, answer.text)
        return (answer.json as { token: string }).token
      }
      const fhirToken = await issue(['fhir:read'])
      const otherToken = await issue(['observation:read'])

      const path = `${base}/Observation?patient=${fixture.own.pseudonym}`
      const read = (token: string) =>
        fixture.call('GET', path, undefined, undefined, { authorization: `Bearer ${token}` })
      const allowed = await read(fhirToken)
      assert.equal(allowed.status, 200, allowed.text)
      assert.equal((allowed.json as Bundle).entry.length, 3)
      const refused = await read(otherToken)
      assert.equal(refused.status, 403)
      assert.match(refused.text, /deny\.token-scope/)
      // The session itself reads too; a bad token is 401.
      assert.equal((await read(session)).status, 200)
      assert.equal((await read(`ward_at_${'A'.repeat(43)}`)).status, 401)

      const events = await fixture.auditEvents('alpha')
      const last = events.filter((event) => event.subtype.code === 'fhir.observation.search')
      assert.deepEqual(
        last.map((event) => [event.policy.rule, event.purposeOfUse.join(), event.agent[0]?.who]),
        [
          ['clinician.care-team', 'TREAT', created.user.id],
          ['clinician.care-team', 'TREAT', created.user.id],
        ],
      )
      for (const secret of [password, fhirToken, otherToken, session]) {
        assert.ok(!fixture.logLines.join('\n').includes(secret), 'no credential in the log')
      }
    })
  })
}
