export const meta = {
  name: 'review',
  description: 'Review a change along several dimensions, then verify each dimension\'s findings',
  whenToUse: 'Before merging a change you want more than one pair of eyes on',
  phases: [
    { title: 'Review', detail: 'one reviewer per dimension', model: 'sonnet' },
    { title: 'Verify', detail: 'a second agent keeps only findings it can confirm' },
  ],
}

const change = typeof args === 'string' ? args : (args && args.change) || 'the current diff'
const dimensions = ['security', 'performance', 'readability', 'tests']

const FINDINGS = {
  type: 'object', required: ['findings'],
  properties: { findings: { type: 'array', items: { type: 'string' } } },
}
const VERDICT = {
  type: 'object', required: ['confirmed'],
  properties: { confirmed: { type: 'array', items: { type: 'integer', minimum: 0 } } },
}

// Each dimension flows through review then verification on its own: a
// dimension whose review is done is verified while others are still read.
const results = await pipeline(
  dimensions,
  (dim) => agent(
    `Review ${change} for ${dim} problems only. Reply with JSON {"findings": ["one sentence each"]}.`,
    { label: `review:${dim}`, phase: 'Review', schema: FINDINGS },
  ),
  async (review, dim) => {
    const findings = (review && review.findings) || []
    if (findings.length === 0) return { dim, confirmed: [] }
    const verdict = await agent(
      `Check each ${dim} finding against ${change}; list the indexes you can confirm.\n` +
        findings.map((f, i) => `${i}. ${f}`).join('\n'),
      { label: `verify:${dim}`, phase: 'Verify', schema: VERDICT },
    )
    const keep = new Set((verdict && verdict.confirmed) || [])
    return { dim, confirmed: findings.filter((_, i) => keep.has(i)), dismissed: findings.length - keep.size }
  },
)

const confirmed = results.filter(Boolean).filter((r) => r.confirmed.length > 0)
return {
  change,
  dimensions: dimensions.length,
  confirmed: Object.fromEntries(confirmed.map((r) => [r.dim, r.confirmed])),
  dismissed: results.filter(Boolean).reduce((n, r) => n + (r.dismissed || 0), 0),
}
