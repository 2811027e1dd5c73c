// expect: {"exit": 1, "error_contains": "non-deterministic"}
export const meta = { name: 'c', description: 'conformance' }
const D = globalThis['Da' + 'te']
return D['n' + 'ow']()
