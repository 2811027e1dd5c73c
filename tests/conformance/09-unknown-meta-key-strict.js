// flags: ["--strict"]
// expect: {"exit": 1, "error_name": "MetaError", "error_contains": "--strict"}
export const meta = { name: 'c', description: 'd', owner: 'me' }
return 1
