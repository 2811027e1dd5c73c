// flags: ["--budget", "150"]
// rules: {"default": {"usage": {"input": 1, "output": 100}}}
// expect: {"result": {"got": 3, "after": "WorkflowBudgetExceededError", "spent": 300}}
export const meta = { name: 'c', description: 'conformance' }
const r = await parallel([1, 2, 3].map(i => () => agent('p' + i)))
const after = await agent('more').catch(e => e.name)
return { got: r.filter(x => typeof x === 'string').length, after, spent: budget.spent() }
