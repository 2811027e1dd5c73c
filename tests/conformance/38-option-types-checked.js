// expect: {"result": "agent(): opts.effort must be one of low, medium, high, xhigh, max, got \"extreme\"", "agents": {"spawned": 0, "done": 0, "failed": 0}}
export const meta = { name: 'c', description: 'conformance' }
return await agent('a', { effort: 'extreme' }).catch(e => e.message)
