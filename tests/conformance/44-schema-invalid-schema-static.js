// expect: {"exit": 1, "error_name": "SchemaError", "error_line": 5, "error_contains": "not a valid JSON Schema", "agents": {"spawned": 0, "done": 0, "failed": 0}}
export const meta = { name: 'c', description: 'conformance' }
const S = { type: 'bogus' }
await agent('first')
return await agent('a', { schema: S })
