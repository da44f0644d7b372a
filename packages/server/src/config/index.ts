export {
  configSummary,
  loadConfig,
  redactDatabaseUrl,
  settings,
  settingsReference,
  type ConfigSources,
  type WardConfig,
} from './config.js'
