// expect: {"exit": 1, "error_name": "MetaError", "error_contains": "meta.description is required"}
export const meta = { name: 'c' }
return 1
