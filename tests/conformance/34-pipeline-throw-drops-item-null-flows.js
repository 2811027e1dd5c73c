// expect: {"result": {"r": [10, null, null], "later": [1, 3]}}
export const meta = { name: 'c', description: 'conformance' }
let later = []
const r = await pipeline([1, 2, 3],
  (x) => { if (x === 2) throw new Error('no 2'); return x === 3 ? null : x * 10 },
  (prev, item) => { later.push(item); return prev })
return { r, later }
