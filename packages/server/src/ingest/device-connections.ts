import type { TLSSocket } from 'node:tls'

/** The device at the other end of an open connection, as its certificate identified it. */
export interface ConnectedDevice {
  readonly organizationId: string
  readonly deviceId: string
  /** Serial number of the certificate the connection was opened with. */
  readonly serialNumber: string
  /** That certificate's DER bytes, to check it again when trust changes. */
  readonly certificate: Uint8Array
  readonly notAfter: string
}

/** The open connections of one device that share one certificate. */
export interface CertificateConnections {
  readonly device: ConnectedDevice
  readonly sockets: readonly TLSSocket[]
}

// setTimeout holds at most a signed 32-bit count of milliseconds.
const longestTimerMs = 2 ** 31 - 1

/**
 * The device endpoint's open connections, by organization and device, so that a device that
 * is revoked or suspended loses every connection at once. A connection leaves the registry when
 * it closes, and is cut when its certificate expires.
 */
export class DeviceConnections {
  readonly #organizations = new Map<string, Map<string, Map<TLSSocket, ConnectedDevice>>>()
  readonly #tracked = new WeakSet<TLSSocket>()

  /** Records `socket` as a connection of `device`; does nothing for one already recorded. */
  track(socket: TLSSocket, device: ConnectedDevice): void {
    if (this.#tracked.has(socket) || socket.destroyed) return
    this.#tracked.add(socket)

    let devices = this.#organizations.get(device.organizationId)
    if (devices === undefined) {
      devices = new Map()
      this.#organizations.set(device.organizationId, devices)
    }
    let sockets = devices.get(device.deviceId)
    if (sockets === undefined) {
      sockets = new Map()
      devices.set(device.deviceId, sockets)
    }
    sockets.set(socket, device)

    const untilExpiry = Date.parse(device.notAfter) - Date.now()
    const expiry =
      untilExpiry < longestTimerMs
        ? setTimeout(() => socket.destroy(), Math.max(0, untilExpiry)).unref()
        : undefined
    socket.once('close', () => {
      clearTimeout(expiry)
      sockets.delete(socket)
      if (sockets.size === 0 && devices.get(device.deviceId) === sockets) {
        devices.delete(device.deviceId)
      }
      if (devices.size === 0 && this.#organizations.get(device.organizationId) === devices) {
        this.#organizations.delete(device.organizationId)
      }
    })
  }

  /**
   * The open connections of the organization, or of one of its devices, grouped by the
   * certificate they were opened with: each group stands or falls with one check.
   */
  byCertificate(organizationId: string, deviceId?: string): CertificateConnections[] {
    const devices = this.#organizations.get(organizationId)
    if (devices === undefined) return []
    const chosen = deviceId === undefined ? [...devices.values()] : [devices.get(deviceId)]
    const groups = new Map<string, { device: ConnectedDevice; sockets: TLSSocket[] }>()
    for (const sockets of chosen) {
      for (const [socket, device] of sockets ?? []) {
        if (socket.destroyed) continue
        const key = `${device.deviceId} ${device.serialNumber}`
        const group = groups.get(key) ?? { device, sockets: [] }
        group.sockets.push(socket)
        groups.set(key, group)
      }
    }
    return [...groups.values()]
  }

  /** How many connections are open. */
  get size(): number {
    let count = 0
    for (const devices of this.#organizations.values()) {
      for (const sockets of devices.values()) count += sockets.size
    }
    return count
  }
}
