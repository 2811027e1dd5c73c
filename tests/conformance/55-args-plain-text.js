// flags: ["fix", "the", "login", "bug"]
// expect: {"result": "fix the login bug"}
export const meta = { name: 'c', description: 'conformance' }
return args
