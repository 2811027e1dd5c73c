// flags: ["--budget", "500"]
// rules: {"default": {"usage": {"input": 1, "output": 100}}}
// expect: {"result": {"n": 5, "name": "WorkflowBudgetExceededError", "spent": 500, "total": 500}}
export const meta = { name: 'c', description: 'conformance' }
let n = 0
try { while (true) { await agent('step ' + n); n++ } } catch (e) { return { n, name: e.name, spent: budget.spent(), total: budget.total } }
