// expect: {"result": ["string", null, null, "string"], "stderr_contains": ["item 1 threw"]}
export const meta = { name: 'c', description: 'conformance' }
const r = await parallel([
  () => agent('a'),
  () => { throw new Error('boom') },
  async () => { await agent('b'); throw new Error('late') },
  () => 'plain',
])
return r.map(x => x === null ? null : typeof x)
