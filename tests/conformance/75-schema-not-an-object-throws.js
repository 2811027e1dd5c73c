// expect: {"result": {"name": "TypeError", "wrap": true, "ok": {"v": "sim"}}, "agents": {"spawned": 1, "done": 1, "failed": 0}}
export const meta = { name: 'c', description: 'conformance' }
const T = JSON.parse('{"type": "string"}')
const e = await agent('a', { schema: T }).then(() => null, (e) => e)
const r = await agent('b', { schema: { type: 'object', properties: { v: { type: 'string' } }, required: ['v'] } })
return { name: e.name, wrap: e.message.includes('wrap the value'), ok: { v: r.v.slice(0, 3) } }
