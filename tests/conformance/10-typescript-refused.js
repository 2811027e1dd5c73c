// expect: {"exit": 1, "error_name": "TypeScriptError", "error_contains": "TypeScript", "error_line": 3, "agents": {"spawned": 0, "done": 0, "failed": 0}}
export const meta = { name: 'c', description: 'conformance' }
const n: number = await agent('x')
return n
