// file: {"name": "notes.txt", "source": "not a script\n"}
// expect: {"result": [true, true]}
const msg = async (p) => {
  try { await workflow({ scriptPath: p }); return 'loaded' } catch (e) { return e.message }
}
const a = await msg('notes.txt')
const c = await msg('missing.js')
return [a.includes('must name a .js file'), c.includes('cannot read scriptPath `missing.js`')]
