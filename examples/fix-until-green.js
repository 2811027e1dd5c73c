export const meta = {
  name: 'fix-until-green',
  description: 'Run the tests, fix each failure in parallel, and repeat until green or out of rounds',
  phases: [
    { title: 'Test', detail: 'one agent runs the suite and reports failures' },
    { title: 'Fix', detail: 'one agent per failing test' },
  ],
}

const maxRounds = (args && args.maxRounds) || 5
const REPORT = {
  type: 'object', required: ['passing', 'failures'],
  properties: { passing: { type: 'boolean' }, failures: { type: 'array', items: { type: 'string' } } },
}

const fixes = []
let round = 0
let green = false
while (round < maxRounds) {
  round++
  phase('Test')
  const report = await agent(`Round ${round}: run the test suite and report. Reply {"passing": bool, "failures": [test names]}`, { label: `test:${round}`, schema: REPORT })
  if (!report) { log(`round ${round}: the test run failed to report`); continue }
  if (report.passing) { green = true; break }
  phase('Fix')
  const patched = await parallel(report.failures.map((t) => () =>
    agent(`Round ${round}: make ${t} pass without weakening it. Reply with a one-line summary of the change.`, { label: `fix:${round}:${t}` })))
  report.failures.forEach((t, i) => fixes.push({ round, test: t, fixed: patched[i] !== null }))
}
return { green, rounds: round, fixes }
