// flags: ["--strict"]
// expect: {"result": "string"}
export const meta = { name: 'c', description: 'conformance' }
const r = await agent('a', { label: 'l', phase: 'P', model: 'haiku', effort: 'low', agentType: 'general', isolation: 'worktree', disallowedTools: ['Bash'], bashCommandClamp: 200, stallMs: 60000 })
return typeof r
