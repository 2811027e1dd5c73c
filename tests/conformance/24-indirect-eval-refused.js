// expect: {"exit": 1, "error_name": "TypeError"}
export const meta = { name: 'c', description: 'conformance' }
return (0, globalThis.eval)('1 + 1')
