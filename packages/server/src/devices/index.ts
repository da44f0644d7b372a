export {
  assignDevice,
  createDevice,
  createDeviceModel,
  createEnrollmentToken,
  deviceChangeMark,
  findDevice,
  findDeviceModel,
  listDeviceModels,
  listDevices,
  redeemEnrollmentToken,
  setDeviceStatus,
  type Device,
  type DeviceModel,
  type DeviceStatus,
} from './registry.js'
export { standardDeviceModels } from './standard-models.js'
export { listPatientDevices } from './patient-devices.js'
