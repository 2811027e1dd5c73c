// The wasmflow dashboard: plain JS over the JSON API (docs/dashboard.md).
// Everything that came from a model or a script is put on the page with
// textContent, never as HTML.
'use strict';

const main = document.getElementById('main');
const where = document.getElementById('where');
let stopLive = () => {};

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'text') e.textContent = v;
    else if (k === 'cls') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

// One entry of a tool-using agent's transcript as a line of text (model
// output stays text: never parsed as HTML).
function transcriptLine(e) {
  const s = (v) => (typeof v === 'string' ? v : JSON.stringify(v));
  const turn = e.turn != null ? 'turn ' + e.turn + '  ' : '';
  switch (e.kind) {
    case 'request': return 'try ' + e.attempt + ': tools ' + (e.tools || []).join(', ');
    case 'assistant': return e.text ? turn + 'model: ' + e.text : null;
    case 'tool_call': return turn + 'call ' + e.name + ' ' + s(e.input);
    case 'tool_result': return turn + (e.is_error ? 'error: ' : 'result: ') + s(e.text);
    case 'server_tool': return turn + 'server tool: ' + s(e.block);
    case 'end': return e.ok ? 'ended with an answer' : 'failed: ' + s(e.reason);
    default: return e.kind + ': ' + s(e.text);
  }
}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: 'same-origin' }, opts));
  const body = await r.text();
  let v;
  try { v = JSON.parse(body); } catch (_) { v = body; }
  if (!r.ok) throw new Error((v && v.error) || body || r.status);
  return v;
}

const post = (path, body) => api(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body || {}) });

function fmtMs(ms) {
  if (ms == null) return '';
  if (ms < 1000) return ms + ' ms';
  const s = ms / 1000;
  return s < 120 ? s.toFixed(1) + ' s' : Math.round(s / 60) + ' min';
}
const fmtUsd = (u) => (u == null ? '—' : '$' + u.toFixed(4));
const fmtDate = (ms) => (ms ? new Date(ms).toLocaleString() : '');
const status = (s) => el('span', { cls: 'status s-' + s, text: s });

// ---------- runs page ----------

const GROUPS = {
  all: null,
  live: ['running', 'starting'],
  finished: ['ok'],
  failed: ['script_error', 'limit', 'bad_input', 'internal', 'interrupted'],
  paused: ['paused'],
};

async function runsPage() {
  where.textContent = 'runs';
  const statusSel = el('select', {}, ...Object.keys(GROUPS).map((g) => el('option', { value: g, text: g })));
  const nameIn = el('input', { placeholder: 'name', type: 'search' });
  const body = el('tbody');
  const table = el('table', { id: 'runs' },
    el('thead', {}, el('tr', {}, ...['name', 'status', 'done', 'failed', 'running', 'tokens in/out', 'cost', 'started', 'duration'].map((h) => el('th', { text: h })))),
    body);
  main.replaceChildren(el('h1', { text: 'Runs' }), el('div', { cls: 'bar' }, statusSel, nameIn), table);
  let rows = [];
  const draw = () => {
    const group = GROUPS[statusSel.value];
    const q = nameIn.value.toLowerCase();
    const frag = document.createDocumentFragment();
    for (const r of rows) {
      if (group && !group.includes(r.status)) continue;
      if (q && !r.name.toLowerCase().includes(q) && !r.id.includes(q)) continue;
      frag.append(el('tr', { cls: 'click', 'data-id': r.id, onclick: () => { location.hash = '#/run/' + r.id; } },
        el('td', { text: r.name || r.id }), el('td', {}, status(r.status)),
        el('td', { cls: 'num', text: r.done }), el('td', { cls: 'num', text: r.failed }), el('td', { cls: 'num', text: r.running }),
        el('td', { cls: 'num', text: r.input_tokens + ' / ' + r.output_tokens }), el('td', { cls: 'num', text: fmtUsd(r.cost_usd) }),
        el('td', { text: fmtDate(r.created_ms) }), el('td', { cls: 'num', text: fmtMs(r.duration_ms) })));
    }
    body.replaceChildren(frag);
  };
  statusSel.onchange = draw;
  nameIn.oninput = draw;
  const load = async () => { rows = (await api('/api/runs')).runs; draw(); };
  await load();
  const timer = setInterval(() => load().catch(() => {}), 2000);
  stopLive = () => clearInterval(timer);
}

// ---------- run page ----------

const AGENT_COLS = [
  ['id', 'n'], ['label', 'label'], ['phase', 'phase'], ['model', 'model'], ['state', 'state'],
  ['attempts', 'tries'], ['duration_ms', 'duration'], ['output_tokens', 'tokens out'], ['usd', 'cost'],
];

async function runPage(id) {
  where.textContent = id;
  const head = el('div');
  const actions = el('div', { cls: 'bar' });
  const tree = el('div', { cls: 'tree', id: 'tree' });
  const logs = el('pre', { id: 'logs' });
  const failures = el('div', { id: 'failures' });
  const result = el('div', { id: 'result' });
  const script = el('pre', { cls: 'script', id: 'script' });
  const detail = el('div', { id: 'detail' });
  const filter = el('input', { placeholder: 'filter agents', type: 'search' });
  const stateSel = el('select', {}, ...['all', 'queued', 'running', 'done', 'failed', 'skipped'].map((s) => el('option', { value: s, text: s })));
  const tbody = el('tbody');
  const thead = el('tr');
  let sortKey = 'id';
  let sortDir = 1;
  for (const [key, label] of AGENT_COLS) {
    thead.append(el('th', { text: label, onclick: () => { sortDir = sortKey === key ? -sortDir : 1; sortKey = key; drawAgents(); } }));
  }
  main.replaceChildren(head, actions,
    el('div', { cls: 'grid' }, el('div', {}, el('h2', { text: 'Phases' }), tree), el('div', {}, el('h2', { text: 'Agent' }), detail)),
    el('h2', { text: 'Agents' }), el('div', { cls: 'bar' }, filter, stateSel),
    el('table', { id: 'agents' }, el('thead', {}, thead), tbody),
    el('h2', { text: 'Failures' }), failures, el('h2', { text: 'Log' }), logs,
    el('h2', { text: 'Result' }), result, el('h2', { text: 'Script' }), script);

  let agents = [];
  let run = null;
  function drawAgents() {
    const q = filter.value.toLowerCase();
    const st = stateSel.value;
    const list = agents.filter((a) => (st === 'all' || a.state === st) &&
      (!q || (a.label + ' ' + (a.phase || '') + ' ' + (a.model || '')).toLowerCase().includes(q)));
    list.sort((a, b) => {
      const x = a[sortKey]; const y = b[sortKey];
      return (x == null ? -Infinity : x) < (y == null ? -Infinity : y) ? -sortDir : (x === y ? 0 : sortDir);
    });
    const frag = document.createDocumentFragment();
    for (const a of list) {
      frag.append(el('tr', { cls: 'click', 'data-agent': a.id, onclick: () => showAgent(a.id) },
        el('td', { cls: 'num', text: a.id }), el('td', { text: a.label }), el('td', { text: a.phase || '' }),
        el('td', { text: a.model || '' }), el('td', {}, status(a.state)), el('td', { cls: 'num', text: a.attempts }),
        el('td', { cls: 'num', text: fmtMs(a.duration_ms) }), el('td', { cls: 'num', text: a.output_tokens }),
        el('td', { cls: 'num', text: fmtUsd(a.usd) })));
    }
    tbody.replaceChildren(frag);
  }
  filter.oninput = drawAgents;
  stateSel.onchange = drawAgents;

  async function showAgent(n) {
    try {
      const a = await api('/api/runs/' + id + '/agents/' + n);
      const rec = a.row ? a.row : a;
      const kids = [el('h3', { text: '#' + n + ' ' + (rec.label || '') })];
      if (a.note) kids.push(el('p', { cls: 'muted', text: a.note }));
      const field = (name, value) => { if (value != null && value !== '') kids.push(el('div', { cls: 'muted', text: name }), el('pre', { text: typeof value === 'string' ? value : JSON.stringify(value, null, 2) })); };
      field('prompt', rec.prompt);
      field('options', rec.options);
      field('output', rec.output != null ? rec.output : rec.json);
      field('failure', rec.error || rec.reason);
      field('usage', rec.usage);
      field('timing', rec.startedTs ? { started: fmtDate(rec.startedTs), duration: fmtMs(rec.durationMs) } : null);
      if (Array.isArray(a.transcript) && a.transcript.length) {
        kids.push(el('div', { cls: 'muted', text: 'transcript' }));
        const list = el('ol', { cls: 'transcript' });
        for (const e of a.transcript) {
          const line = transcriptLine(e);
          if (line) list.append(el('li', { cls: 't-' + e.kind, text: line }));
        }
        kids.push(list);
      }
      if (run && (rec.state === 'running' || rec.state === 'queued' || a.row)) {
        kids.push(el('div', { cls: 'bar' },
          el('button', { text: 'Skip', onclick: () => act(post('/api/runs/' + id + '/agents/' + n + '/skip')) }),
          el('button', { text: 'Retry', onclick: () => act(post('/api/runs/' + id + '/agents/' + n + '/retry')) })));
      }
      detail.replaceChildren(...kids);
    } catch (e) { detail.replaceChildren(el('p', { cls: 'muted', text: String(e.message || e) })); }
  }

  const note = el('span', { cls: 'muted', id: 'note' });
  async function act(p) {
    try { const v = await p; note.textContent = v.message || 'done'; } catch (e) { note.textContent = String(e.message || e); }
    refresh();
  }

  function drawRun() {
    const s = run.state;
    head.replaceChildren(el('h1', { text: s.name || id }),
      el('div', { cls: 'bar' }, status(s.status),         el('span', { text: 'backend ' + (run.backend || 'configured') }),
        el('span', { text: s.agents.done + ' done, ' + s.agents.failed + ' failed, ' + s.agents.running + ' running, ' + s.agents.queued + ' queued' }),
        el('span', { text: 'tokens ' + s.tokens.input + ' / ' + s.tokens.output }),
        el('span', { text: 'cost ' + fmtUsd(s.cost_usd) }), el('span', { text: fmtMs(s.elapsed_ms) })));
    const live = s.status === 'running' || s.status === 'starting';
    actions.replaceChildren(
      el('button', { text: 'Stop', id: 'stop', onclick: () => act(post('/api/runs/' + id + '/stop')) }),
      el('button', { text: 'Resume', id: 'resume', onclick: async () => {
        try { await act(post('/api/runs/' + id + '/resume')); } catch (_) { /* act reports */ }
        if (note.textContent.includes('confirm') && window.confirm(note.textContent + '\n\nStart it?')) await act(post('/api/runs/' + id + '/resume', { confirm: true }));
      } }), note);
    actions.querySelector('#stop').disabled = !live;
    tree.replaceChildren(...s.phases.map((p) => el('div', { text: '▸ ' + p.title + '  ' + p.done + ' done, ' + p.failed + ' failed, ' + p.running + ' running, ' + p.queued + ' queued' })),
      ...s.running.map((r) => el('div', { cls: 'muted', text: '    … ' + r.label })));
    logs.textContent = s.logs.join('\n');
    const byReason = new Map();
    for (const f of s.failures) { const k = f.reason; byReason.set(k, (byReason.get(k) || []).concat(f.label)); }
    failures.replaceChildren(...[...byReason].map(([reason, labels]) => el('div', {}, el('b', { text: labels.length + '× ' }), el('span', { text: reason + ' — ' + labels.join(', ') }))));
    if (!byReason.size) failures.replaceChildren(el('span', { cls: 'muted', text: 'none' }));
    if (run.error && run.error.message) failures.prepend(el('p', { cls: 's-failed', text: run.error.message }));
  }

  async function drawResult() {
    if (!run.has_result) { result.replaceChildren(el('span', { cls: 'muted', text: 'no result yet' })); return; }
    const v = await api('/api/runs/' + id + '/result');
    const text = JSON.stringify(v, null, 2);
    const pre = el('pre', { text });
    result.replaceChildren(el('div', { cls: 'bar' },
      el('button', { text: 'Copy', onclick: () => navigator.clipboard && navigator.clipboard.writeText(text) }),
      el('a', { href: '/api/runs/' + id + '/result?download=1', text: 'Download' })), pre);
  }

  async function drawScript() {
    try {
      const text = await (await fetch('/api/runs/' + id + '/script', { credentials: 'same-origin' })).text();
      const errLine = run.error && run.error.line;
      script.replaceChildren(...text.split('\n').map((l, i) => el('span', { cls: i + 1 === errLine ? 'err' : '', text: l })));
    } catch (_) { script.textContent = ''; }
  }

  // The newest event seen, and when the page last showed what it said
  // (window.__painted: the dashboard suite reads event-to-screen latency).
  let lastEventTs = 0;
  async function refresh() {
    const seen = lastEventTs;
    run = await api('/api/runs/' + id);
    agents = (await api('/api/runs/' + id + '/agents')).agents;
    drawRun();
    drawAgents();
    if (seen) window.__painted = (window.__painted || []).concat([Date.now() - seen]);
  }
  await refresh();
  await drawResult();
  await drawScript();

  // Live: every event schedules one refresh (at most every 300 ms).
  let pending = null;
  const source = new EventSource('/api/runs/' + id + '/events');
  const soon = () => { if (!pending) pending = setTimeout(() => { pending = null; refresh().then(() => { if (!run.state.status.match(/running|starting/)) drawResult(); }).catch(() => {}); }, 300); };
  source.onmessage = (m) => { try { lastEventTs = Math.max(lastEventTs, JSON.parse(m.data).ts || 0); } catch (_) { /* not JSON */ } soon(); };
  source.addEventListener('end', () => { soon(); source.close(); });
  const poll = setInterval(() => { if (source.readyState === 2) soon(); }, 3000);
  stopLive = () => { source.close(); clearInterval(poll); if (pending) clearTimeout(pending); };
}

async function route() {
  stopLive();
  stopLive = () => {};
  const m = location.hash.match(/^#\/run\/([A-Za-z0-9_-]+)/);
  try {
    if (m) await runPage(m[1]); else await runsPage();
  } catch (e) {
    main.replaceChildren(el('p', { cls: 's-failed', text: String(e.message || e) }));
  }
}

// The token came in the URL once; the cookie keeps it. Drop it from the
// address bar (and from history) so it is not shared by copy and paste.
if (location.search.includes('token=')) history.replaceState(null, '', location.pathname + location.hash);
window.addEventListener('hashchange', route);
route();
