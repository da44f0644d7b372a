export { startJobs, type Job } from './scheduler.js'
export { rolloutJob } from './rollouts.js'
