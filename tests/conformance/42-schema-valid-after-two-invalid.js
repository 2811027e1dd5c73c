// rules: {"rules": [{"match": {"label": "count"}, "invalid": true, "attempts": [1, 2]}, {"match": {"label": "count"}, "reply": {"n": 7}}]}
// expect: {"result": {"n": 7}, "agents": {"spawned": 1, "done": 1, "failed": 0}}
export const meta = { name: 'c', description: 'conformance' }
const S = { type: 'object', required: ['n'], properties: { n: { type: 'integer' } } }
const r = await agent('count', { schema: S, label: 'count' })
return r
