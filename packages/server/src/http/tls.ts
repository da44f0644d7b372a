import { webcrypto } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'

// @peculiar/x509 resolves its algorithms through tsyringe, which needs the metadata polyfill.
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'

/**
 * TLS 1.2 suites Ward accepts when configured down to TLS 1.2: ECDHE key exchange with AEAD
 * ciphers only, so every session has forward secrecy. TLS 1.3 suites are all acceptable.
 */
export const tls12CipherSuites = [
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
].join(':')

/** TLS 1.3 suites, strongest first. */
export const tls13CipherSuites = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
].join(':')

/**
 * Creates a self-signed ECDSA P-256 certificate for the API so that a fresh Ward speaks HTTPS
 * from its first start. It names `hostName`, every `<organization>.<hostName>` (the names
 * devices connect by), `localhost`, 127.0.0.1 and ::1, allows server authentication only and
 * is valid for 397 days. Production deployments configure a
 * certificate from their own CA instead (`WARD_HTTP_CERT_FILE`, `WARD_HTTP_KEY_FILE`).
 */
export async function createSelfSignedServerCertificate(
  hostName: string,
  certFile: string,
  keyFile: string,
): Promise<void> {
  const crypto = webcrypto as unknown as NonNullable<
    Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[1]
  >
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }
  const keys = await crypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])
  const now = new Date()
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: Buffer.from(crypto.getRandomValues(new Uint8Array(16)))
        .toString('hex')
        .replace(/^[89a-f]/, '1'),
      name: `CN=${hostName}, O=Ward`,
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + 397 * 24 * 3600 * 1000),
      signingAlgorithm: algorithm,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension(['1.3.6.1.5.5.7.3.1']),
        new x509.SubjectAlternativeNameExtension([
          { type: 'dns', value: hostName },
          { type: 'dns', value: `*.${hostName}` },
          { type: 'dns', value: 'localhost' },
          { type: 'ip', value: '127.0.0.1' },
          { type: 'ip', value: '::1' },
        ]),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  )
  const pkcs8 = await crypto.subtle.exportKey('pkcs8', keys.privateKey)

  mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 })
  writeFileSync(keyFile, x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'), {
    mode: 0o600,
    flag: 'wx',
  })
  writeFileSync(certFile, certificate.toString('pem') + '\n', { flag: 'wx' })
}
