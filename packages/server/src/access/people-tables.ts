/**
 * The people side of the access domain's tables, as Kysely sees them; see `store/schema.ts`
 * for the conventions. Secrets are never stored in clear: passwords as Argon2id hashes,
 * session, API and setup tokens and recovery codes as SHA-256 digests, TOTP secrets wrapped
 * under the master key.
 */
export interface AccessPeopleTables {
  users: UserTable
  user_role_grants: UserRoleGrantTable
  user_passwords: UserPasswordTable
  user_setup_tokens: UserSetupTokenTable
  user_totp_credentials: UserTotpCredentialTable
  user_webauthn_credentials: UserWebauthnCredentialTable
  user_webauthn_challenges: UserWebauthnChallengeTable
  user_recovery_codes: UserRecoveryCodeTable
  user_sessions: UserSessionTable
  user_api_tokens: UserApiTokenTable
  sign_in_throttles: SignInThrottleTable
  sign_in_known_addresses: SignInKnownAddressTable
}

/** A person who signs in. `login_name` is stored case-folded and unique across Ward. */
export interface UserTable {
  id: string
  organization_id: string | null
  login_name: string
  status: string
  /** For a person holding `patient`: the pseudonym of the patient they are. */
  patient_pseudonym: string | null
  created_at: string
  updated_at: string
}

/** One role held by one user in one organization (null for `platform-operator`). */
export interface UserRoleGrantTable {
  id: string
  user_id: string
  organization_id: string | null
  role: string
  created_at: string
}

/** The user's password as an Argon2id PHC string. */
export interface UserPasswordTable {
  user_id: string
  password_hash: string
  updated_at: string
}

/** A one-time token that lets a new user choose their password. */
export interface UserSetupTokenTable {
  id: string
  user_id: string
  token_hash: string
  expires_at: string
  used_at: string | null
  created_at: string
}

/** A TOTP authenticator: the wrapped secret and the last time step accepted from it. */
export interface UserTotpCredentialTable {
  id: string
  user_id: string
  wrapped_secret: Uint8Array
  confirmed_at: string | null
  last_step: number | null
  created_at: string
}

/** A WebAuthn credential (passkey or security key) with its public key and sign counter. */
export interface UserWebauthnCredentialTable {
  id: string
  user_id: string
  credential_id: string
  public_key: Uint8Array
  sign_count: number
  transports: string
  created_at: string
  last_used_at: string | null
}

/** A WebAuthn challenge Ward issued and has not yet seen answered. */
export interface UserWebauthnChallengeTable {
  id: string
  session_id: string
  purpose: string
  challenge: string
  expires_at: string
}

/** One recovery code, as its SHA-256; `used_at` set once it has been spent. */
export interface UserRecoveryCodeTable {
  id: string
  user_id: string
  code_hash: string
  used_at: string | null
  created_at: string
}

/**
 * A sign-in session. `stage` is `second-factor` (password accepted, second factor awaited),
 * `mfa-enrollment` (a privileged user without MFA: may only enroll) or `complete`.
 */
export interface UserSessionTable {
  id: string
  user_id: string
  token_hash: string
  csrf_hash: string
  stage: string
  mfa_verified: number
  /** Wrong second-factor answers on this session; past a few the session ends. */
  second_factor_failures: number
  created_at: string
  last_seen_at: string
  expires_at: string
  ended_at: string | null
}

/** A scoped API token for an integration, issued by a user and acting as that user. */
export interface UserApiTokenTable {
  id: string
  user_id: string
  label: string
  token_hash: string
  scopes: string
  created_at: string
  expires_at: string
  revoked_at: string | null
  last_used_at: string | null
}

/**
 * Failed sign-ins counted per key: `kind` is `pair` (login name and address), `account`
 * (login name) or `address`. Keys are SHA-256 digests, so no typed login name is stored.
 */
export interface SignInThrottleTable {
  kind: string
  key_hash: string
  failures: number
  window_start: string
  blocked_until: string | null
}

/** Addresses a user has signed in from, which the per-account delay does not slow. */
export interface SignInKnownAddressTable {
  user_id: string
  address_hash: string
  last_success_at: string
}
