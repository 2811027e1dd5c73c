export const meta = {
  name: 'bug-sweep',
  description: 'Hunt bugs in rounds until a round finds nothing new or the budget runs low',
  phases: [{ title: 'Hunt', detail: 'three hunters per round, told what is already known' }],
}

const area = typeof args === 'string' ? args : 'the payment service'
const BUGS = { type: 'object', required: ['bugs'], properties: { bugs: { type: 'array', items: { type: 'string' } } } }
const HUNTERS = 3
const PER_AGENT = 400 // output tokens we expect one hunter to use

phase('Hunt')
const known = []
let round = 0
let stopped = 'dry'
for (;;) {
  if (budget.remaining() < HUNTERS * PER_AGENT) { stopped = 'budget'; break }
  round++
  const found = await parallel(Array.from({ length: HUNTERS }, (_, h) => () =>
    agent(
      `Sweep ${area}, round ${round}, hunter ${h + 1}. Already known (${known.length}): ${known.join('; ') || 'none'}. ` +
        'Reply with JSON {"bugs": ["short title", ...]} listing only new bugs.',
      { label: `hunt:${round}:${h + 1}`, schema: BUGS },
    )))
  const fresh = [...new Set(found.flatMap((r) => (r ? r.bugs : [])))].filter((b) => !known.includes(b))
  log(`round ${round}: ${fresh.length} new`)
  if (fresh.length === 0) break
  known.push(...fresh)
}
return { area, rounds: round, stopped, bugs: known, spent: budget.spent() }
