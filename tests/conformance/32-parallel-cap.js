// expect: {"exit": 1, "error_name": "RangeError", "error_contains": "4096"}
export const meta = { name: 'c', description: 'conformance' }
return await parallel(Array.from({ length: 4097 }, () => () => 1))
