// expect: {"exit": 1, "error_name": "SchemaError", "error_contains": "refused", "agents": {"spawned": 0, "done": 0, "failed": 0}}
export const meta = { name: 'c', description: 'conformance' }
return await agent('a', { schema: { $ref: 'file:///etc/passwd' } })
