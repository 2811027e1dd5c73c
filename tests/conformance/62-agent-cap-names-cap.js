// flags: ["--max-agents", "4"]
// expect: {"result": [4, "WorkflowAgentCapError", "agent cap reached: this run may spawn at most 4 agents (raise it with --max-agents)"]}
export const meta = { name: 'c', description: 'conformance' }
let n = 0
try { for (;;) { await agent('a' + n); n++ } } catch (e) { return [n, e.name, e.message] }
