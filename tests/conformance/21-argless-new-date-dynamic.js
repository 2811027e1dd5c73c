// expect: {"exit": 1, "error_contains": "without arguments"}
export const meta = { name: 'c', description: 'conformance' }
const D = [Date][0]
return new D()
