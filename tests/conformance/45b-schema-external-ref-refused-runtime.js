// expect: {"result": true, "agents": {"spawned": 0, "done": 0, "failed": 0}}
export const meta = { name: 'c', description: 'conformance' }
const S = { $ref: 'file:///etc/' + 'passwd' }
return await agent('a', { schema: S }).catch(e => e.message.includes('refused') && !e.message.includes('root:'))
