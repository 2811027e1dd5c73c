// expect: {"result": {"ok": true, "kind": "string"}, "agents": {"spawned": 1, "done": 1, "failed": 0}}
export const meta = { name: 'c', description: 'conformance' }
const x = await agent('x')
return { ok: true, kind: typeof x }
