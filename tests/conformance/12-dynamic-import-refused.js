// expect: {"exit": 1, "error_name": "ImportError", "error_contains": "import()", "error_line": 3}
export const meta = { name: 'c', description: 'conformance' }
const m = await import('./x.js')
return m
