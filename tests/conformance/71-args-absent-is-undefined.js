// expect: {"result": {"undefined": true, "type": "undefined", "inJson": {}}}
export const meta = { name: 'c', description: 'conformance' }
return { undefined: args === undefined, type: typeof args, inJson: { args } }
