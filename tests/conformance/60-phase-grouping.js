// expect: {"result": 1, "events_contain": [{"type": "phase", "title": "Scan"}, {"type": "agent_started", "label": "a", "phase": "Scan"}, {"type": "agent_done", "label": "b", "phase": "Check"}]}
export const meta = { name: 'c', description: 'd', phases: [{ title: 'Scan' }, { title: 'Check' }] }
phase('Scan')
await parallel([() => agent('a', { label: 'a' }), () => agent('b', { label: 'b', phase: 'Check' })])
return 1
