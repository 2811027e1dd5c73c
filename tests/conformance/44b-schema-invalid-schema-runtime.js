// expect: {"result": "agent(): opts.schema is not a valid JSON Schem", "agents": {"spawned": 0, "done": 0, "failed": 0}}
export const meta = { name: 'c', description: 'conformance' }
const S = JSON.parse('{"type": "bogus"}')
return await agent('a', { schema: S }).catch(e => e.message.slice(0, 46))
