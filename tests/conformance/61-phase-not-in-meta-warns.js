// expect: {"result": 1, "stderr_contains": ["phase('Elsewhere') is not one of meta.phases"]}
export const meta = { name: 'c', description: 'd', phases: [{ title: 'Scan' }] }
phase('Scan')
phase('Elsewhere')
return 1
