// flags: ["--strict"]
// expect: {"result": ["TypeError", "agent(): unknown option `temperature` (--strict makes unknown options errors)"]}
export const meta = { name: 'c', description: 'conformance' }
return await agent('a', { temperature: 0.1 }).catch(e => [e.name, e.message])
