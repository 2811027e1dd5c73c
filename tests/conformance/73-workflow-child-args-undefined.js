// file: {"name": ".wasmflow/workflows/seen.js", "source": "export const meta = { name: 'seen', description: 'what args the child sees' }\nreturn args === undefined ? 'undefined' : args\n"}
// expect: {"result": {"byName": "undefined", "byPath": "undefined", "givenUndefined": "undefined", "givenNull": null, "given": {"n": 1}}}
export const meta = { name: 'c', description: 'conformance' }
return {
  byName: await workflow('seen'),
  byPath: await workflow({ scriptPath: '.wasmflow/workflows/seen.js' }),
  givenUndefined: await workflow('seen', undefined),
  givenNull: await workflow('seen', null),
  given: await workflow('seen', { n: 1 }),
}
