// file: {"name": "lib/child.js", "source": "export const meta = { name: 'child', description: 'doubles' }\nconst a = await agent('child work')\nreturn { doubled: args.n * 2, agent: typeof a }\n"}
// expect: {"result": {"doubled": 8, "agent": "string"}, "agents": {"spawned": 1, "done": 1, "failed": 0}}
export const meta = { name: 'c', description: 'conformance' }
const r = await workflow({ scriptPath: 'lib/child.js' }, { n: 4 })
return r
