import { WardError, isWardError } from '@ward/core'

import { auditEventTypes, platformLogName, type AuditEventInput } from '../audit/index.js'
import type { OperationContext } from '../context.js'
import { findPatientByPseudonym } from '../records/index.js'
import type { Transaction } from '../store/index.js'
import { findOrganizationById } from '../tenancy/index.js'
import type { Ward } from '../ward.js'
import {
  createSetupToken,
  createUser,
  disableUser,
  findUser,
  findUserByLoginName,
  foldLoginName,
  grantRole,
  hasPlatformOperator,
  linkPatient,
  listGrants,
  redeemSetupToken,
  revokeRole,
  type User,
} from './accounts.js'
import {
  hashPassword,
  needsRehash,
  prepareHashOfNothing,
  verifyAgainstNothing,
  verifyPassword,
} from './password-hashing.js'
import { checkNewPassword, maximumPasswordLength } from './password-policy.js'
import {
  isPatientPerson,
  privilegedRoles,
  type Principal,
  type Role,
  type RoleGrant,
} from './principal.js'
import { redeemRecoveryCode, replaceRecoveryCodes } from './recovery-codes.js'
import {
  issueApiToken,
  listApiTokens,
  resolveApiToken,
  revokeAllApiTokens,
  revokeApiToken,
  type ApiTokenRecord,
} from './scoped-api-tokens.js'
import {
  advanceSession,
  endAllSessions,
  endOtherSessions,
  endSession,
  recordSecondFactorFailure,
  resumeSession,
  rotateSessionTokens,
  startSession,
  type Session,
  type SessionLimits,
  type SessionStage,
} from './sessions.js'
import {
  signInThrottlePolicy,
  checkSecondFactorThrottle,
  checkSignInThrottle,
  recordSecondFactorThrottleFailure,
  recordSignInFailure,
  recordSignInSuccess,
} from './sign-in-throttle.js'
import {
  confirmTotp,
  hasTotp,
  startTotpEnrollment,
  verifyTotp,
  type TotpEnrollment,
} from './totp.js'
import {
  finishWebauthnAuthentication,
  finishWebauthnRegistration,
  hasWebauthn,
  startWebauthnAuthentication,
  startWebauthnRegistration,
  takeWebauthnChallenge,
  webauthnRefused,
  type ChallengePurpose,
  type RelyingParty,
} from './webauthn.js'

/** Where time comes from; tests pass one they can move. */
export type Clock = () => Date

/** A request's view of who is calling, before anything is known about them. */
export interface Caller {
  readonly address: string
  readonly requestId: string
}

/** The answer to a password sign-in: a session, at the stage the person must go on from. */
export interface SignInResult {
  readonly token: string
  readonly csrfToken: string
  readonly stage: SessionStage
  readonly expiresAt: string
  /** When `stage` is `second-factor`: which factors the person can give. */
  readonly secondFactors: readonly ('totp' | 'webauthn' | 'recovery-code')[]
}

/** A signed-in person on one request: their session and what it may do now. */
export interface SessionState {
  readonly session: Session
  readonly user: User
  readonly grants: readonly RoleGrant[]
  /** The stage that applies now: a privileged person who lost MFA is back to enrollment. */
  readonly stage: SessionStage
  readonly mfaVerified: boolean
}

/** A session's new token and CSRF token, after its stage advanced; the old ones are dead. */
export interface RotatedSession {
  readonly token: string
  readonly csrfToken: string
}

/**
 * What an MFA enrollment hands back: recovery codes, shown once, for a first one; the
 * session's new tokens when the enrollment completed an enrollment-stage session.
 */
export interface MfaEnrolled {
  readonly recoveryCodes?: readonly string[]
  readonly session?: RotatedSession
}

/**
 * What a person who has a second factor gives, in the same request, to add or replace a
 * factor or to regenerate recovery codes: their current password and a current second factor
 * — a TOTP code from the authenticator they have now, or one of their recovery codes. A
 * session alone is not enough: whoever steals one must not be able to swap the owner's
 * second factor for their own and keep the account. Both are asked for, not the password
 * alone, because the password is the factor most often phished or reused elsewhere.
 */
export interface FactorChangeProof {
  readonly password?: string
  readonly totpCode?: string
  readonly recoveryCode?: string
}

const signInFailed = () =>
  new WardError('ERR_UNAUTHENTICATED', 'the login name or password is wrong')

/**
 * Who a person is and how they prove it: accounts and role grants, passwords, sign-in
 * throttling, TOTP, WebAuthn and recovery codes, sessions and API tokens. Every sign-in
 * success and failure, MFA change, role change and token issue or revoke is audited — in the
 * platform log for platform operators and unknown login names, in the organization's log
 * otherwise — with user ids only, never a password, token, secret or typed login name.
 */
export class People {
  readonly #ward: Ward
  readonly #clock: Clock
  readonly limits: SessionLimits
  readonly party: RelyingParty

  constructor(ward: Ward, options: { clock?: Clock } = {}) {
    this.#ward = ward
    this.#clock = options.clock ?? (() => new Date())
    const auth = ward.config.auth
    this.limits = {
      idleMs: auth.sessionIdleMinutes * 60_000,
      absoluteMs: auth.sessionLifetimeHours * 3_600_000,
    }
    this.party = { id: ward.config.hostName, name: 'Ward', origin: auth.origin }
    prepareHashOfNothing().catch(() => undefined)
  }

  get #mfaRequired(): boolean {
    return this.#ward.config.auth.mfa === 'required'
  }

  get #setupTtlMs(): number {
    return this.#ward.config.auth.setupTokenTtlHours * 3_600_000
  }

  // ---- accounts, called by the CLI and org-admin endpoints ----

  /**
   * Creates a person with `roles` in `organizationId` (null: a platform operator) and returns
   * the one-time setup token with which they choose a password. Audited as `user.create`.
   */
  async createUser(
    context: OperationContext,
    input: {
      readonly organizationId: string | null
      readonly loginName: string
      readonly roles: readonly Role[]
      readonly patientPseudonym?: string
    },
  ): Promise<{ user: User; setupToken: string; setupTokenExpiresAt: string }> {
    return this.#ward.store.transaction(async (tx) => {
      if (input.patientPseudonym !== undefined && input.organizationId !== null) {
        // Throws ERR_PATIENT_NOT_FOUND unless the pseudonym is this organization's patient.
        await findPatientByPseudonym(tx, input.organizationId, input.patientPseudonym)
      }
      const now = this.#clock()
      const created = await createUser(tx, input, now, this.#setupTtlMs)
      await this.#audit(tx, created.user, context, {
        type: auditEventTypes.applicationActivity,
        operation: 'user.create',
        action: 'C',
        entity: [
          {
            type: 'user',
            what: created.user.id,
            detail: { roles: [...new Set(input.roles)].join(' ') },
            ...(input.patientPseudonym === undefined ? {} : { patient: input.patientPseudonym }),
          },
        ],
      })
      return created
    })
  }

  /**
   * Creates the first platform operator, for `ward admin create`, and returns their one-time
   * setup token. Run again for the same login name before that person set a password, it
   * issues a new token (the old one stops working). Refuses once an operator exists who has
   * set up: further operators are created by a signed-in operator, so the CLI cannot be used
   * to slip in accounts beside the signed-in, audited path.
   */
  async createFirstPlatformOperator(
    context: OperationContext,
    loginName: string,
  ): Promise<{ user: User; setupToken: string; setupTokenExpiresAt: string }> {
    const db = this.#ward.store.db
    const existing = await findUserByLoginName(db, foldLoginName(loginName))
    if (existing !== undefined && existing.organizationId === null) {
      const hasPassword = await db
        .selectFrom('user_passwords')
        .select('user_id')
        .where('user_id', '=', existing.id)
        .executeTakeFirst()
      if (hasPassword === undefined && existing.status === 'active') {
        // The first operator never finished setting up (a lost or expired token): a new one.
        const setup = await this.reissueSetupToken(context, existing.id)
        return { user: existing, setupToken: setup.token, setupTokenExpiresAt: setup.expiresAt }
      }
    }
    if (await hasPlatformOperator(db)) {
      throw new WardError(
        'ERR_ALREADY_INITIALIZED',
        'a platform operator exists already; further operators are created by a signed-in one',
      )
    }
    return this.createUser(context, {
      organizationId: null,
      loginName,
      roles: ['platform-operator'],
    })
  }

  /**
   * A fresh setup token for `userId` (a forgotten password, a lost link); any earlier one
   * stops working. For a person who has a password this is an account reset, which whoever
   * holds the token completes: it ends the person's sessions now (their password works until
   * the token is used, which also revokes their API tokens), and it is audited as a Security
   * Alert naming the sessions ended, so that a privacy or security officer reviewing the log
   * sees every reset an admin made. Audited as `user.setup-token.issue` either way.
   */
  async reissueSetupToken(context: OperationContext, userId: string) {
    return this.#ward.store.transaction(async (tx) => {
      const now = this.#clock()
      const user = await findUser(tx, userId)
      const hasPassword = await tx
        .selectFrom('user_passwords')
        .select('user_id')
        .where('user_id', '=', user.id)
        .executeTakeFirst()
      const setup = await createSetupToken(tx, user.id, now, this.#setupTtlMs)
      if (hasPassword === undefined) {
        await this.#audit(tx, user, context, userEvent('user.setup-token.issue', 'U', user.id))
        return setup
      }
      const ended = await endAllSessions(tx, user.id, now)
      await this.#audit(tx, user, context, {
        ...userEvent('user.setup-token.issue', 'U', user.id, {
          passwordSet: 'true',
          endedSessions: String(ended),
        }),
        type: auditEventTypes.securityAlert,
      })
      return setup
    })
  }

  /**
   * Grants `role` to `userId` in the user's organization. Audited as `user.role.grant`. The
   * `patient` role links the person to `patientPseudonym`, which must be a patient of their
   * organization; a person already linked to another patient is refused.
   */
  async grantRole(
    context: OperationContext,
    userId: string,
    role: Role,
    patientPseudonym?: string,
  ): Promise<void> {
    await this.#ward.store.transaction(async (tx) => {
      let user = await findUser(tx, userId)
      if (patientPseudonym !== undefined) {
        if (role !== 'patient' || user.organizationId === null) {
          throw new WardError('ERR_INPUT_INVALID', 'only the patient role links a patient', {
            details: { field: 'patient' },
          })
        }
        await findPatientByPseudonym(tx, user.organizationId, patientPseudonym)
        user = await linkPatient(tx, user, patientPseudonym, this.#clock())
      }
      if (await grantRole(tx, user, role, this.#clock())) {
        await this.#audit(tx, user, context, {
          ...userEvent('user.role.grant', 'U', user.id, { role }),
          ...(role === 'patient' && user.patientPseudonym !== null
            ? {
                entity: [
                  {
                    type: 'user',
                    what: user.id,
                    patient: user.patientPseudonym,
                    detail: { role },
                  },
                ],
              }
            : {}),
        })
      }
    })
  }

  /** Revokes `role` from `userId`. Audited as `user.role.revoke`. */
  async revokeRole(context: OperationContext, userId: string, role: Role): Promise<void> {
    await this.#ward.store.transaction(async (tx) => {
      const user = await findUser(tx, userId)
      if (await revokeRole(tx, user, role)) {
        await this.#audit(tx, user, context, userEvent('user.role.revoke', 'U', user.id, { role }))
      }
    })
  }

  /** Disables `userId`, ending their sessions and API tokens. Audited as `user.disable`. */
  async disableUser(context: OperationContext, userId: string): Promise<void> {
    await this.#ward.store.transaction(async (tx) => {
      const user = await findUser(tx, userId)
      await disableUser(tx, user, this.#clock())
      await this.#audit(tx, user, context, userEvent('user.disable', 'U', user.id))
    })
  }

  /** The user with id `userId`, and their grants. */
  async findUser(userId: string): Promise<{ user: User; grants: RoleGrant[] }> {
    const db = this.#ward.store.db
    const user = await findUser(db, userId)
    return { user, grants: await listGrants(db, userId) }
  }

  // ---- passwords and sign-in ----

  /**
   * Sets the password of the person a one-time setup token belongs to, spending the token.
   * The password is checked against Ward's rules first, so a refused one leaves the token
   * usable. Ends any session the person had and revokes their API tokens: a reissued setup
   * token is how an account is recovered, and nothing issued before it may outlive it.
   * Audited as `user.password.set`, with `api-token.revoke-all` when tokens were revoked.
   */
  async completeSetup(caller: Caller, setupToken: string, password: string): Promise<void> {
    const now = this.#clock()
    const preview = await this.#ward.store.transaction(async (tx) => {
      const user = await redeemSetupToken(tx, setupToken, now)
      // Roll back the redemption if the password is refused: the token stays usable.
      checkNewPassword(password, { loginName: user.loginName })
      return user
    })
    const passwordHash = await hashPassword(password)
    await this.#ward.store.transaction(async (tx) => {
      await tx
        .insertInto('user_passwords')
        .values({ user_id: preview.id, password_hash: passwordHash, updated_at: now.toISOString() })
        .onConflict((conflict) =>
          conflict
            .column('user_id')
            .doUpdateSet({ password_hash: passwordHash, updated_at: now.toISOString() }),
        )
        .execute()
      await endAllSessions(tx, preview.id, now)
      const context = this.#callerContext(caller, preview)
      await this.#revokeAllApiTokens(tx, preview, context, now)
      await this.#audit(tx, preview, context, userEvent('user.password.set', 'U', preview.id))
    })
  }

  /**
   * Checks a login name and password and starts a session at the stage the person must go on
   * from. Every refusal — unknown name, wrong password, disabled account, no password yet —
   * is the same `ERR_UNAUTHENTICATED` after the same Argon2id work; throttled attempts get
   * `ERR_RATE_LIMITED` alike for names that exist and names that do not.
   */
  async signIn(caller: Caller, loginText: unknown, password: unknown): Promise<SignInResult> {
    if (
      typeof password !== 'string' ||
      password.length === 0 ||
      password.length > 4 * maximumPasswordLength
    ) {
      throw new WardError('ERR_INPUT_INVALID', 'password must be a non-empty string', {
        details: { field: 'password' },
      })
    }
    let loginName: string | undefined
    try {
      loginName = foldLoginName(loginText)
    } catch {
      // A name that cannot exist is treated as an unknown one, not as a form error.
      loginName = undefined
    }
    const db = this.#ward.store.db
    const now = this.#clock()
    const attempt = {
      loginName: loginName ?? `invalid:${String(loginText).slice(0, 100)}`,
      address: caller.address,
    }
    const user = loginName === undefined ? undefined : await findUserByLoginName(db, loginName)

    try {
      await this.#ward.store.transaction((tx) => checkSignInThrottle(tx, attempt, user?.id, now))
    } catch (error) {
      if (isWardError(error, 'ERR_RATE_LIMITED')) {
        await this.#auditSignInFailure(caller, user, 'sign-in throttled')
      }
      throw error
    }

    const stored =
      user === undefined
        ? undefined
        : await db
            .selectFrom('user_passwords')
            .select('password_hash')
            .where('user_id', '=', user.id)
            .executeTakeFirst()
    const matches =
      stored === undefined
        ? await verifyAgainstNothing(password)
        : await verifyPassword(stored.password_hash, password)

    if (user === undefined || !matches || user.status !== 'active') {
      await this.#ward.store.transaction((tx) => recordSignInFailure(tx, attempt, now))
      await this.#auditSignInFailure(
        caller,
        user,
        user !== undefined && matches ? 'account disabled' : 'wrong login name or password',
      )
      throw signInFailed()
    }

    const rehash = stored !== undefined && needsRehash(stored.password_hash)
    const newHash = rehash ? await hashPassword(password) : undefined
    return this.#ward.store.transaction(async (tx) => {
      await recordSignInSuccess(tx, attempt, user.id, now)
      if (newHash !== undefined) {
        await tx
          .updateTable('user_passwords')
          .set({ password_hash: newHash, updated_at: now.toISOString() })
          .where('user_id', '=', user.id)
          .execute()
      }
      const grants = await listGrants(tx, user.id)
      const factors = await this.#factorsOf(tx, user.id)
      const stage: SessionStage =
        factors.length > 0
          ? 'second-factor'
          : this.#mfaRequired && isPrivileged(grants)
            ? 'mfa-enrollment'
            : 'complete'
      const issued = await startSession(
        tx,
        { userId: user.id, stage, mfaVerified: false },
        this.limits,
        now,
      )
      await this.#audit(tx, user, this.#callerContext(caller, user), {
        type: auditEventTypes.userAuthentication,
        operation: 'user.sign-in',
        action: 'E',
        entity: [
          { type: 'user', what: user.id, detail: { stage, factor: 'password' } },
          { type: 'session', what: issued.session.id },
        ],
      })
      return {
        token: issued.token,
        csrfToken: issued.csrfToken,
        stage,
        expiresAt: issued.session.expiresAt,
        secondFactors: stage === 'second-factor' ? [...factors, 'recovery-code' as const] : [],
      }
    })
  }

  /**
   * The session `token` opens, touched now, with the stage that applies to it; undefined
   * for a token that opens nothing (unknown, ended, idle too long, too old, user disabled).
   * `csrf` is checked when required: see `resumeSession`.
   */
  async resumeSession(
    token: string,
    csrf?: { readonly required: boolean; readonly token: string | undefined },
  ): Promise<SessionState | undefined> {
    return this.#ward.store.transaction(async (tx) => {
      const session = await resumeSession(tx, token, this.limits, this.#clock(), csrf)
      if (session === undefined) return undefined
      const user = await findUser(tx, session.userId)
      if (user.status !== 'active') return undefined
      const grants = await listGrants(tx, user.id)
      let stage = session.stage
      if (
        stage === 'complete' &&
        this.#mfaRequired &&
        isPrivileged(grants) &&
        !session.mfaVerified
      ) {
        // Granted a privileged role after signing in without MFA: enrollment first.
        stage = 'mfa-enrollment'
      }
      return { session, user, grants, stage, mfaVerified: session.mfaVerified }
    })
  }

  /** The principal a live API token acts as, narrowed to the token's scopes. */
  async resolveApiToken(token: string): Promise<Principal | undefined> {
    return this.#ward.store.transaction(async (tx) => {
      const record = await resolveApiToken(tx, token, this.#clock())
      if (record === undefined) return undefined
      const user = await findUser(tx, record.userId)
      if (user.status !== 'active') return undefined
      return principalOf(user, await listGrants(tx, user.id), {
        method: 'api-token',
        mfaVerified: false,
        credentialId: record.id,
        scopes: record.scopes,
      })
    })
  }

  /**
   * The principal of a session state: the person, once sign-in is complete; at stage
   * `mfa-enrollment`, the person marked `mfaEnrollmentPending`, whom the policy refuses
   * everything (`deny.mfa-required`, 403) until they enroll; undefined while the second factor
   * is still to be given, since sign-in is not finished (401).
   */
  principalOf(state: SessionState): Principal | undefined {
    if (state.stage === 'second-factor') return undefined
    return principalOf(state.user, state.grants, {
      method: 'session',
      mfaVerified: state.mfaVerified,
      credentialId: state.session.id,
      ...(state.stage === 'mfa-enrollment' ? { mfaEnrollmentPending: true } : {}),
    })
  }

  /** Ends the session. Audited as `user.sign-out`. */
  async signOut(caller: Caller, state: SessionState): Promise<void> {
    await this.#ward.store.transaction(async (tx) => {
      await endSession(tx, state.session.id, this.#clock())
      await this.#audit(tx, state.user, this.#callerContext(caller, state.user), {
        type: auditEventTypes.userAuthentication,
        operation: 'user.sign-out',
        action: 'E',
        entity: [{ type: 'session', what: state.session.id }],
      })
    })
  }

  /**
   * Ends every session of the person and revokes their API tokens. Audited as
   * `user.sign-out-everywhere`, with `api-token.revoke-all` when tokens were revoked.
   */
  async signOutEverywhere(caller: Caller, state: SessionState): Promise<number> {
    return this.#ward.store.transaction(async (tx) => {
      const now = this.#clock()
      const ended = await endAllSessions(tx, state.user.id, now)
      const context = this.#callerContext(caller, state.user)
      await this.#revokeAllApiTokens(tx, state.user, context, now)
      await this.#audit(tx, state.user, context, {
        type: auditEventTypes.userAuthentication,
        operation: 'user.sign-out-everywhere',
        action: 'E',
        entity: [{ type: 'user', what: state.user.id, detail: { sessions: ended } }],
      })
      return ended
    })
  }

  /**
   * Deletes what sign-in no longer needs: sessions and setup tokens a day past their end,
   * answered-or-expired WebAuthn challenges, and throttle counters whose window and block are
   * over. The audit log keeps the record of each; the scheduled `access-cleanup` job runs this.
   */
  async purgeExpired(): Promise<{ sessions: number; throttles: number }> {
    const now = this.#clock()
    const dayAgo = new Date(now.getTime() - 86_400_000).toISOString()
    const windowAgo = new Date(now.getTime() - signInThrottlePolicy.windowMs).toISOString()
    return this.#ward.store.transaction(async (tx) => {
      const sessions = await tx
        .deleteFrom('user_sessions')
        .where((eb) => eb.or([eb('ended_at', '<', dayAgo), eb('expires_at', '<', dayAgo)]))
        .executeTakeFirst()
      await tx
        .deleteFrom('user_webauthn_challenges')
        .where('expires_at', '<', now.toISOString())
        .execute()
      await tx
        .deleteFrom('user_setup_tokens')
        .where((eb) => eb.or([eb('used_at', '<', dayAgo), eb('expires_at', '<', dayAgo)]))
        .execute()
      const throttles = await tx
        .deleteFrom('sign_in_throttles')
        .where('window_start', '<', windowAgo)
        .where((eb) =>
          eb.or([eb('blocked_until', 'is', null), eb('blocked_until', '<', now.toISOString())]),
        )
        .executeTakeFirst()
      return {
        sessions: Number(sessions.numDeletedRows),
        throttles: Number(throttles.numDeletedRows),
      }
    })
  }

  // ---- second factors ----

  /** Starts TOTP enrollment (complete or enrollment-stage sessions). Audited. */
  async startTotpEnrollment(caller: Caller, state: SessionState): Promise<TotpEnrollment> {
    requireStage(state, ['complete', 'mfa-enrollment'])
    return this.#ward.store.transaction(async (tx) => {
      const enrollment = await startTotpEnrollment(
        tx,
        this.#ward.keys,
        { userId: state.user.id, loginName: state.user.loginName, issuer: `Ward ${this.party.id}` },
        this.#clock(),
      )
      await this.#audit(
        tx,
        state.user,
        this.#callerContext(caller, state.user),
        userEvent('user.mfa.totp.start', 'C', state.user.id, {
          credential: enrollment.credentialId,
        }),
      )
      return enrollment
    })
  }

  /**
   * Confirms TOTP enrollment with a first code; completes an enrollment-stage session. A
   * person who has a second factor already must give `proof` (see `FactorChangeProof`).
   */
  async confirmTotp(
    caller: Caller,
    state: SessionState,
    code: string,
    proof: FactorChangeProof = {},
  ): Promise<MfaEnrolled> {
    requireStage(state, ['complete', 'mfa-enrollment'])
    return this.#enrolled(caller, state, 'totp', proof, (tx, now) =>
      confirmTotp(tx, this.#ward.keys, state.user.id, code, now),
    )
  }

  /** Registration options for a new security key or passkey. */
  async startWebauthnRegistration(state: SessionState) {
    requireStage(state, ['complete', 'mfa-enrollment'])
    return this.#ward.store.transaction((tx) =>
      startWebauthnRegistration(tx, this.party, state.user, state.session.id, this.#clock()),
    )
  }

  /**
   * Verifies and stores a new key; completes an enrollment-stage session. Audited. A person
   * who has a second factor already must give `proof` (see `FactorChangeProof`).
   */
  async finishWebauthnRegistration(
    caller: Caller,
    state: SessionState,
    response: unknown,
    proof: FactorChangeProof = {},
  ): Promise<MfaEnrolled> {
    requireStage(state, ['complete', 'mfa-enrollment'])
    const challenge = await this.#takeChallenge(state, 'registration')
    return this.#enrolled(caller, state, 'webauthn', proof, (tx, now) =>
      finishWebauthnRegistration(tx, this.party, state.user.id, challenge, response, now),
    )
  }

  /**
   * Replaces the recovery codes of a fully signed-in person, on `proof` (see
   * `FactorChangeProof`; a recovery code given as proof is spent before the new ones are
   * made), and ends the person's other sessions. Audited.
   */
  async replaceRecoveryCodes(
    caller: Caller,
    state: SessionState,
    proof: FactorChangeProof = {},
  ): Promise<string[]> {
    requireStage(state, ['complete'])
    const now = this.#clock()
    const context = this.#callerContext(caller, state.user)
    if ((await this.#factorsOf(this.#ward.store.db, state.user.id)).length === 0) {
      throw new WardError('ERR_INPUT_INVALID', 'enroll an authenticator before recovery codes')
    }
    try {
      await this.#checkChangePassword(state, proof, now)
      return await this.#ward.store.transaction(async (tx) => {
        const factor = await this.#checkChangeSecondFactor(tx, state, proof, now)
        const codes = await replaceRecoveryCodes(tx, state.user.id, now)
        const ended = await endOtherSessions(tx, state.user.id, state.session.id, now)
        await this.#audit(
          tx,
          state.user,
          context,
          userEvent('user.mfa.recovery-codes.replace', 'U', state.user.id, {
            proof: `password ${factor}`,
            endedSessions: String(ended),
          }),
        )
        return codes
      })
    } catch (error) {
      await this.#changeRefused(error, state, context, 'user.mfa.recovery-codes.replace', now)
      throw error
    }
  }

  /** Completes a second-factor session with a TOTP code; answers the session's new tokens. */
  async verifyTotp(caller: Caller, state: SessionState, code: string): Promise<RotatedSession> {
    return this.#secondFactor(caller, state, 'totp', (tx, now) =>
      verifyTotp(tx, this.#ward.keys, state.user.id, code, now),
    )
  }

  /** Authentication options for a second-factor session's keys. */
  async startWebauthnAuthentication(state: SessionState) {
    requireStage(state, ['second-factor'])
    return this.#ward.store.transaction((tx) =>
      startWebauthnAuthentication(tx, this.party, state.user.id, state.session.id, this.#clock()),
    )
  }

  /** Completes a second-factor session with a security key; answers its new tokens. */
  async finishWebauthnAuthentication(
    caller: Caller,
    state: SessionState,
    response: unknown,
  ): Promise<RotatedSession> {
    requireStage(state, ['second-factor'])
    const challenge = await this.#takeChallenge(state, 'authentication')
    return this.#secondFactor(caller, state, 'webauthn', (tx, now) =>
      finishWebauthnAuthentication(tx, this.party, state.user.id, challenge, response, now),
    )
  }

  /**
   * Completes a second-factor session with a recovery code, spending it; answers the
   * session's new tokens and how many codes are left.
   */
  async redeemRecoveryCode(
    caller: Caller,
    state: SessionState,
    code: string,
  ): Promise<RotatedSession & { remaining: number }> {
    let remaining = 0
    const rotated = await this.#secondFactor(caller, state, 'recovery-code', async (tx, now) => {
      remaining = (await redeemRecoveryCode(tx, state.user.id, code, now)).remaining
      return 'recovery-code'
    })
    return { ...rotated, remaining }
  }

  // ---- API tokens ----

  /**
   * Issues an API token for the signed-in person. Audited as `api-token.issue`. Refused to a
   * person holding a privileged role while MFA is required: the policy allows such a role
   * only what a second factor was passed for, which a token never is, so the token could do
   * nothing.
   */
  async issueApiToken(
    caller: Caller,
    state: SessionState,
    input: { readonly label: string; readonly scopes: readonly string[]; readonly days: number },
  ): Promise<{ token: string; record: ApiTokenRecord }> {
    requireStage(state, ['complete'])
    if (this.#mfaRequired && isPrivileged(state.grants)) {
      throw new WardError(
        'ERR_ACCESS_DENIED',
        'API tokens are not issued to a person holding a privileged role: the role needs a ' +
          'second factor (MFA), which a token never passes, so the token could do nothing',
        { details: { rule: 'deny.mfa-required' } },
      )
    }
    const maxDays = this.#ward.config.auth.apiTokenMaxDays
    if (!Number.isInteger(input.days) || input.days < 1 || input.days > maxDays) {
      throw new WardError('ERR_INPUT_INVALID', `days must be a whole number from 1 to ${maxDays}`, {
        details: { field: 'days' },
      })
    }
    return this.#ward.store.transaction(async (tx) => {
      const issued = await issueApiToken(
        tx,
        {
          userId: state.user.id,
          label: input.label,
          scopes: input.scopes,
          ttlMs: input.days * 86_400_000,
        },
        this.#clock(),
      )
      await this.#audit(tx, state.user, this.#callerContext(caller, state.user), {
        type: auditEventTypes.securityAlert,
        operation: 'api-token.issue',
        action: 'C',
        entity: [
          {
            type: 'api-token',
            what: issued.record.id,
            detail: { scopes: issued.record.scopes.join(' '), expires: issued.record.expiresAt },
          },
        ],
      })
      return issued
    })
  }

  /** The signed-in person's live API tokens. */
  async listApiTokens(state: SessionState): Promise<ApiTokenRecord[]> {
    requireStage(state, ['complete'])
    return listApiTokens(this.#ward.store.db, state.user.id, this.#clock())
  }

  /** Revokes one of the person's API tokens. Audited as `api-token.revoke`. */
  async revokeApiToken(caller: Caller, state: SessionState, tokenId: string): Promise<void> {
    requireStage(state, ['complete'])
    await this.#ward.store.transaction(async (tx) => {
      await revokeApiToken(tx, state.user.id, tokenId, this.#clock())
      await this.#audit(tx, state.user, this.#callerContext(caller, state.user), {
        type: auditEventTypes.securityAlert,
        operation: 'api-token.revoke',
        action: 'D',
        entity: [{ type: 'api-token', what: tokenId }],
      })
    })
  }

  // ---- internals ----

  /** Revokes all of `user`'s API tokens; audited as `api-token.revoke-all` when there were any. */
  async #revokeAllApiTokens(
    tx: Transaction,
    user: User,
    context: OperationContext,
    now: Date,
  ): Promise<void> {
    const revoked = await revokeAllApiTokens(tx, user.id, now)
    if (revoked === 0) return
    await this.#audit(tx, user, context, {
      type: auditEventTypes.securityAlert,
      operation: 'api-token.revoke-all',
      action: 'D',
      entity: [{ type: 'user', what: user.id, detail: { tokens: String(revoked) } }],
    })
  }

  async #factorsOf(tx: Transaction, userId: string): Promise<('totp' | 'webauthn')[]> {
    const factors: ('totp' | 'webauthn')[] = []
    if (await hasTotp(tx, userId)) factors.push('totp')
    if (await hasWebauthn(tx, userId)) factors.push('webauthn')
    return factors
  }

  async #takeChallenge(state: SessionState, purpose: ChallengePurpose): Promise<string> {
    const challenge = await this.#ward.store.transaction((tx) =>
      takeWebauthnChallenge(tx, state.session.id, purpose, this.#clock()),
    )
    if (challenge === undefined) throw webauthnRefused()
    return challenge
  }

  /**
   * Records an enrolled factor; a first factor completes the session and brings recovery
   * codes. Adding or replacing a factor beside an existing one needs `proof` and ends the
   * person's other sessions.
   */
  async #enrolled(
    caller: Caller,
    state: SessionState,
    factor: 'totp' | 'webauthn',
    proof: FactorChangeProof,
    enroll: (tx: Transaction, now: Date) => Promise<string>,
  ): Promise<MfaEnrolled> {
    const now = this.#clock()
    const context = this.#callerContext(caller, state.user)
    const operation = `user.mfa.${factor}.enroll`
    try {
      const hadFactorBefore = (await this.#factorsOf(this.#ward.store.db, state.user.id)).length > 0
      if (hadFactorBefore) await this.#checkChangePassword(state, proof, now)
      return await this.#ward.store.transaction(async (tx) => {
        const hadFactor = (await this.#factorsOf(tx, state.user.id)).length > 0
        if (hadFactor && !hadFactorBefore) throw proofMissing('password')
        const proven = hadFactor
          ? await this.#checkChangeSecondFactor(tx, state, proof, now)
          : undefined
        const credentialId = await enroll(tx, now)
        let recoveryCodes: string[] | undefined
        if (!hadFactor) recoveryCodes = await replaceRecoveryCodes(tx, state.user.id, now)
        let rotated: RotatedSession | undefined
        if (state.stage === 'mfa-enrollment') {
          await advanceSession(tx, state.session.id, 'complete', true)
          rotated = await rotateSessionTokens(tx, state.session.id)
        }
        const ended =
          proven === undefined
            ? undefined
            : await endOtherSessions(tx, state.user.id, state.session.id, now)
        await this.#audit(
          tx,
          state.user,
          context,
          userEvent(operation, 'C', state.user.id, {
            credential: credentialId,
            ...(proven === undefined
              ? {}
              : { proof: `password ${proven}`, endedSessions: String(ended) }),
          }),
        )
        return {
          ...(recoveryCodes === undefined ? {} : { recoveryCodes }),
          ...(rotated === undefined ? {} : { session: rotated }),
        }
      })
    } catch (error) {
      await this.#changeRefused(error, state, context, operation, now)
      throw error
    }
  }

  /**
   * Checks the password of a `FactorChangeProof` (outside a transaction: Argon2id is slow).
   * Counted against the person's second-factor throttle, so a stolen session cannot guess.
   */
  async #checkChangePassword(state: SessionState, proof: FactorChangeProof, now: Date) {
    if (proof.password === undefined) throw proofMissing('password')
    await this.#ward.store.transaction((tx) => checkSecondFactorThrottle(tx, state.user.id, now))
    const stored = await this.#ward.store.db
      .selectFrom('user_passwords')
      .select('password_hash')
      .where('user_id', '=', state.user.id)
      .executeTakeFirst()
    const matches =
      stored === undefined
        ? await verifyAgainstNothing(proof.password)
        : await verifyPassword(stored.password_hash, proof.password)
    if (!matches) throw changeProofRefused()
  }

  /** Checks the second factor of a `FactorChangeProof`, spending a recovery code given. */
  async #checkChangeSecondFactor(
    tx: Transaction,
    state: SessionState,
    proof: FactorChangeProof,
    now: Date,
  ): Promise<'totp' | 'recovery-code'> {
    if (proof.totpCode !== undefined) {
      try {
        await verifyTotp(tx, this.#ward.keys, state.user.id, proof.totpCode, now)
      } catch (error) {
        if (isWardError(error, 'ERR_UNAUTHENTICATED')) throw changeProofRefused()
        throw error
      }
      return 'totp'
    }
    if (proof.recoveryCode !== undefined) {
      try {
        await redeemRecoveryCode(tx, state.user.id, proof.recoveryCode, now)
      } catch (error) {
        if (isWardError(error, 'ERR_UNAUTHENTICATED')) throw changeProofRefused()
        throw error
      }
      return 'recovery-code'
    }
    throw proofMissing('totpCode')
  }

  /** Audits and counts a refused factor change; other errors pass untouched. */
  async #changeRefused(
    error: unknown,
    state: SessionState,
    context: OperationContext,
    operation: string,
    now: Date,
  ): Promise<void> {
    if (!isWardError(error, 'ERR_UNAUTHENTICATED')) return
    await this.#ward.store.transaction(async (tx) => {
      await recordSecondFactorThrottleFailure(tx, state.user.id, now)
      await this.#audit(tx, state.user, context, {
        ...userEvent(operation, 'C', state.user.id),
        outcome: '4',
        outcomeDescription: 'enrollment proof refused',
      })
    })
  }

  /**
   * Runs one second-factor check for a session at `second-factor`. Success completes the
   * session and rotates its tokens; a refusal is audited and counted, and the session ends
   * after a few.
   */
  async #secondFactor(
    caller: Caller,
    state: SessionState,
    factor: 'totp' | 'webauthn' | 'recovery-code',
    check: (tx: Transaction, now: Date) => Promise<string>,
  ): Promise<RotatedSession> {
    requireStage(state, ['second-factor'])
    const now = this.#clock()
    const context = this.#callerContext(caller, state.user)
    await this.#ward.store.transaction((tx) => checkSecondFactorThrottle(tx, state.user.id, now))
    try {
      return await this.#ward.store.transaction(async (tx) => {
        const credentialId = await check(tx, now)
        await advanceSession(tx, state.session.id, 'complete', true)
        const rotated = await rotateSessionTokens(tx, state.session.id)
        await this.#audit(tx, state.user, context, {
          type: auditEventTypes.userAuthentication,
          operation: 'user.second-factor',
          action: 'E',
          entity: [
            { type: 'user', what: state.user.id, detail: { factor, credential: credentialId } },
            { type: 'session', what: state.session.id },
          ],
        })
        return rotated
      })
    } catch (error) {
      if (!isWardError(error, 'ERR_UNAUTHENTICATED')) throw error
      await this.#ward.store.transaction(async (tx) => {
        const ended = await recordSecondFactorFailure(tx, state.session.id, now)
        await recordSecondFactorThrottleFailure(tx, state.user.id, now)
        await this.#audit(tx, state.user, context, {
          type: auditEventTypes.userAuthentication,
          operation: 'user.second-factor',
          action: 'E',
          outcome: '4',
          outcomeDescription: ended
            ? 'second factor refused; session ended'
            : 'second factor refused',
          entity: [
            { type: 'user', what: state.user.id, detail: { factor } },
            { type: 'session', what: state.session.id },
          ],
        })
      })
      throw error
    }
  }

  async #auditSignInFailure(caller: Caller, user: User | undefined, reason: string): Promise<void> {
    await this.#ward.store.transaction(async (tx) => {
      const context = this.#callerContext(caller, user)
      const event: AuditEventInput = {
        type: auditEventTypes.userAuthentication,
        operation: 'user.sign-in',
        action: 'E',
        outcome: '4',
        outcomeDescription: reason,
        // An unknown name is not recorded at all: it may be someone's password typed in the
        // wrong field.
        entity: user === undefined ? [] : [{ type: 'user', what: user.id }],
      }
      if (user === undefined) await this.#ward.audit(tx, platformLogName, context, event)
      else await this.#audit(tx, user, context, event)
    })
  }

  /** Records `event` in the log of the user's organization, or the platform log. */
  async #audit(
    tx: Transaction,
    user: User,
    context: OperationContext,
    event: AuditEventInput,
  ): Promise<void> {
    if (user.organizationId === null) {
      await this.#ward.audit(tx, platformLogName, context, event)
      return
    }
    const organization = await findOrganizationById(tx, user.organizationId)
    await this.#ward.audit(
      tx,
      organization.slug,
      { ...context, organizationId: organization.id },
      event,
    )
  }

  /**
   * The context of a person's own step (sign-in, password, MFA, tokens), or of a sign-in
   * under a login name that names nobody (`user` undefined). The audit event records the
   * caller's address unless the person is a patient: see `recordedAddress`.
   */
  #callerContext(caller: Caller, user: User | undefined): OperationContext {
    return {
      actor: {
        type: 'user',
        id: user?.id ?? 'unknown-account',
        address: caller.address,
        ...(user !== undefined && isPatientPerson(user) ? { patient: true } : {}),
      },
      requestId: caller.requestId,
      purposeOfUse: 'HSYSADMIN',
      policyRule: 'authentication',
    }
  }
}

function proofMissing(field: 'password' | 'totpCode'): WardError {
  return new WardError(
    'ERR_INPUT_INVALID',
    'changing a second factor or recovery codes needs the current password and a current ' +
      'second factor in the same request: password, and totpCode or recoveryCode',
    { details: { field } },
  )
}

function changeProofRefused(): WardError {
  return new WardError('ERR_UNAUTHENTICATED', 'the password or second factor given is wrong')
}

function isPrivileged(grants: readonly RoleGrant[]): boolean {
  return grants.some((grant) => privilegedRoles.has(grant.role))
}

function requireStage(state: SessionState, allowed: readonly SessionStage[]): void {
  if (!allowed.includes(state.stage)) {
    const hint =
      state.stage === 'mfa-enrollment'
        ? 'enroll a second factor first (TOTP or a security key)'
        : state.stage === 'second-factor'
          ? 'give your second factor first'
          : 'this step is only for signing in'
    throw new WardError('ERR_ACCESS_DENIED', `not allowed at this stage of sign-in: ${hint}`, {
      details: { stage: state.stage },
    })
  }
}

function principalOf(
  user: User,
  grants: readonly RoleGrant[],
  credential: {
    method: Principal['method']
    mfaVerified: boolean
    credentialId: string
    scopes?: readonly string[]
    mfaEnrollmentPending?: boolean
  },
): Principal {
  return {
    userId: user.id,
    organizationId: user.organizationId,
    grants,
    ...(user.patientPseudonym === null ? {} : { patientPseudonym: user.patientPseudonym }),
    method: credential.method,
    mfaVerified: credential.mfaVerified,
    ...(credential.mfaEnrollmentPending === true ? { mfaEnrollmentPending: true } : {}),
    ...(credential.scopes === undefined ? {} : { scopes: credential.scopes }),
    credentialId: credential.credentialId,
  }
}

function userEvent(
  operation: string,
  action: AuditEventInput['action'],
  userId: string,
  detail?: Record<string, string>,
): AuditEventInput {
  return {
    type: auditEventTypes.applicationActivity,
    operation,
    action,
    entity: [{ type: 'user', what: userId, ...(detail === undefined ? {} : { detail }) }],
  }
}
