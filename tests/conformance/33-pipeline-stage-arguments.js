// expect: {"result": [["a|a|0", "a", 0], ["b|b|1", "b", 1]]}
export const meta = { name: 'c', description: 'conformance' }
return await pipeline(['a', 'b'], (prev, item, index) => `${prev}|${item}|${index}`, (prev, item, index) => [prev, item, index])
