import { WardError } from '@ward/core'

import { pemBlocks, publicKeyFacts, x509, x509Crypto } from './x509.js'

/** What Ward takes from a certificate signing request: the key, and nothing else. */
export interface CheckedRequest {
  /** The requested key, an ECDSA P-256 key. */
  readonly publicKey: x509.PublicKey
}

const ecdsaSignatureHashes = new Set(['SHA-256', 'SHA-384', 'SHA-512'])

/**
 * Reads a PEM PKCS#10 request and checks what makes it usable: one `CERTIFICATE REQUEST` block,
 * an ECDSA P-256 key (`ERR_KEY_ALGORITHM_UNSUPPORTED` otherwise), and a self-signature, ECDSA
 * with SHA-2, that verifies under that key (`ERR_CSR_SIGNATURE_INVALID` otherwise), which
 * proves the requester holds the private key. Anything unreadable is `ERR_CSR_INVALID`. The
 * requested subject and extensions are not returned: Ward decides every field of the
 * certificate itself.
 */
export async function checkCertificateRequest(csrPem: string): Promise<CheckedRequest> {
  const der = certificateRequestDer(csrPem)
  let request: x509.Pkcs10CertificateRequest
  let publicKey: x509.PublicKey
  let algorithm: { name?: string; hash?: string | { name: string } }
  try {
    request = new x509.Pkcs10CertificateRequest(der)
    publicKey = request.publicKey
    algorithm = request.signatureAlgorithm
  } catch (cause) {
    throw new WardError('ERR_CSR_INVALID', 'csr is not a PKCS#10 certificate request', {
      cause,
      details: { field: 'csr' },
    })
  }

  const facts = publicKeyFacts(publicKey.rawData)
  if (facts?.type !== 'ec' || facts.namedCurve !== 'prime256v1') {
    const found =
      facts === undefined ? 'an unreadable key' : `${facts.type} ${facts.namedCurve ?? ''}`.trim()
    throw new WardError(
      'ERR_KEY_ALGORITHM_UNSUPPORTED',
      `csr key must be ECDSA P-256, not ${found}`,
      { details: { field: 'csr' } },
    )
  }

  const hash = typeof algorithm.hash === 'string' ? algorithm.hash : algorithm.hash?.name
  if (algorithm.name !== 'ECDSA' || hash === undefined || !ecdsaSignatureHashes.has(hash)) {
    throw new WardError(
      'ERR_CSR_SIGNATURE_INVALID',
      'csr must be signed with ECDSA and SHA-256, SHA-384 or SHA-512',
      { details: { field: 'csr' } },
    )
  }
  let verified: boolean
  try {
    verified = await request.verify(x509Crypto)
  } catch (cause) {
    throw new WardError('ERR_CSR_SIGNATURE_INVALID', 'csr signature cannot be checked', {
      cause,
      details: { field: 'csr' },
    })
  }
  if (!verified) {
    throw new WardError('ERR_CSR_SIGNATURE_INVALID', 'csr signature does not verify', {
      details: { field: 'csr' },
    })
  }
  return { publicKey }
}

/**
 * The DER bytes of a PEM certificate request, the bytes a factory identity signs at
 * enrollment. `ERR_CSR_INVALID` unless `csrPem` is exactly one `CERTIFICATE REQUEST` block.
 */
export function certificateRequestDer(csrPem: string): Uint8Array {
  const [der] = pemBlocks(csrPem, 'CERTIFICATE REQUEST', {
    field: 'csr',
    code: 'ERR_CSR_INVALID',
    maxBlocks: 1,
  })
  return der as Uint8Array
}
