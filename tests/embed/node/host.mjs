// A wasmflow host for Node 20 (no JSPI): drives a workflow component through
// its poll exports, driver.start / driver.deliver, with agents as promises
// answered from a table recorded by `wasmflow run --record`.
//
//   node host.mjs <component.js from `jco transpile --instantiation async`> <recording.json>
//
// Prints {"result": …, "agents": N} on stdout; a script error exits 1.
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const [componentJs, recordingPath] = process.argv.slice(2);
if (!componentJs || !recordingPath) {
  console.error('usage: node host.mjs <transpiled component .js> <recording.json>');
  process.exit(2);
}
const recording = JSON.parse(await readFile(recordingPath, 'utf8'));

// The table: (prompt, occurrence) -> the result the CLI delivered, and its
// place in the delivery order.
const table = new Map();
recording.agents.forEach((a, order) => table.set(`${a.occurrence}\u0000${a.prompt}`, { ...a, order }));
const seen = new Map();

let nextId = 1n;
let nextTimer = 1n;
let reported = null;
// id -> { order, promise } for agents in flight.
const pending = new Map();
// id -> { due, promise } for timers.
const timers = new Map();

function outcomeOf(a) {
  return a.kind === 'skipped' ? { tag: 'skipped' } : { tag: a.kind, val: a.value };
}

const host = {
  spawn(request) {
    const n = seen.get(request.prompt) ?? 0;
    seen.set(request.prompt, n + 1);
    const row = table.get(`${n}\u0000${request.prompt}`);
    if (!row) throw new Error(`no recorded reply for agent #${n} with prompt ${JSON.stringify(request.prompt.slice(0, 80))}`);
    const id = nextId++;
    // An agent is a promise; this one settles from the table.
    const promise = new Promise((resolve) => setImmediate(() => resolve({
      tag: 'agent',
      val: {
        id,
        outcome: outcomeOf(row),
        usage: { inputTokens: BigInt(row.input_tokens), outputTokens: BigInt(row.output_tokens) },
      },
    })));
    pending.set(id, { order: row.order, promise });
    return id;
  },
  report(json) { reported = json; },
  log(level, message) { process.stderr.write(`[${level}] ${message}\n`); },
  phase(title) { process.stderr.write(`== ${title}\n`); },
  setTimer(ms) {
    const id = nextTimer++;
    const promise = new Promise((resolve) => setTimeout(() => resolve({ tag: 'timer', val: id }), ms));
    timers.set(id, { due: Date.now() + ms, promise });
    return id;
  },
  clearTimer(id) { timers.delete(id); },
  loadWorkflow() { throw 'workflow() is not available in this host'; },
};

const dir = path.dirname(path.resolve(componentJs));
const { instantiate } = await import(pathToFileURL(path.resolve(componentJs)).href);
const wait = {
  // Node 20 cannot suspend a wasm call: the blocking driver is not ours.
  awaitNext() { throw new Error('this host drives the poll exports; await-next is not available'); },
};
// jco's typings name interfaces with their version, its code without.
const imports = {};
for (const [name, impl] of [['types', {}], ['host', host], ['wait', wait]]) {
  imports[`wasmflow:workflow/${name}`] = impl;
  imports[`wasmflow:workflow/${name}@0.1.0`] = impl;
}
const instance = await instantiate(
  async (file) => WebAssembly.compile(await readFile(path.join(dir, file))),
  imports,
);
const driver = instance.driver;

// The next event: the pending agent the CLI delivered first, one at a
// time; timers when no agent is in flight.
async function nextEvent() {
  if (pending.size > 0) {
    let best = null;
    for (const [id, p] of pending) if (!best || p.order < best[1].order) best = [id, p];
    pending.delete(best[0]);
    return best[1].promise;
  }
  let soonest = null;
  for (const [id, t] of timers) if (!soonest || t.due < soonest[1].due) soonest = [id, t];
  if (!soonest) throw new Error('the guest waits, but nothing is in flight');
  timers.delete(soonest[0]);
  return soonest[1].promise;
}

let step = driver.start(recording.args === undefined ? '' : JSON.stringify(recording.args), { budgetTotal: recording.budget == null ? undefined : BigInt(recording.budget) });
let delivered = 0;
while (step.tag === 'waiting') {
  const event = await nextEvent();
  if (event.tag === 'agent') delivered++;
  step = driver.deliver([event]);
}
const done = step.val;
if (done.tag === 'err') {
  console.log(JSON.stringify({ error: { name: done.val.name, message: done.val.message }, agents: delivered }));
  process.exit(1);
}
console.log(JSON.stringify({ result: JSON.parse(reported), agents: delivered }));
