// expect: {"result": [["fulfilled", "rejected"], "dflt", 1024, [1, 2, 3], "a+b"]}
export const meta = { name: 'c', description: 'conformance' }
const r = await Promise.allSettled([agent('a'), Promise.reject(new Error('x'))])
const o = { a: { b: null } }
return [r.map(x => x.status), o.a?.b ?? 'dflt', 2 ** 10, [1, [2, [3]]].flat(2), 'a-b'.replaceAll('-', '+')]
