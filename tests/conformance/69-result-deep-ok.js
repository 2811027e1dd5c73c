// A result nested 100 levels deep comes back whole (68: past 128 it is a
// clean limit error).
// expect: {"exit": 0, "agents": {"spawned": 0}}
let v = 'bottom'
for (let i = 0; i < 100; i++) v = [v]
if (JSON.stringify(v).length !== 208) throw new Error('wrong length')
return v
