// expect: {"exit": 1, "error_name": "Deadlock"}
export const meta = { name: 'c', description: 'conformance' }
await new Promise(() => {})
