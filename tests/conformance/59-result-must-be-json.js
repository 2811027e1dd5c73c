// expect: {"exit": 1, "error_contains": "not JSON-serialisable"}
export const meta = { name: 'c', description: 'conformance' }
const o = {}
o.self = o
return o
