// expect: {"exit": 1, "error_name": "EvalError", "error_contains": "cannot generate code"}
export const meta = { name: 'c', description: 'conformance' }
return Function('return 1')()
