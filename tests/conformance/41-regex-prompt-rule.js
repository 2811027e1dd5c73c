// rules: {"rules": [{"match": {"prompt": "/file-[0-9]+\\.rs/"}, "reply": "numbered"}, {"reply": "plain"}]}
// expect: {"result": ["numbered", "plain"]}
export const meta = { name: 'c', description: 'conformance' }
return [await agent('check file-12.rs'), await agent('check file.rs')]
