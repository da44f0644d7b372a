export {
  checkOrganizationInput,
  findOrganization,
  insertOrganization,
  listOrganizations,
  slugOfServerName,
  type Organization,
} from './organizations.js'
