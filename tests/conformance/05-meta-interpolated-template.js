// expect: {"exit": 1, "error_name": "MetaError", "error_contains": "interpolation"}
export const meta = { name: `c${1}`, description: 'd' }
return 1
