// expect: {"exit": 1, "error_name": "ImportError", "error_contains": "require", "error_line": 3}
export const meta = { name: 'c', description: 'conformance' }
const fs = require('fs')
return 1
