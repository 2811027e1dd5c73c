// Backends: `claude` (Claude Code searches and fetches with its own tools)
// and `anthropic` (the searchers and readers get Anthropic's web_search and
// web_fetch server tools through opts.tools, a wasmflow extension). On
// `openai`, `codex`, `gemini` and the others it runs, but its agents answer
// from what the model knows unless you give them a search MCP server
// ([mcp_servers], docs/tools.md). `sim` rehearses it.
export const meta = {
  name: 'deep-research',
  description: 'Answer a question from sources: angles, sources, claims, a 3-vote check, a cited synthesis',
  phases: [
    { title: 'Angles', detail: 'how to search', model: 'haiku' },
    { title: 'Sources', detail: 'one searcher per angle', model: 'haiku' },
    { title: 'Extract', detail: 'claims from each source', model: 'haiku' },
    { title: 'Vote', detail: 'three independent checks per claim; 2 of 3 keep it' },
    { title: 'Synthesis', detail: 'a cited answer from the kept claims', model: 'sonnet' },
  ],
}

const question = typeof args === 'string' ? args : (args && args.question) || 'Is WebAssembly a good sandbox for untrusted scripts?'
const ANGLES = { type: 'object', required: ['angles'], properties: { angles: { type: 'array', items: { type: 'string' }, minItems: 1 } } }
const SOURCES = {
  type: 'object', required: ['sources'],
  properties: { sources: { type: 'array', items: { type: 'object', required: ['url'], properties: { url: { type: 'string' } } } } },
}
const CLAIMS = {
  type: 'object', required: ['claims'],
  properties: { claims: { type: 'array', items: { type: 'object', required: ['id', 'text'], properties: { id: { type: 'string' }, text: { type: 'string' } } } } },
}

phase('Angles')
const { angles } = await agent(`List 3 distinct search angles for: ${question}. Reply {"angles": [...]}`, { label: 'angles', schema: ANGLES })

phase('Sources')
const perAngle = await parallel(angles.map((a, i) => () =>
  agent(`Find sources for the angle "${a}" of: ${question}. Reply {"sources": [{"url": ...}]}`, { label: `sources:${i}`, schema: SOURCES, tools: ['web_search'] })))
const urls = [...new Set(perAngle.flatMap((r) => (r ? r.sources.map((s) => s.url) : [])))]

phase('Extract')
const extracted = await parallel(urls.map((url) => () =>
  agent(`Read ${url} and extract claims that bear on: ${question}. Reply {"claims": [{"id": ..., "text": ...}]}`, { label: `extract:${url}`, schema: CLAIMS, tools: ['web_fetch'] })))
const claims = extracted.flatMap((r, i) => (r ? r.claims.map((c) => ({ ...c, source: urls[i] })) : []))

phase('Vote')
const ballots = await parallel(claims.map((c) => () =>
  parallel([1, 2, 3].map((n) => () =>
    agent(`Voter ${n}: is this claim supported by ${c.source}? "${c.text}" Reply "supported" or "unsupported".`, { label: `vote:${c.id}:${n}` })))))
const kept = claims.filter((c, i) => ballots[i].filter((v) => v === 'supported').length >= 2)

phase('Synthesis')
const report = await agent(
  `Answer "${question}" using only these claims, citing sources:\n` + kept.map((c) => `- ${c.text} [${c.source}]`).join('\n'),
  { label: 'synthesis' },
)
return { question, angles: angles.length, sources: urls.length, claims: claims.length, kept: kept.map((c) => c.id), report }
