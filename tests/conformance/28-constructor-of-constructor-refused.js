// expect: {"exit": 1, "error_name": "EvalError"}
export const meta = { name: 'c', description: 'conformance' }
const F = (() => 1).constructor.constructor
return F('return 1')()
