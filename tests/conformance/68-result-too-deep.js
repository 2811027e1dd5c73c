// The host reads results back up to 128 levels of nesting (found by the
// round_trip fuzz target: deeper was an internal error). 200 levels end the
// run with a limit error that says what to do (69 returns 100 levels).
// expect: {"exit": 3, "error_contains": "more than 128 levels deep"}
let v = 1
for (let i = 0; i < 200; i++) v = { v }
return v
