// Options nested past the 128 levels the host reads make agent() throw a
// TypeError that says so (found by the round_trip fuzz target: the message
// used to call them invalid JSON).
// expect: {"result": "TypeError: agent(): opts nest arrays and objects more than 128 levels deep, deeper than wasmflow reads: pass a flatter value", "agents": {"spawned": 0}}
let deep = 1
for (let i = 0; i < 200; i++) deep = [deep]
try {
  await agent('x', { context: deep })
  return 'no error'
} catch (e) {
  return `${e.name}: ${e.message}`
}
