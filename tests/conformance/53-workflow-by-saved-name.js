// file: {"name": ".wasmflow/workflows/tally-votes.js", "source": "export const meta = { name: 'Tally Votes', description: 'count' }\nconst t = {}\nfor (const v of args) t[v] = (t[v] || 0) + 1\nreturn t\n"}
// expect: {"result": {"yes": 2, "no": 1}}
export const meta = { name: 'c', description: 'conformance' }
return await workflow('Tally Votes', ['yes', 'no', 'yes'])
