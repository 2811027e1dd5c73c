// expect: {"exit": 1, "error_name": "MetaError", "error_contains": "first statement", "agents": {"spawned": 0, "done": 0, "failed": 0}}
const a = 1
export const meta = { name: 'c', description: 'd' }
return a
