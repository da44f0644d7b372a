export {
  checkOrganizationInput,
  findOrganization,
  findOrganizationById,
  insertOrganization,
  listOrganizations,
  slugOfServerName,
  type Organization,
} from './organizations.js'
