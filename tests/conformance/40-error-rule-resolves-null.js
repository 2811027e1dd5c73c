// rules: {"rules": [{"match": {"label": "verify:*"}, "error": "quota"}]}
// expect: {"result": null, "agents": {"spawned": 1, "done": 0, "failed": 1}}
export const meta = { name: 'c', description: 'conformance' }
const r = await agent('a', { label: 'verify:1' })
return r
