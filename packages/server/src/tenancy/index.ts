export {
  checkOrganizationInput,
  findOrganization,
  insertOrganization,
  listOrganizations,
  type Organization,
} from './organizations.js'
