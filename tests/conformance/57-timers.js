// expect: {"result": ["xy"]}
export const meta = { name: 'c', description: 'conformance' }
const seen = []
const t = setTimeout(() => seen.push('cleared'), 5)
clearTimeout(t)
setTimeout((a, b) => seen.push(a + b), 10, 'x', 'y')
await new Promise(r => setTimeout(r, 30))
return seen
