// expect: {"result": "undefined"}
export const meta = { name: 'c', description: 'conformance' }
const e = globalThis['ev' + 'al']
return typeof e
