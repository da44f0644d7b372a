import { WardError } from '@ward/core'

import { listDeviceModels } from '../devices/index.js'
import type { Transaction } from '../store/index.js'
import type { ReleaseCatalog, RolloutRelease } from './rollouts.js'
import { findRelease } from './updates.js'

/**
 * The release catalog rollouts use: the organization's TUF repository. A release is what
 * `ward updates publish` stored from signed targets metadata; its `models` are device model
 * names, mapped here to the organization's device model ids through the devices domain. Names
 * the organization has no model for are left out, and a release none of whose models exist is
 * refused, naming them. A release the newest signed targets no longer list is refused with
 * `ERR_RELEASE_WITHDRAWN`: devices verify against those targets and could not install it.
 */
export const repositoryReleaseCatalog: ReleaseCatalog = {
  async findRelease(
    tx: Transaction,
    organizationId: string,
    releaseId: string,
  ): Promise<RolloutRelease> {
    const release = await findRelease(tx, organizationId, releaseId)
    if (release.withdrawn) {
      throw new WardError(
        'ERR_RELEASE_WITHDRAWN',
        `release ${releaseId} (target ${release.targetName}) was withdrawn: the newest signed ` +
          'targets metadata no longer lists it, so devices cannot install it',
        { details: { field: 'release', target: release.targetName } },
      )
    }
    const models = await listDeviceModels(tx, organizationId)
    const deviceModelIds = models
      .filter((model) => release.models.includes(model.name))
      .map((model) => model.id)
    if (deviceModelIds.length === 0) {
      throw new WardError(
        'ERR_INPUT_INVALID',
        `release ${releaseId} is for ${release.models.join(', ')}; ` +
          'this organization has no device model of that name',
        { details: { field: 'release' } },
      )
    }
    return {
      id: release.id,
      version: release.version,
      targetName: release.targetName,
      deviceModelIds,
    }
  },
}
