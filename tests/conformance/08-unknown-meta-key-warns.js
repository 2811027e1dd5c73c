// expect: {"result": 1, "stderr_contains": ["unknown key meta.owner"]}
export const meta = { name: 'c', description: 'd', owner: 'me' }
return 1
