// expect: {"result": "string", "stderr_contains": ["unknown option `temperature`"]}
export const meta = { name: 'c', description: 'conformance' }
const r = await agent('a', { temperature: 0.1 })
return typeof r
