// expect: {"exit": 1, "error_name": "RangeError", "error_contains": "4096"}
export const meta = { name: 'c', description: 'conformance' }
return await pipeline(Array.from({ length: 5000 }, (_, i) => i), (x) => x)
