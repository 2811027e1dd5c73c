// expect: {"result": 1, "stderr_contains": ["warn: w", "error: e {\"a\":1}"], "events_contain": [{"type": "log", "level": "info", "message": "l 1"}, {"type": "log", "level": "info", "message": "done"}]}
export const meta = { name: 'c', description: 'conformance' }
console.log('l', 1)
console.info('i')
console.warn('w')
console.error('e', { a: 1 })
log('done')
return 1
