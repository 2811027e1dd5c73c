// rules: {"rules": [{"reply": "Here you go:\n```json\n{\"n\": 3}\n```"}]}
// expect: {"result": {"n": 3}}
export const meta = { name: 'c', description: 'conformance' }
const S = { type: 'object', required: ['n'], properties: { n: { type: 'integer' } } }
return await agent('a', { schema: S })
