// expect: {"result": ["undefined", "undefined"]}
export const meta = { name: 'c', description: 'conformance' }
return [typeof WebAssembly, typeof SharedArrayBuffer]
