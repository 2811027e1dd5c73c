// expect: {"exit": 1, "error_name": "ImportError", "error_line": 2}
import fs from 'fs'
return 1
