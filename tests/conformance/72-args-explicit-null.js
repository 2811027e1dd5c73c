// flags: ["--args", "null"]
// expect: {"result": {"null": true, "undefined": false}}
export const meta = { name: 'c', description: 'conformance' }
return { null: args === null, undefined: args === undefined }
