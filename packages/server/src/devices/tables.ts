/** The devices domain's tables, as Kysely sees them; see `store/schema.ts` for conventions. */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface DevicesTables {}
