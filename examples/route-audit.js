export const meta = {
  name: 'route-audit',
  description: 'Find HTTP route handlers, audit each for auth gaps, confirm findings by a 3-vote check',
  whenToUse: 'Before a release, on a service with many route handlers',
  phases: [
    { title: 'Scan', detail: 'list route handler files' },
    { title: 'Audit', detail: 'one agent per file' },
    { title: 'Verify', detail: 'three independent reviewers per finding; 2 of 3 confirm' },
  ],
}

const root = typeof args === 'string' ? args : (args && args.root) || 'src/routes'

phase('Scan')
const found = await agent(
  `List every HTTP route handler file under ${root}. Reply with JSON: {"files": ["path", ...]}.`,
  { label: 'scan' },
)
const files = (found && found.files) || []
log(`${files.length} handler files`)

phase('Audit')
const audits = await parallel(files.map((file) => () =>
  agent(
    `Audit ${file} for endpoints that skip authentication or authorisation checks. ` +
      'Reply with JSON: {"issue": "one sentence"} or {"issue": null}.',
    { label: `audit:${file}` },
  ),
))
const suspects = files
  .map((file, i) => ({ file, issue: audits[i] && audits[i].issue }))
  .filter((s) => s.issue)
log(`${suspects.length} suspected issues`)

phase('Verify')
const votes = await parallel(suspects.map((s) => () =>
  parallel([1, 2, 3].map((n) => () =>
    agent(
      `You are reviewer ${n} of 3. Independently check this claim about ${s.file}: "${s.issue}". ` +
        'Reply with exactly "confirmed" or "rejected".',
      { label: `verify:${s.file}:${n}` },
    ),
  )),
))

const findings = suspects.map((s, i) => {
  const ballot = votes[i]
  const yes = ballot.filter((v) => v === 'confirmed').length
  return { ...s, votes: { confirmed: yes, rejected: ballot.filter((v) => v === 'rejected').length, missing: ballot.filter((v) => v === null).length } }
})

return {
  scanned: files.length,
  suspected: suspects.length,
  confirmed: findings.filter((f) => f.votes.confirmed >= 2),
  dismissed: findings.filter((f) => f.votes.confirmed < 2).map((f) => f.file),
}
