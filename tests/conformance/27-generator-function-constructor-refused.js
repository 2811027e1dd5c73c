// expect: {"exit": 1, "error_name": "EvalError"}
export const meta = { name: 'c', description: 'conformance' }
const GF = (function* () {}).constructor
return GF('yield 1')().next().value
