// expect: {"result": "Date.now()Math.random()"}
export const meta = { name: 'c', description: 'conformance' }
// Date.now() and Math.random() in a comment
const s = 'Date.now()' + `Math.random()`
return s
