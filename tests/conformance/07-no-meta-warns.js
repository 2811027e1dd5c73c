// expect: {"result": "ran", "stderr_contains": ["no `export const meta"]}
return 'ran'
