// expect: {"exit": 1, "error_name": "MetaError", "error_contains": "spread"}
export const meta = { name: 'c', description: 'd', ...other }
return 1
