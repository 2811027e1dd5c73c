// flags: ["--max-agents", "3"]
// file: {"name": "child.js", "source": "for (let i = 0; i < 5; i++) await agent('c' + i)\nreturn 'unreachable'\n"}
// expect: {"result": "WorkflowAgentCapError", "agents": {"spawned": 3, "done": 3, "failed": 0}}
export const meta = { name: 'c', description: 'conformance' }
await agent('p1')
return await workflow({ scriptPath: 'child.js' }).catch(e => e.name)
