// expect: {"exit": 1, "error_name": "MetaError", "error_contains": "method or accessor"}
export const meta = { name: 'c', description: 'd', get phases() { return [] } }
return 1
