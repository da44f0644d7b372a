export { startJobs, type Job } from './scheduler.js'
