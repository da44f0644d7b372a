import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import {
  cpSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { join, relative } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { concatBytes, hashLeaf, parseVerifierKey, utf8Encode } from '@ward/core'
import {
  Ward,
  appendAuditEvents,
  buildAuditEvent,
  findAuditLog,
  loadConfig,
  systemContext,
} from '@ward/server'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  testEnvironment,
  type TestDatabase,
} from '../../server/test/support.js'
import { verifyExport } from './verify.js'

const repository = fileURLToPath(new URL('../../..', import.meta.url))
// The command as shipped: the compiled build that `npm test` makes before running the tests.
const entry = fileURLToPath(new URL('../dist/main.js', import.meta.url))

interface Run {
  status: number | null
  stdout: string
  stderr: string
}

for (const { dialect, skip } of dialects) {
  describe(`ward command on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let home: string
    let env: Record<string, string>

    const ward = (...args: string[]): Run => {
      const result = spawnSync(process.execPath, [entry, ...args], {
        cwd: repository,
        env: { PATH: process.env['PATH'] ?? '', ...env },
        encoding: 'utf8',
      })
      return { status: result.status, stdout: result.stdout, stderr: result.stderr }
    }

    const ok = (...args: string[]): string => {
      const result = ward(...args)
      assert.equal(result.status, 0, `ward ${args.join(' ')} failed: ${result.stderr}`)
      return result.stdout
    }

    /** Appends `count` events to `log` directly through the store, as a busy Ward would. */
    const grow = async (log: string, count: number) => {
      const opened = await Ward.open(loadConfig({ env }))
      try {
        const events = Array.from({ length: count }, (_, i) =>
          buildAuditEvent(systemContext('test'), 'ward.test', {
            type: { code: '110100', display: 'Application Activity' },
            operation: `test.event-${i}`,
            action: 'E',
          }),
        )
        await opened.store.transaction((tx) =>
          appendAuditEvents(tx, opened.store.dialect, opened.entryKeys, log, events),
        )
      } finally {
        await opened.close()
      }
    }

    /** Runs `work` against the raw store, as somebody with database access could. */
    const tamper = async (log: string, work: (ward: Ward, logId: string) => Promise<void>) => {
      const opened = await Ward.open(loadConfig({ env }))
      try {
        await work(opened, (await findAuditLog(opened.store.db, log)).id)
      } finally {
        await opened.close()
      }
    }

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      home = join(directory.path, 'home')
      env = testEnvironment(home, database.url)
    })

    after(async () => {
      await database.drop()
      directory.remove()
    })

    test('init creates a home only its owner can read, and refuses to run twice', () => {
      const output = ok('init')
      assert.match(output, /created master key/)
      assert.match(output, /created platform audit log/)
      assert.equal(statSync(join(home, 'master.key')).mode & 0o777, 0o600)
      assert.equal(statSync(join(home, 'operator-token')).mode & 0o777, 0o600)
      assert.equal(statSync(home).mode & 0o777, 0o700)
      assert.ok(!output.includes(readFileSync(join(home, 'master.key'), 'utf8').trim()))

      const again = ward('init')
      assert.equal(again.status, 1)
      assert.match(again.stderr, /ERR_ALREADY_INITIALIZED/)
    })

    test('org create makes an organization with its own log; bad input is named', () => {
      assert.match(
        ok('org', 'create', 'acme', '--name', 'Acme Health'),
        /created organization acme/,
      )
      assert.match(ok('org', 'list'), /^acme\tAcme Health\t/m)

      const duplicate = ward('org', 'create', 'acme', '--name', 'Again')
      assert.equal(duplicate.status, 1)
      assert.match(duplicate.stderr, /ERR_ORGANIZATION_EXISTS/)

      const badSlug = ward('org', 'create', 'Bad Slug!', '--name', 'X')
      assert.equal(badSlug.status, 1)
      assert.match(badSlug.stderr, /slug must be 1–63 lowercase letters/)

      const missingName = ward('org', 'create', 'beta')
      assert.equal(missingName.status, 2)
      assert.match(missingName.stderr, /--name/)
    })

    test('fleet commands manage models, patients, devices, tokens and manufacturer CAs', () => {
      ok('org', 'create', 'fleetco', '--name', 'Fleet Co')
      assert.equal(
        ok('device-model', 'add-standard', '--org', 'fleetco').trim().split('\n').length,
        4,
      )
      const identity = join(directory.path, 'identity.json')
      writeFileSync(
        identity,
        JSON.stringify({
          name: { family: 'Testpatient', given: ['Una'] },
          birthDate: '1970-01-01',
        }),
      )
      const pseudonym = ok('patient', 'create', '--org', 'fleetco', '--identity', identity).trim()
      assert.ok(!ok('patient', 'list', '--org', 'fleetco').includes('Testpatient'))
      const model = ok('device-model', 'list', '--org', 'fleetco').split('\t')[0] as string
      ok('device', 'create', '--org', 'fleetco', '--serial', 'SN-1', '--model', model)
      ok('device', 'assign', '--org', 'fleetco', '--serial', 'SN-1', '--patient', pseudonym)
      assert.match(
        ok('device', 'list', '--org', 'fleetco'),
        new RegExp(`^SN-1\tprovisioned\t${pseudonym}\t`, 'm'),
      )
      assert.match(
        ok('enrollment-token', 'create', '--org', 'fleetco', '--serial', 'SN-1'),
        /expires /,
      )

      const ca = join(directory.path, 'maker-ca.pem')
      const made = spawnSync('openssl', [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        join(directory.path, 'maker-ca.key'),
        '-out',
        ca,
        '-days',
        '30',
        '-subj',
        '/O=Maker Devices/CN=Maker Factory CA',
        '-addext',
        'basicConstraints=critical,CA:true',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ])
      assert.equal(made.status, 0, String(made.stderr))
      assert.match(
        ok('manufacturer', 'register', '--org', 'fleetco', '--name', 'Maker', '--certificate', ca),
        /registered manufacturer CA Maker/,
      )
      assert.match(ok('manufacturer', 'list', '--org', 'fleetco'), /^Maker\t.*Maker Factory CA/m)
      const again = ward(
        'manufacturer',
        'register',
        '--org',
        'fleetco',
        '--name',
        'Maker',
        '--certificate',
        ca,
      )
      assert.equal(again.status, 1)
      assert.match(again.stderr, /ERR_AUTHORITY_EXISTS/)
      const notCertificate = ward(
        'manufacturer',
        'register',
        '--org',
        'fleetco',
        '--name',
        'X',
        '--certificate',
        identity,
      )
      assert.equal(notCertificate.status, 1)
      assert.match(notCertificate.stderr, /ERR_CERTIFICATE_INVALID/)

      // The manufacturer's CRLs, as `openssl ca -gencrl` signs them: numbers 1 and then 2.
      writeFileSync(join(directory.path, 'index.txt'), '')
      writeFileSync(join(directory.path, 'crlnumber'), '01\n')
      const crlConfig = join(directory.path, 'crl.cnf')
      writeFileSync(
        crlConfig,
        [
          '[ca]',
          'default_ca = maker',
          '[maker]',
          `database = ${join(directory.path, 'index.txt')}`,
          `crlnumber = ${join(directory.path, 'crlnumber')}`,
          'default_md = sha256',
          'default_crl_days = 7',
          '',
        ].join('\n'),
      )
      const crls = [1, 2].map((number) => {
        const out = join(directory.path, `maker-${number}.crl`)
        const signed = spawnSync('openssl', [
          'ca',
          '-gencrl',
          '-config',
          crlConfig,
          '-keyfile',
          join(directory.path, 'maker-ca.key'),
          '-cert',
          ca,
          '-out',
          out,
        ])
        assert.equal(signed.status, 0, String(signed.stderr))
        return out
      })
      const crl = (file: string) =>
        ward('manufacturer', 'crl', '--org', 'fleetco', '--name', 'Maker', '--crl', file)
      assert.match(
        ok('manufacturer', 'crl', '--org', 'fleetco', '--name', 'Maker', '--crl', crls[1] ?? ''),
        /^stored CRL number 2 of manufacturer Maker: 0 revoked certificates, next update /,
      )
      assert.match(
        ok('manufacturer', 'list', '--org', 'fleetco'),
        /^Maker\t.*\tCRL 2, next update /m,
      )
      const rollback = crl(crls[0] ?? '')
      assert.equal(rollback.status, 1)
      assert.match(
        rollback.stderr,
        /ERR_CRL_ROLLBACK.*crl number 1 is lower than the stored CRL's number 2/,
      )
      const garbage = crl(identity)
      assert.equal(garbage.status, 1)
      assert.match(garbage.stderr, /ERR_CRL_INVALID/)
    })

    test('admin create makes the first platform operator with a one-time setup token', async () => {
      const first = ok('admin', 'create', '--login', 'First.Operator')
      assert.match(first, /platform operator first\.operator \([0-9a-f-]{36}\)/)
      const token = /\b(ward_setup_[A-Za-z0-9_-]{43})\b/.exec(first)?.[1]
      assert.ok(token !== undefined, first)
      assert.match(first, /\/auth\/setup/)

      // Lost before use: running it again gives a new token and the old one stops working.
      const again = /\b(ward_setup_[A-Za-z0-9_-]{43})\b/.exec(
        ok('admin', 'create', '--login', 'first.operator'),
      )?.[1]
      assert.ok(again !== undefined && again !== token)
      const opened = await Ward.open(loadConfig({ env }))
      try {
        const caller = { address: '127.0.0.1', requestId: 'cli-test' }
        const password = 'violet harbour lantern quietly'
        await assert.rejects(opened.people.completeSetup(caller, token, password))
        await opened.people.completeSetup(caller, again, password)
        const signIn = await opened.people.signIn(caller, 'first.operator', password)
        assert.equal(signIn.stage, 'mfa-enrollment')
      } finally {
        await opened.close()
      }

      const refused = ward('admin', 'create', '--login', 'second.operator')
      assert.equal(refused.status, 1)
      assert.match(refused.stderr, /ERR_ALREADY_INITIALIZED/)
      assert.equal(ward('admin', 'create').status, 2)
    })

    test('audit key prints a verifier key named by the log origin', () => {
      const key = ok('audit', 'key', '--log', 'acme').trim()
      assert.match(key, /^ward\.test\/acme\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*$/)
      assert.equal(parseVerifierKey(key).name, 'ward.test/acme')
      assert.match(ok('audit', 'key', '--log', 'platform'), /^ward\.test\/platform\+/)
      const unknown = ward('audit', 'key', '--log', 'nobody')
      assert.equal(unknown.status, 1)
      assert.match(unknown.stderr, /ERR_AUDIT_LOG_NOT_FOUND/)
    })

    test('an export verifies, and a later export is consistent with the earlier checkpoint', async () => {
      await grow('acme', 700)
      const first = join(directory.path, 'export-1')
      assert.match(
        ok('audit', 'export', '--log', 'acme', '--out', first),
        /exported audit log acme: size 702/,
      )
      const key = ok('audit', 'key', '--log', 'acme').trim()
      const verified = ok('audit', 'verify', first, '--key', key)
      assert.match(verified, /^verified ward\.test\/acme: size 702, root [0-9a-f]{64}$/m)

      const previous = join(directory.path, 'checkpoint-702')
      cpSync(join(first, 'checkpoint'), previous)
      await grow('acme', 300)
      const second = join(directory.path, 'export-2')
      ok('audit', 'export', '--log', 'acme', '--out', second)
      assert.match(
        ok('audit', 'verify', second, '--key', key, '--previous', previous),
        /consistent/,
      )

      // Exporting again into the first directory adds the new tiles beside the old ones.
      ok('audit', 'export', '--log', 'acme', '--out', first)
      ok('audit', 'verify', first, '--key', key, '--previous', previous)

      const platformKey = ok('audit', 'key', '--log', 'platform').trim()
      const wrongKey = ward('audit', 'verify', first, '--key', platformKey)
      assert.equal(wrongKey.status, 1)
      assert.match(wrongKey.stderr, /ERR_NOTE_UNVERIFIED|origin/)
    })

    test('one flipped byte anywhere in an export fails verification, naming the file', () => {
      const exported = join(directory.path, 'export-2')
      const key = parseVerifierKey(ok('audit', 'key', '--log', 'acme').trim())
      assert.doesNotThrow(() => verifyExport(exported, key))

      const files = listFiles(exported)
      assert.ok(files.length > 8, 'the export has several tiles and bundles')
      for (const file of files) {
        const original = readFileSync(join(exported, file))
        for (const offset of [0, Math.floor(original.length / 2), original.length - 1]) {
          const flipped = Buffer.from(original)
          flipped[offset] = (flipped[offset] as number) ^ 0x01
          writeFileSync(join(exported, file), flipped)
          assert.throws(
            () => verifyExport(exported, key),
            (error: Error) => error.message.includes(file) || file === 'checkpoint',
            `flipping byte ${offset} of ${file} went unnoticed`,
          )
        }
        writeFileSync(join(exported, file), original)
      }
      assert.doesNotThrow(() => verifyExport(exported, key))
    })

    test('verification refuses a tile that is a link to a device, without reading it', () => {
      const exported = join(directory.path, 'export-2')
      const key = ok('audit', 'key', '--log', 'acme').trim()
      const file = join(exported, 'tile', '0', '000')
      const original = readFileSync(file)
      rmSync(file)
      symlinkSync('/dev/zero', file)
      const refused = ward('audit', 'verify', exported, '--key', key)
      assert.equal(refused.status, 1)
      assert.match(refused.stderr, /tile\/0\/000: not a regular file/)
      rmSync(file)
      writeFileSync(file, original)
    })

    test('export refuses a directory that holds another log', () => {
      const refused = ward(
        'audit',
        'export',
        '--log',
        'platform',
        '--out',
        join(directory.path, 'export-1'),
      )
      assert.equal(refused.status, 1)
      assert.match(refused.stderr, /holds the log "ward\.test\/acme", not ward\.test\/platform/)
    })

    test('export follows no link planted in its directory', () => {
      const masterKey = readFileSync(join(home, 'master.key'))
      for (const [name, target] of [
        ['checkpoint', join(home, 'master.key')],
        ['tile', home],
      ] as const) {
        const planted = join(directory.path, `planted-${name}`)
        mkdirSync(planted, { mode: 0o700 })
        symlinkSync(target, join(planted, name))
        const refused = ward('audit', 'export', '--log', 'platform', '--out', planted)
        assert.equal(refused.status, 1, refused.stdout)
        assert.match(refused.stderr, /is not a (regular file|plain folder)/)
      }
      assert.deepEqual(readFileSync(join(home, 'master.key')), masterKey)
    })

    test('a removed tile or bundle fails verification, naming it', () => {
      const exported = join(directory.path, 'export-2')
      const key = ok('audit', 'key', '--log', 'acme').trim()
      const file = join(exported, 'tile', 'entries', '001')
      const original = readFileSync(file)
      writeFileSync(file, original.subarray(0, original.length - 10))
      const truncated = ward('audit', 'verify', exported, '--key', key)
      assert.equal(truncated.status, 1)
      assert.match(truncated.stderr, /tile\/entries\/001/)
      writeFileSync(file, original)
    })

    describe('tampering with the database is detected', () => {
      const scenarios: {
        name: string
        change: (ward: Ward, logId: string) => Promise<void>
        /** What the checked export says when it refuses to sign. */
        exportNames: RegExp
        /** What verification of the as-stored copy says. */
        verifyNames: RegExp
      }[] = [
        {
          name: 'an edited event body',
          exportNames: /entry 10 has a body that does not match its leaf hash/,
          verifyNames: /tile\/entries\/000.*entry 10\b/,
          change: async (ward, logId) => {
            const row = await entryRow(ward, logId, 10)
            const body = Buffer.from(row.body)
            body[body.indexOf('"E"') + 1] = 'D'.charCodeAt(0)
            await ward.store.db
              .updateTable('audit_entries')
              .set({ body })
              .where('log_id', '=', logId)
              .where('idx', '=', 10)
              .execute()
          },
        },
        {
          name: 'an edited body with its leaf hash recomputed',
          exportNames: /entry 20 has an authentication code that does not verify/,
          verifyNames: /tile\/1\/000/,
          change: async (ward, logId) => {
            const row = await entryRow(ward, logId, 20)
            const body = utf8Encode(Buffer.from(row.body).toString('utf8').replace('"E"', '"D"'))
            const hashes = concatBytes(hashLeaf(body), row.hashes.subarray(32))
            await ward.store.db
              .updateTable('audit_entries')
              .set({ body, hashes })
              .where('log_id', '=', logId)
              .where('idx', '=', 20)
              .execute()
          },
        },
        {
          name: 'a deleted entry',
          exportNames: /entry 100 is missing/,
          verifyNames: /tile\/0\/000|tile\/entries\/000/,
          change: async (ward, logId) => {
            await ward.store.db
              .deleteFrom('audit_entries')
              .where('log_id', '=', logId)
              .where('idx', '=', 100)
              .execute()
          },
        },
        {
          name: 'two entries swapped',
          exportNames: /entry 3 /,
          verifyNames: /tile\/1\/000|tile\/0\/000|tile\/entries\/000/,
          change: async (ward, logId) => {
            const third = await entryRow(ward, logId, 3)
            const fourth = await entryRow(ward, logId, 4)
            const set = (idx: number, row: typeof third) =>
              ward.store.db
                .updateTable('audit_entries')
                .set({ body: row.body, hashes: row.hashes, event_id: row.event_id, mac: row.mac })
                .where('log_id', '=', logId)
                .where('idx', '=', idx)
                .execute()
            await set(3, fourth)
            await set(4, third)
          },
        },
        {
          name: 'the newest entries truncated with the head rewritten to match',
          exportNames: /entries were removed/,
          verifyNames: /tile\//,
          change: async (ward, logId) => {
            await ward.store.db
              .deleteFrom('audit_entries')
              .where('log_id', '=', logId)
              .where('idx', '>=', 256)
              .execute()
            const root = await entryRow(ward, logId, 255)
            await ward.store.db
              .updateTable('audit_logs')
              .set({ size: 256, frontier: root.hashes.subarray(8 * 32, 9 * 32) })
              .where('id', '=', logId)
              .execute()
          },
        },
      ]

      for (const [position, scenario] of scenarios.entries()) {
        test(`${scenario.name} stops the export and fails verification of the stored copy`, async () => {
          const slug = `tamper-${position}`
          ok('org', 'create', slug, '--name', `Tamper ${position}`)
          await grow(slug, 298)
          ok('audit', 'checkpoint', '--log', slug)
          const key = ok('audit', 'key', '--log', slug).trim()
          await tamper(slug, scenario.change)

          const checked = ward(
            'audit',
            'export',
            '--log',
            slug,
            '--out',
            join(directory.path, `checked-${position}`),
          )
          assert.equal(checked.status, 1, `export signed a log after ${scenario.name}`)
          assert.match(checked.stderr, /ERR_LOG_INVALID/)
          assert.match(checked.stderr, scenario.exportNames)

          const out = join(directory.path, `stored-${position}`)
          const stored = ward('audit', 'export', '--log', slug, '--out', out, '--as-stored')
          assert.equal(stored.status, 0, stored.stderr)
          const verified = ward('audit', 'verify', out, '--key', key)
          assert.equal(verified.status, 1, `verification passed after ${scenario.name}`)
          assert.match(verified.stderr, scenario.verifyNames)
        })
      }
    })
  })
}

async function entryRow(ward: Ward, logId: string, idx: number) {
  return ward.store.db
    .selectFrom('audit_entries')
    .select(['body', 'hashes', 'event_id', 'mac'])
    .where('log_id', '=', logId)
    .where('idx', '=', idx)
    .executeTakeFirstOrThrow()
}

function listFiles(directory: string): string[] {
  const files: string[] = []
  for (const entry of readdirSync(directory, { recursive: true })) {
    const path = join(directory, String(entry))
    if (statSync(path).isFile()) files.push(relative(directory, path))
  }
  return files.sort()
}
