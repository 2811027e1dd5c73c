// expect: {"exit": 1, "error_contains": "non-deterministic"}
export const meta = { name: 'c', description: 'conformance' }
const k = 'ran' + 'dom'
return Math[k]()
