// expect: {"exit": 1, "error_name": "RangeError", "error_contains": "out of range", "error_line": 4, "agents": {"spawned": 1, "done": 1, "failed": 0}}
export const meta = { name: 'c', description: 'conformance' }
await agent('a')
throw new RangeError('out of range')
