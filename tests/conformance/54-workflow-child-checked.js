// file: {"name": "bad.js", "source": "return Math.random()\n"}
// expect: {"result": true}
export const meta = { name: 'c', description: 'conformance' }
return await workflow({ scriptPath: 'bad.js' }).catch(e => e.message.includes('DeterminismError') || e.message.includes('non-deterministic'))
