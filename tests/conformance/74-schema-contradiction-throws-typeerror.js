// expect: {"result": [{"name": "TypeError", "says": true}, {"name": "TypeError", "says": true}, {"name": "TypeError", "says": true}], "agents": {"spawned": 0, "done": 0, "failed": 0}, "stderr_contains": ["flow.js:5:", "agent() will throw here: opts.schema can never be satisfied"]}
export const meta = { name: 'c', description: 'conformance' }
const caught = (e) => ({ name: e.name, says: e.message.includes('can never be satisfied') })
const FORBIDDEN = { type: 'object', required: ['x'], properties: { a: { type: 'string' } }, additionalProperties: false }
const a = await agent('a', { schema: FORBIDDEN }).catch(caught)
const lo = JSON.parse('5')
const b = await agent('b', { schema: { type: 'object', required: ['n'], properties: { n: { type: 'integer', minimum: lo, maximum: lo - 2 } } } }).catch(caught)
const c = await agent('c', { schema: { allOf: [{ type: 'object' }, { type: 'object', properties: { k: { const: 'x', enum: ['y'] } }, required: ['k'] }] } }).catch(caught)
return [a, b, c]
