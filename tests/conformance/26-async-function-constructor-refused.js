// expect: {"exit": 1, "error_name": "EvalError"}
export const meta = { name: 'c', description: 'conformance' }
const AF = (async () => {}).constructor
return await AF('return 1')()
