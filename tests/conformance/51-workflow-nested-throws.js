// file: {"name": "child.js", "source": "return await workflow({ scriptPath: 'child.js' }).catch(e => e.message)\n"}
// expect: {"result": "workflow() cannot be called from a child workflow: nesting is limited to one level"}
export const meta = { name: 'c', description: 'conformance' }
return await workflow({ scriptPath: 'child.js' })
