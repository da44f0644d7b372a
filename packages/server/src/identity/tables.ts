/** The identity domain's tables, as Kysely sees them; see `store/schema.ts` for conventions. */
export interface IdentityTables {
  certificate_authorities: CertificateAuthorityTable
  device_certificates: DeviceCertificateTable
  manufacturer_authorities: ManufacturerAuthorityTable
}

/**
 * One of an organization's own certificate authorities: its `root` or its online `issuing` CA
 * (`role`). The private key is stored wrapped by the key provider named in `provider`; both are
 * null once the key is moved offline. `crl_number` is the number of the newest CRL signed;
 * `crl_pem` and `crl_next_update` keep the newest CRL of a CA whose CRLs are not signed on
 * every request (the root's).
 */
export interface CertificateAuthorityTable {
  id: string
  organization_id: string
  role: string
  issuer_id: string | null
  subject: string
  serial_number: string
  subject_key_identifier: string
  fingerprint_sha256: string
  certificate_pem: string
  not_before: string
  not_after: string
  wrapped_private_key: Uint8Array | null
  provider: string | null
  crl_number: number
  crl_pem: string | null
  crl_next_update: string | null
  created_at: string
}

/**
 * One device certificate Ward issued. `serial_number` is canonical lowercase hex; the
 * fingerprints are lowercase hex SHA-256 of the certificate's DER and of its public key's
 * SubjectPublicKeyInfo. `revoked_at` and `revocation_reason` are set together: a reason of
 * `certificateHold` is a suspension that can be lifted, any other is final.
 */
export interface DeviceCertificateTable {
  organization_id: string
  serial_number: string
  issuer_id: string
  device_id: string
  device_serial: string
  fingerprint_sha256: string
  public_key_sha256: string
  not_before: string
  not_after: string
  certificate_pem: string
  issued_at: string
  revoked_at: string | null
  revocation_reason: string | null
}

/**
 * A manufacturer's CA an organization trusts for factory-provisioned device identities, and
 * the manufacturer's newest CRL for it (`crl_der`, DER; `crl_number` in decimal; the times
 * ISO 8601), all null until one is uploaded. `mac` authenticates every other column, bound to
 * the organization and id, under the organization's manufacturer-authority key (see
 * `manufacturerAuthorityCode`); a row without a matching one is never trusted.
 */
export interface ManufacturerAuthorityTable {
  id: string
  organization_id: string
  name: string
  subject: string
  subject_key_identifier: string | null
  fingerprint_sha256: string
  certificate_pem: string
  not_before: string
  not_after: string
  created_at: string
  crl_der: Uint8Array | null
  crl_number: string | null
  crl_this_update: string | null
  crl_next_update: string | null
  crl_uploaded_at: string | null
  mac: Uint8Array | null
}
