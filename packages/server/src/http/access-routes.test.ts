import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'

import {
  entryBundlePath,
  entryBundlesForSize,
  parseVerifierKey,
  tilePath,
  tilesForSize,
  verifyTileLog,
} from '@ward/core'

import { AccessFixture, type Answer } from '../../test/access-fixture.js'
import { dialects } from '../../test/support.js'
import type { AuditEvent } from '../audit/index.js'
import { apiRoutes } from './routes/api.js'

const json = (answer: Answer) => answer.json as Record<string, unknown>

const lastEvent = async (fixture: AccessFixture): Promise<AuditEvent> => {
  const event = (await fixture.auditEvents('alpha')).at(-1)
  assert.ok(event, 'the log has an event')
  return event
}
const agentOf = (event: AuditEvent) => event.agent[0] ?? assert.fail('no agent')
const entityOf = (event: AuditEvent) => event.entity[0] ?? assert.fail('no entity')

/** A problem body without its request id, which differs on every answer. */
const shape = (answer: Answer) => {
  const { requestId, ...rest } = json(answer)
  assert.equal(typeof requestId, 'string')
  return { status: answer.status, ...rest }
}

for (const { dialect, skip } of dialects) {
  describe(`routes under the access policy on ${dialect}`, { skip }, () => {
    const fixture = new AccessFixture()

    before(async () => {
      await fixture.start(dialect)
    })
    after(async () => {
      await fixture.stop()
    })

    const observations = (patient: string, as: string, headers: Record<string, string> = {}) =>
      fixture.call(
        'GET',
        `/v1/organizations/alpha/patients/${patient}/observations`,
        as,
        undefined,
        headers,
      )

    test('a guessed or enumerated id answers exactly as one that does not exist', async () => {
      const absent = `pt-${'a'.repeat(20)}`
      const beta = fixture.betaPatient.pseudonym
      const betaSerial = await fixture.device('beta')
      const betaGrant = await fixture.grant(fixture.betaPatient)
      const cases: [string, string, string][] = [
        // [principal, path of a resource that does not exist, path of one in another organization]
        [
          'clinician',
          `/v1/organizations/alpha/patients/${absent}/observations`,
          `/v1/organizations/alpha/patients/${beta}/observations`,
        ],
        [
          'clinician',
          `/v1/organizations/nowhere/patients/${absent}/observations`,
          `/v1/organizations/beta/patients/${beta}/observations`,
        ],
        [
          'org-admin',
          '/v1/organizations/alpha/devices/NO-SUCH-SERIAL/suspension',
          `/v1/organizations/alpha/devices/${betaSerial}/suspension`,
        ],
        [
          'org-admin',
          `/v1/organizations/alpha/care-teams/${randomUUID()}`,
          `/v1/organizations/alpha/care-teams/${fixture.betaTeam.id}`,
        ],
        ['org-admin', '/v1/organizations/nowhere/devices', '/v1/organizations/beta/devices'],
        [
          'privacy-officer',
          `/v1/organizations/alpha/break-glass-reviews/${randomUUID()}/closure`,
          `/v1/organizations/alpha/break-glass-reviews/${betaGrant.id}/closure`,
        ],
        [
          'org-admin',
          `/v1/organizations/alpha/care-teams/${fixture.team.id}/patients/${absent}`,
          `/v1/organizations/alpha/care-teams/${fixture.team.id}/patients/${beta}`,
        ],
      ]
      for (const [as, missing, foreign] of cases) {
        const method =
          missing.endsWith('/suspension') || missing.endsWith('/closure')
            ? 'POST'
            : missing.includes('/patients/pt-') && missing.includes('care-teams')
              ? 'PUT'
              : 'GET'
        const body = missing.endsWith('/closure') ? { outcome: 'justified' } : undefined
        const one = await fixture.call(method, missing, as, body)
        const two = await fixture.call(method, foreign, as, body)
        assert.equal(one.status, 404, `${as} ${method} ${missing}: ${one.text}`)
        assert.deepEqual(shape(two), shape(one), `${as} ${method} ${foreign}`)
        assert.deepEqual(Object.keys(json(two)).sort(), Object.keys(json(one)).sort())
      }
      // Enumerating every pseudonym of beta from alpha finds none of them.
      for (const patient of await fixture.running.ward.fleet.listPatients('beta')) {
        const answer = await observations(patient.pseudonym, 'clinician')
        assert.equal(answer.status, 404)
      }
    })

    test('the decision rule goes into the audit event of the operation it allowed', async () => {
      const serial = await fixture.device('alpha')
      const answer = await fixture.call(
        'POST',
        `/v1/organizations/alpha/devices/${serial}/suspension`,
        'support',
      )
      assert.equal(answer.status, 200, answer.text)
      assert.equal(json(answer)['status'], 'suspended')
      const event = await lastEvent(fixture)
      assert.equal(event['subtype'].code, 'device.suspend')
      assert.deepEqual(event['policy'], { decision: 'permit', rule: 'support.device-support' })
      assert.deepEqual(event['purposeOfUse'], ['HSYSADMIN'])
      assert.equal(agentOf(event).who, 'user-support')
      assert.equal(agentOf(event).role, 'support')
      assert.equal(agentOf(event).type, 'user')
      assert.equal(event['requestId'], answer.headers['x-request-id'])
    })

    test("a patient's reads are audited without their network address, the workforce's with it", async () => {
      const own = await observations(fixture.own.pseudonym, 'patient', {
        'x-purpose-of-use': 'PATRQT',
      })
      assert.equal(own.status, 200, own.text)
      const patientEvent = await lastEvent(fixture)
      assert.equal(agentOf(patientEvent).who, 'user-patient')
      assert.equal(agentOf(patientEvent).network, undefined)

      // A clinician who is also a patient of the organization is a patient all the same.
      fixture.principals.set(
        'clinician-and-patient',
        fixture.principal('clinician', {
          userId: 'user-clinician',
          patientPseudonym: fixture.other.pseudonym,
        }),
      )
      const treated = await observations(fixture.own.pseudonym, 'clinician-and-patient')
      assert.equal(treated.status, 200, treated.text)
      const clinicianEvent = await lastEvent(fixture)
      assert.equal(agentOf(clinicianEvent).role, 'clinician')
      assert.equal(agentOf(clinicianEvent).network, undefined)

      const clinician = await observations(fixture.own.pseudonym, 'clinician')
      assert.equal(clinician.status, 200, clinician.text)
      assert.equal(typeof agentOf(await lastEvent(fixture)).network?.address, 'string')
    })

    test('a care-team read is audited with the rule and the query, never the values', async () => {
      const answer = await observations(fixture.own.pseudonym, 'clinician')
      assert.equal(answer.status, 200, answer.text)
      const bundle = json(answer)
      assert.equal(bundle['resourceType'], 'Bundle')
      assert.equal(bundle['total'], 3)
      const event = await lastEvent(fixture)
      assert.equal(event['subtype'].code, 'observation.read')
      assert.equal(event['policy'].rule, 'clinician.care-team')
      assert.deepEqual(event['purposeOfUse'], ['TREAT'])
      assert.equal(entityOf(event).patient, fixture.own.pseudonym)
      assert.equal(entityOf(event).detail?.['count'], 3)
      assert.doesNotMatch(JSON.stringify(event), /valueQuantity|"value"/)
      assert.equal(fixture.logLines.join('\n').includes('valueQuantity'), false)
    })

    test('a time range and a limit narrow the readings; an out-of-range limit is refused', async () => {
      const narrowed = await fixture.call(
        'GET',
        `/v1/organizations/alpha/patients/${fixture.own.pseudonym}/observations?from=2026-03-02T00:00:00Z&to=2026-03-03T00:00:00Z`,
        'clinician',
      )
      assert.equal(json(narrowed)['total'], 1)
      const limited = await fixture.call('GET', '/v1/me/observations?limit=2', 'patient')
      assert.equal((json(limited)['entry'] as unknown[]).length, 2)
      assert.equal(json(limited)['total'], undefined, 'a page with more after it has no total')
      // Nor has the last page a cursor led to: it knows its own readings, not all of them.
      const links = json(limited)['link'] as { relation: string; url: string }[]
      const last = await fixture.call('GET', links[0]!.url, 'patient')
      assert.equal((json(last)['entry'] as unknown[]).length, 1)
      assert.equal(json(last)['link'], undefined)
      assert.equal(json(last)['total'], undefined, 'a page after the first has no total')
      const tooMany = await fixture.call('GET', '/v1/me/observations?limit=10001', 'patient')
      assert.equal(tooMany.status, 400)
      assert.equal(json(tooMany)['code'], 'ERR_INPUT_INVALID')
      assert.match(String(json(tooMany)['detail']), /limit/)
      const badTime = await fixture.call('GET', '/v1/me/observations?from=yesterday', 'patient')
      assert.equal(badTime.status, 400)
      assert.match(String(json(badTime)['detail']), /from/)
    })

    test('a patient reads only their own record, naming PATRQT on the organization route', async () => {
      const own = await observations(fixture.own.pseudonym, 'patient', {
        'x-purpose-of-use': 'PATRQT',
      })
      assert.equal(own.status, 200)
      const other = await observations(fixture.other.pseudonym, 'patient', {
        'x-purpose-of-use': 'PATRQT',
      })
      assert.equal(other.status, 403)
      assert.match(String(json(other)['detail']), /deny\.not-own-patient/)
      const event = await lastEvent(fixture)
      assert.equal(event['policy'].rule, 'patient.own-record')
      assert.deepEqual(event['purposeOfUse'], ['PATRQT'])
    })

    test('an unknown purpose of use is refused as bad input', async () => {
      const answer = await observations(fixture.own.pseudonym, 'clinician', {
        'x-purpose-of-use': 'SNOOP',
      })
      assert.equal(answer.status, 400)
      assert.equal(json(answer)['code'], 'ERR_INPUT_INVALID')
    })

    test('break-glass: opened with a reason, audited as emergency access, reviewed and closed', async () => {
      const reason = 'Unresponsive on arrival, history of arrhythmia per paramedic'
      const before = await observations(fixture.other.pseudonym, 'clinician')
      assert.equal(before.status, 403)
      assert.match(String(json(before)['detail']), /deny\.not-care-team/)

      const opened = await fixture.call(
        'POST',
        `/v1/organizations/alpha/patients/${fixture.other.pseudonym}/break-glass`,
        'clinician',
        { reasonCode: 'patient-unresponsive', reason },
      )
      assert.equal(opened.status, 201, opened.text)
      const grant = json(opened)
      assert.equal(grant['patient'], fixture.other.pseudonym)
      assert.equal(grant['reviewStatus'], 'open')
      assert.equal(
        Date.parse(String(grant['expiresAt'])) - Date.parse(String(grant['openedAt'])),
        60 * 60_000,
        'the default time box is an hour',
      )
      assert.equal(opened.text.includes(reason), false, 'the answer does not echo the reason')
      const openEvent = await lastEvent(fixture)
      assert.equal(openEvent['type'].code, '110113')
      assert.equal(entityOf(openEvent).detail?.['emergencyAccess'], true)
      assert.equal(openEvent['subtype'].code, 'break-glass.open')
      assert.deepEqual(openEvent['purposeOfUse'], ['ETREAT'])
      assert.equal(openEvent['policy'].rule, 'clinician.break-glass')
      assert.equal(entityOf(openEvent).detail?.['reasonCode'], 'patient-unresponsive')

      // Emergency access is used by naming ETREAT; TREAT still needs a care team.
      assert.equal((await observations(fixture.other.pseudonym, 'clinician')).status, 403)
      const read = await observations(fixture.other.pseudonym, 'clinician', {
        'x-purpose-of-use': 'ETREAT',
      })
      assert.equal(read.status, 200, read.text)
      const readEvent = await lastEvent(fixture)
      assert.equal(readEvent['policy'].rule, 'clinician.emergency-access')
      assert.deepEqual(readEvent['purposeOfUse'], ['ETREAT'])
      // Another clinician gains nothing from it.
      fixture.principals.set(
        'clinician-2',
        fixture.principal('clinician', { userId: 'user-clinician-2' }),
      )
      const colleague = await observations(fixture.other.pseudonym, 'clinician-2', {
        'x-purpose-of-use': 'ETREAT',
      })
      assert.equal(colleague.status, 403)

      const queue = await fixture.call(
        'GET',
        '/v1/organizations/alpha/break-glass-reviews',
        'privacy-officer',
      )
      assert.equal(queue.status, 200)
      const item = (queue.json as Record<string, unknown>[]).find(
        (entry) => entry['id'] === grant['id'],
      )
      assert.ok(item, 'the grant is in the review queue')
      assert.equal(item['reason'], reason)
      assert.equal(item['user'], 'user-clinician')

      const closed = await fixture.call(
        'POST',
        `/v1/organizations/alpha/break-glass-reviews/${String(grant['id'])}/closure`,
        'privacy-officer',
        { outcome: 'justified' },
      )
      assert.equal(closed.status, 200, closed.text)
      assert.equal(json(closed)['reviewStatus'], 'closed')
      assert.equal(json(closed)['reviewedBy'], 'user-privacy-officer')
      const again = await fixture.call(
        'POST',
        `/v1/organizations/alpha/break-glass-reviews/${String(grant['id'])}/closure`,
        'privacy-officer',
        { outcome: 'justified' },
      )
      assert.equal(again.status, 409)
      assert.equal(json(again)['code'], 'ERR_REVIEW_CLOSED')
      const ended = await observations(fixture.other.pseudonym, 'clinician', {
        'x-purpose-of-use': 'ETREAT',
      })
      assert.equal(ended.status, 403, 'closing the review ended the grant')
      const closedQueue = await fixture.call(
        'GET',
        '/v1/organizations/alpha/break-glass-reviews?status=closed',
        'privacy-officer',
      )
      assert.ok(
        (closedQueue.json as Record<string, unknown>[]).some(
          (entry) => entry['id'] === grant['id'],
        ),
      )

      // The reason is nowhere but sealed in its row: not in any audit event, not in the log.
      assert.equal((await fixture.allAuditText()).includes(reason), false)
      assert.equal(fixture.logLines.join('\n').includes(reason), false)
      assert.equal(fixture.logLines.join('\n').includes('arrhythmia'), false)
      const row = await fixture.running.ward.store.db
        .selectFrom('break_glass_grants')
        .select('sealed_reason')
        .where('id', '=', String(grant['id']))
        .executeTakeFirstOrThrow()
      assert.equal(Buffer.from(row.sealed_reason).includes(Buffer.from('arrhythmia')), false)
    })

    test('break-glass refuses a time box past the maximum and a reason too short', async () => {
      const path = `/v1/organizations/alpha/patients/${fixture.other.pseudonym}/break-glass`
      const long = await fixture.call('POST', path, 'clinician', {
        reasonCode: 'other',
        reason: 'a long enough reason',
        durationMinutes: 241,
      })
      assert.equal(long.status, 400)
      assert.match(String(json(long)['detail']), /durationMinutes.*240/)
      const short = await fixture.call('POST', path, 'clinician', {
        reasonCode: 'other',
        reason: 'short',
      })
      assert.equal(short.status, 400)
      assert.match(String(json(short)['detail']), /reason/)
      const unknownCode = await fixture.call('POST', path, 'clinician', {
        reasonCode: 'curiosity',
        reason: 'a long enough reason',
      })
      assert.equal(unknownCode.status, 400)
      assert.match(String(json(unknownCode)['detail']), /reasonCode/)
    })

    test('a care coordinator may not open break-glass', async () => {
      const answer = await fixture.call(
        'POST',
        `/v1/organizations/alpha/patients/${fixture.other.pseudonym}/break-glass`,
        'care-coordinator',
        { reasonCode: 'other', reason: 'a long enough reason' },
      )
      assert.equal(answer.status, 403)
      assert.match(String(json(answer)['detail']), /deny\.role/)
    })

    test('a privileged role without a second factor is refused everything', async () => {
      fixture.principals.set('admin-no-mfa', fixture.principal('org-admin', { mfaVerified: false }))
      const answer = await fixture.call('GET', '/v1/organizations/alpha/devices', 'admin-no-mfa')
      assert.equal(answer.status, 403)
      assert.match(String(json(answer)['detail']), /deny\.mfa-required/)
      // A clinician needs no second factor to act.
      fixture.principals.set(
        'clinician-no-mfa',
        fixture.principal('clinician', { mfaVerified: false }),
      )
      assert.equal((await observations(fixture.own.pseudonym, 'clinician-no-mfa')).status, 200)
    })

    test('an API token may do only what its scopes name', async () => {
      fixture.principals.set(
        'clinician-token',
        fixture.principal('clinician', {
          method: 'api-token',
          mfaVerified: false,
          scopes: ['observation:read'],
        }),
      )
      assert.equal((await observations(fixture.own.pseudonym, 'clinician-token')).status, 200)
      const teams = await fixture.call(
        'GET',
        '/v1/organizations/alpha/care-teams',
        'clinician-token',
      )
      assert.equal(teams.status, 403)
      assert.match(String(json(teams)['detail']), /deny\.token-scope/)
    })

    test('a body field the schema does not allow is refused, naming it', async () => {
      const answer = await fixture.call('POST', '/v1/organizations/alpha/care-teams', 'org-admin', {
        name: 'Nephrology',
        owner: 'someone',
      })
      assert.equal(answer.status, 400)
      assert.equal(json(answer)['code'], 'ERR_INPUT_INVALID')
      assert.match(String(json(answer)['detail']), /body/)
      const tooLarge = await fixture.call(
        'POST',
        '/v1/organizations/alpha/care-teams',
        'org-admin',
        {
          name: 'x'.repeat(2 * 1024 * 1024),
        },
      )
      assert.equal(tooLarge.status, 413)
    })

    test('a patient identity sent to the API stays out of the service log and audit events', async () => {
      const family = 'Zzyzxquillfeather'
      const answer = await fixture.call('POST', '/v1/organizations/alpha/patients', 'org-admin', {
        identity: {
          name: { family, given: ['Ona'] },
          birthDate: '1961-07-19',
          phone: '+1 555 0100',
        },
      })
      assert.equal(answer.status, 201, answer.text)
      assert.match(String(json(answer)['pseudonym']), /^pt-[a-z2-7]{20}$/)
      const bad = await fixture.call('POST', '/v1/organizations/alpha/patients', 'org-admin', {
        identity: { name: { family, given: [] }, birthDate: '19610719' },
      })
      assert.equal(bad.status, 400)
      assert.equal(bad.text.includes('19610719'), false)
      for (const text of [fixture.logLines.join('\n'), await fixture.allAuditText()]) {
        assert.equal(text.includes(family), false)
        assert.equal(text.includes('1961-07-19'), false)
        assert.equal(text.includes('555 0100'), false)
      }
    })

    test('care teams: the admin builds them, members see only their own', async () => {
      const created = await fixture.call(
        'POST',
        '/v1/organizations/alpha/care-teams',
        'org-admin',
        {
          name: 'Pulmonology',
        },
      )
      assert.equal(created.status, 201)
      const id = String(json(created)['id'])
      const duplicate = await fixture.call(
        'POST',
        '/v1/organizations/alpha/care-teams',
        'org-admin',
        {
          name: 'Pulmonology',
        },
      )
      assert.equal(duplicate.status, 409)
      const base = `/v1/organizations/alpha/care-teams/${id}`
      assert.equal(
        (await fixture.call('PUT', `${base}/members/user-clinician`, 'org-admin')).status,
        200,
      )
      const added = await fixture.call(
        'PUT',
        `${base}/patients/${fixture.other.pseudonym}`,
        'org-admin',
      )
      assert.deepEqual(added.json, { changed: true })
      const detail = await fixture.call('GET', base, 'clinician')
      assert.equal(detail.status, 200)
      assert.deepEqual(json(detail)['members'], ['user-clinician'])
      assert.deepEqual(json(detail)['patients'], [fixture.other.pseudonym])
      // Now on that team, the clinician reads the patient under TREAT.
      assert.equal((await observations(fixture.other.pseudonym, 'clinician')).status, 200)

      const mine = await fixture.call('GET', '/v1/organizations/alpha/care-teams', 'clinician')
      const names = (mine.json as { name: string }[]).map((team) => team.name)
      assert.deepEqual(names, ['Cardiology', 'Pulmonology'])
      const all = await fixture.call('GET', '/v1/organizations/alpha/care-teams', 'org-admin')
      assert.ok((all.json as { name: string }[]).some((team) => team.name === 'Oncology'))

      const removed = await fixture.call(
        'DELETE',
        `${base}/patients/${fixture.other.pseudonym}`,
        'org-admin',
      )
      assert.deepEqual(removed.json, { changed: true })
      assert.equal((await observations(fixture.other.pseudonym, 'clinician')).status, 403)
      const events = await fixture.auditEvents('alpha')
      const operations = events.map((event) => event.subtype.code)
      assert.ok(operations.includes('care-team.patient-remove'))
      assert.equal(events.at(-1)?.policy.rule, 'org-admin.administration')
    })

    test('an auditor reads the organization log checkpoint; the operator the platform one', async () => {
      const answer = await fixture.call(
        'GET',
        '/v1/organizations/alpha/audit/checkpoint',
        'auditor',
      )
      assert.equal(answer.status, 200)
      assert.match(String(json(answer)['checkpoint']), /^ward\.test\/alpha\n\d+\n/)
      const platform = await fixture.call(
        'GET',
        '/v1/platform/audit/checkpoint',
        'platform-operator',
      )
      assert.match(String(json(platform)['checkpoint']), /^ward\.test\/platform\n/)
    })

    test('an auditor reads the tiles and proofs of the organization log and verifies it offline', async () => {
      const prefix = '/v1/organizations/alpha/audit'
      const checkpoint = String(
        json(await fixture.call('GET', `${prefix}/checkpoint`, 'auditor'))['checkpoint'],
      )
      const size = Number(checkpoint.split('\n')[1])
      const files = new Map<string, Uint8Array>([['checkpoint', Buffer.from(checkpoint)]])
      const paths = [
        ...tilesForSize(size).map((tile) => tilePath(tile)),
        ...entryBundlesForSize(size).map((bundle) => entryBundlePath(bundle.index, bundle.width)),
      ]
      for (const path of paths) {
        const answer = await fixture.call('GET', `${prefix}/${path}`, 'auditor')
        assert.equal(answer.status, 200, `${path}: ${answer.text}`)
        assert.equal(answer.headers['content-type'], 'application/octet-stream')
        files.set(path, answer.bytes)
      }
      const verifierKey = parseVerifierKey(await fixture.running.ward.verifierKey('alpha'))
      const verified = verifyTileLog({ verifierKey, read: (path) => files.get(path) })
      assert.equal(verified.size, size)

      const inclusion = json(
        await fixture.call('GET', `${prefix}/proof/inclusion?index=0&size=${size}`, 'auditor'),
      )
      assert.equal(inclusion['size'], size)
      assert.ok(Array.isArray(inclusion['proof']))
      const consistency = await fixture.call(
        'GET',
        `${prefix}/proof/consistency?from=1&to=${size}`,
        'auditor',
      )
      assert.equal(consistency.status, 200)

      // Proofs reach as far as the signed checkpoint, as tiles do.
      const unsigned = await fixture.call(
        'GET',
        `${prefix}/proof/inclusion?index=0&size=${size + 1}`,
        'auditor',
      )
      assert.equal(unsigned.status, 400)
      assert.match(unsigned.text, /newest signed checkpoint/)

      // A path that is not a tile's one spelling is not there; a bad number is named.
      assert.equal((await fixture.call('GET', `${prefix}/tile/0/0`, 'auditor')).status, 404)
      const bad = await fixture.call('GET', `${prefix}/proof/inclusion?index=-1&size=1`, 'auditor')
      assert.equal(bad.status, 400)
      assert.match(bad.text, /index/)
      // A clinician reads readings, not the log.
      assert.equal((await fixture.call('GET', `${prefix}/${paths[0]}`, 'clinician')).status, 403)
    })

    test('the OpenAPI description covers every route with its schemas', async () => {
      const answer = await fixture.call('GET', '/openapi.json', undefined)
      assert.equal(answer.status, 200)
      const document = json(answer) as {
        openapi: string
        paths: Record<
          string,
          Record<string, { responses: Record<string, unknown>; requestBody?: unknown }>
        >
      }
      assert.match(document.openapi, /^3\./)
      for (const route of apiRoutes) {
        const path = route.url.replace(/:([a-zA-Z]+)/g, '{$1}').replace(/\*$/, '{*}')
        const operation = document.paths[path]?.[route.method.toLowerCase()]
        assert.ok(operation, `${route.method} ${path} is described`)
        assert.ok(operation.responses['401'], `${route.method} ${path} describes 401`)
        if (route.schema.body !== undefined) assert.ok(operation.requestBody)
      }
      assert.equal(JSON.stringify(document).includes('/openapi.json'), false)
    })
  })
}

describe('a server built without an authenticate function', () => {
  const fixture = new AccessFixture()
  before(async () => {
    await fixture.start('sqlite', { authenticate: null })
  })
  after(async () => {
    await fixture.stop()
  })

  test('answers 401 on every route under the policy, whatever the request says', async () => {
    for (const role of ['org-admin', 'clinician', 'platform-operator']) {
      const answer = await fixture.call('GET', '/v1/organizations/alpha/devices', role)
      assert.equal(answer.status, 401)
    }
    assert.equal((await fixture.call('GET', '/health', undefined)).status, 200)
  })
})
