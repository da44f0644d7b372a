// The identity domain's only door: organizations' device CAs, device certificates, revocation,
// manufacturer CAs, and what the device endpoint trusts.
export {
  authorityLifetimes,
  createOrganizationAuthorities,
  findOrganizationAuthorities,
  type AuthorityRole,
  type CertificateAuthority,
  type OrganizationAuthorities,
} from './authorities.js'
export { certificateRequestDer } from './csr.js'
export { revocationReasons, type CertificateRevocationList, type RevocationReason } from './crl.js'
export {
  issueDeviceCertificate,
  listDeviceCertificates,
  type CertificateStatus,
  type DeviceCertificate,
  type DeviceCertificateRequest,
  type IssuedDeviceCertificate,
} from './device-certificates.js'
export {
  deviceTrust,
  identifyDevice,
  type DeviceTrust,
  type IdentifiedDevice,
} from './device-trust.js'
export { deviceUri, parseDeviceUri, type DeviceName } from './device-uri.js'
export {
  listManufacturerAuthorities,
  manufacturerAuthorityCode,
  registerManufacturerAuthority,
  uploadManufacturerCrl,
  verifyFactoryIdentity,
  type FactoryIdentity,
  type FactoryRevocationCheck,
  type ManufacturerAuthority,
  type ManufacturerCrlFacts,
  type ManufacturerCrlUpload,
} from './manufacturers.js'
export { maxManufacturerCrlBytes } from './manufacturer-crl.js'
export {
  issuingCrl,
  issuingCrlLifetimeDays,
  reinstateDeviceCertificates,
  revokeCertificate,
  revocationMark,
  revokeDeviceCertificates,
  supersedeDeviceCertificates,
  suspendDeviceCertificates,
} from './revocation.js'
