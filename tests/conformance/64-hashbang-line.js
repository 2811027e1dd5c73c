#!/usr/bin/env wasmflow
// expect: {"result": 2}
export const meta = { name: 'c', description: 'a script with a #! line' }
return 1 + 1
