// expect: {"result": [null, true, 0, true]}
export const meta = { name: 'c', description: 'conformance' }
return [budget.total, budget.remaining() === Infinity, budget.spent(), Object.isFrozen(budget)]
