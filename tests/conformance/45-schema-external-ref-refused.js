// expect: {"result": true, "agents": {"spawned": 0, "done": 0, "failed": 0}}
export const meta = { name: 'c', description: 'conformance' }
return await agent('a', { schema: { $ref: 'file:///etc/passwd' } }).catch(e => e.message.includes('refused') && !e.message.includes('root:'))
