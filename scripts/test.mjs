// Builds the workspace, then runs every *.test.ts under packages/*/src and packages/*/test with
// Node's own test runner, loading TypeScript through tsx and resolving workspace packages to
// their sources.
import { spawnSync } from 'node:child_process'
import { readdirSync, existsSync } from 'node:fs'
import { join } from 'node:path'

const root = new URL('..', import.meta.url).pathname
const only = process.argv.slice(2)

function testFiles() {
  const files = []
  for (const pkg of readdirSync(join(root, 'packages'))) {
    for (const dir of ['src', 'test']) {
      const base = join(root, 'packages', pkg, dir)
      if (!existsSync(base)) continue
      for (const entry of readdirSync(base, { recursive: true })) {
        if (String(entry).endsWith('.test.ts')) files.push(join(base, String(entry)))
      }
    }
  }
  return files.sort()
}

const files = only.length > 0 ? only : testFiles()

// Tests that run the `ward` command run the compiled build, as a user would.
const build = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-b'], {
  stdio: 'inherit',
  cwd: root,
})
if (build.status !== 0) process.exit(build.status ?? 1)
const result = spawnSync(
  process.execPath,
  [
    '--conditions=@ward/source',
    '--import',
    'tsx',
    '--test',
    '--test-concurrency=2',
    '--test-reporter=spec',
    ...files,
  ],
  { stdio: 'inherit', cwd: root },
)
process.exit(result.status ?? 1)
