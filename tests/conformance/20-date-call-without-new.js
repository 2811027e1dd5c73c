// expect: {"exit": 1, "error_contains": "Date()"}
export const meta = { name: 'c', description: 'conformance' }
const D = [Date][0]
return D()
