// rules: {"rules": [{"invalid": true}]}
// expect: {"result_contains": "after 5 tries"}
export const meta = { name: 'c', description: 'conformance' }
const S = { type: 'object', required: ['n'], properties: { n: { type: 'integer' } } }
try { await agent('count', { schema: S }) } catch (e) { return e.message }
