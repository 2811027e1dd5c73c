// expect: {"exit": 1, "error_name": "DeterminismError", "error_line": 4, "agents": {"spawned": 0, "done": 0, "failed": 0}}
export const meta = { name: 'c', description: 'conformance' }
await agent('first')
const t = Date.now()
return t
