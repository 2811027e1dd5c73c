// expect: {"exit": 1, "error_name": "TypeError", "error_contains": "expected a function"}
export const meta = { name: 'c', description: 'conformance' }
return await parallel([agent('a')])
