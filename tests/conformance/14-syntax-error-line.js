// expect: {"exit": 1, "error_name": "SyntaxError", "error_line": 5}
export const meta = { name: 'c', description: 'conformance' }
const a = 1
const b = [a,
return b
