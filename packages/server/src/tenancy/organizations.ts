import { randomUUID } from 'node:crypto'

import { WardError } from '@ward/core'

import type { Transaction } from '../store/index.js'

/** A customer of the Ward operator, usually a covered entity; Ward is its business associate. */
export interface Organization {
  readonly id: string
  /** Short, stable, URL-safe name; also the name of the organization's audit log. */
  readonly slug: string
  /** Display name. */
  readonly name: string
  readonly createdAt: string
}

const slugPattern = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/
const reservedSlugs = new Set(['platform', 'admin', 'api', 'audit', 'health', 'ward'])

/**
 * Checks an organization's slug and display name, throwing `ERR_INPUT_INVALID` that says what
 * is allowed.
 */
export function checkOrganizationInput(input: { slug: string; name: string }): void {
  if (!slugPattern.test(input.slug)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      'organization slug must be 1–63 lowercase letters, digits or inner hyphens',
      { details: { field: 'slug' } },
    )
  }
  if (reservedSlugs.has(input.slug)) {
    throw new WardError('ERR_INPUT_INVALID', `organization slug ${input.slug} is reserved`, {
      details: { field: 'slug' },
    })
  }
  const name = input.name.trim()
  if (name.length === 0 || name.length > 200 || hasControlCharacter(name)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      'organization name must be 1–200 characters without control characters',
      { details: { field: 'name' } },
    )
  }
}

function hasControlCharacter(text: string): boolean {
  return [...text].some((character) => {
    const code = character.codePointAt(0) ?? 0
    return code < 0x20 || code === 0x7f
  })
}

/** Inserts a new organization; `ERR_ORGANIZATION_EXISTS` when the slug is taken. */
export async function insertOrganization(
  tx: Transaction,
  input: { slug: string; name: string },
): Promise<Organization> {
  checkOrganizationInput(input)
  const existing = await tx
    .selectFrom('organizations')
    .select('id')
    .where('slug', '=', input.slug)
    .executeTakeFirst()
  if (existing !== undefined) {
    throw new WardError('ERR_ORGANIZATION_EXISTS', `organization ${input.slug} already exists`, {
      details: { slug: input.slug },
    })
  }
  const organization: Organization = {
    id: randomUUID(),
    slug: input.slug,
    name: input.name.trim(),
    createdAt: new Date().toISOString(),
  }
  await tx
    .insertInto('organizations')
    .values({
      id: organization.id,
      slug: organization.slug,
      name: organization.name,
      created_at: organization.createdAt,
    })
    .execute()
  return organization
}

/** Every organization, oldest first. */
export async function listOrganizations(tx: Transaction): Promise<Organization[]> {
  const rows = await tx.selectFrom('organizations').selectAll().orderBy('created_at').execute()
  return rows.map((row) => ({
    id: row.id,
    slug: row.slug,
    name: row.name,
    createdAt: row.created_at,
  }))
}

/**
 * The organization slug in a TLS server name `<slug>.<hostName>`, the name devices use to reach
 * their own organization; undefined for any other name.
 */
export function slugOfServerName(serverName: string, hostName: string): string | undefined {
  const name = serverName.toLowerCase()
  const suffix = `.${hostName}`
  if (!name.endsWith(suffix)) return undefined
  const slug = name.slice(0, -suffix.length)
  return slugPattern.test(slug) ? slug : undefined
}

/** The organization with `slug`, or `ERR_ORGANIZATION_NOT_FOUND`. */
export async function findOrganization(tx: Transaction, slug: string): Promise<Organization> {
  const row = await tx
    .selectFrom('organizations')
    .selectAll()
    .where('slug', '=', slug)
    .executeTakeFirst()
  if (row === undefined) {
    throw new WardError('ERR_ORGANIZATION_NOT_FOUND', `no organization ${slug}`, {
      details: { slug },
    })
  }
  return { id: row.id, slug: row.slug, name: row.name, createdAt: row.created_at }
}

/** The organization with id `id`, or `ERR_ORGANIZATION_NOT_FOUND`. */
export async function findOrganizationById(tx: Transaction, id: string): Promise<Organization> {
  const row = await tx
    .selectFrom('organizations')
    .selectAll()
    .where('id', '=', id)
    .executeTakeFirst()
  if (row === undefined) {
    throw new WardError('ERR_ORGANIZATION_NOT_FOUND', 'no such organization', { details: { id } })
  }
  return { id: row.id, slug: row.slug, name: row.name, createdAt: row.created_at }
}
