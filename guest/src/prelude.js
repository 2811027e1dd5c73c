// The workflow globals of shared/workflow-api.md, evaluated once at engine
// build time (it lives in the Wizer snapshot, so no run pays for it).
// `native` holds the host calls (see lib.rs); it stays private to this closure
// so a script cannot reach the raw host interface.
(function (native) {
  'use strict';

  // Pending work by id. Not Map: QuickJS hashes integer Map keys by their
  // float64 bits, which puts every small id in one bucket (quadratic).
  const agents = Object.create(null); // agent id -> { resolve, reject }
  const timers = Object.create(null); // timer id -> { fn, args }
  let agentsInFlight = 0;
  let timersInFlight = 0;
  let currentPhase = null;
  let currentStage = 0; // pipeline stage of agent() calls made right now
  let outcome = null; // { ok: value } | { err: thrown }
  let started = false;
  let budgetTotal = null; // output tokens; null: no budget
  let budgetSpent = 0; // output tokens of every agent delivered so far

  const MAX_ITEMS = 4096;
  const LOG = { debug: 0, info: 1, warn: 2, error: 3 };

  class WorkflowBudgetExceededError extends Error {
    constructor(message) { super(message); this.name = 'WorkflowBudgetExceededError'; }
  }
  class WorkflowAgentCapError extends Error {
    constructor(message) { super(message); this.name = 'WorkflowAgentCapError'; }
  }

  function formatValue(v) {
    if (typeof v === 'string') return v;
    if (v instanceof Error) return v.stack ? `${v.name}: ${v.message}\n${v.stack}` : `${v.name}: ${v.message}`;
    if (v === undefined) return 'undefined';
    if (typeof v === 'function') return `[Function ${v.name || 'anonymous'}]`;
    if (typeof v === 'bigint') return `${v}n`;
    try {
      const s = JSON.stringify(v);
      return s === undefined ? String(v) : s;
    } catch (_) {
      return String(v);
    }
  }
  const formatArgs = (args) => args.map(formatValue).join(' ');

  function agent(prompt, opts) {
    if (typeof prompt !== 'string') {
      return Promise.reject(new TypeError(`agent(prompt, opts): prompt must be a string, got ${typeof prompt}`));
    }
    if (opts !== undefined && opts !== null && (typeof opts !== 'object' || Array.isArray(opts))) {
      return Promise.reject(new TypeError('agent(prompt, opts): opts must be an object'));
    }
    let optionsJson;
    try {
      optionsJson = JSON.stringify(opts == null ? {} : opts);
    } catch (e) {
      return Promise.reject(new TypeError(`agent(prompt, opts): opts must be JSON-serialisable: ${e.message}`));
    }
    if (budgetTotal !== null && budgetSpent >= budgetTotal) {
      return Promise.reject(new WorkflowBudgetExceededError(
        `the budget of ${budgetTotal} output tokens is spent (${budgetSpent} used): no new agents; agents already running keep their results`));
    }
    const phase = opts && typeof opts.phase === 'string' ? opts.phase : currentPhase;
    const r = native.spawn(prompt, optionsJson, phase, currentStage);
    if (typeof r !== 'number') {
      const E = r.kind === 'budget' ? WorkflowBudgetExceededError
        : r.kind === 'cap' ? WorkflowAgentCapError : TypeError;
      return Promise.reject(new E(r.message));
    }
    return new Promise((resolve, reject) => {
      agents[r] = { resolve, reject };
      agentsInFlight++;
    });
  }

  const budget = Object.freeze({
    get total() { return budgetTotal; },
    spent() { return budgetSpent; },
    remaining() { return budgetTotal === null ? Infinity : Math.max(0, budgetTotal - budgetSpent); },
  });

  function nestedWorkflow() {
    return Promise.reject(new Error('workflow() cannot be called from a child workflow: nesting is limited to one level'));
  }

  async function workflow(nameOrPath, childArgs) {
    if (typeof nameOrPath !== 'string' && (nameOrPath === null || typeof nameOrPath !== 'object' || typeof nameOrPath.scriptPath !== 'string')) {
      throw new TypeError('workflow(nameOrPath, args): give a saved workflow name or { scriptPath: "path/to/flow.js" }');
    }
    const loaded = native.loadWorkflow(JSON.stringify(nameOrPath));
    if (typeof loaded.error === 'string') throw new Error(loaded.error);
    const run = native.evaluate(loaded.source, loaded.filename);
    // The child gets its own copy: it cannot mutate the parent's objects.
    // Called without args (or with undefined), the child's args are
    // undefined too.
    const copy = childArgs === undefined ? undefined : JSON.parse(JSON.stringify(childArgs));
    return await run(copy, nestedWorkflow);
  }

  function checkItems(fn, items) {
    if (!Array.isArray(items)) throw new TypeError(`${fn}(): expected an array, got ${typeof items}`);
    if (items.length > MAX_ITEMS) {
      throw new RangeError(`${fn}(): ${items.length} items exceed the limit of ${MAX_ITEMS} per call; split the work into several calls`);
    }
  }

  function parallel(thunks) {
    checkItems('parallel', thunks);
    thunks.forEach((t, i) => {
      if (typeof t !== 'function') {
        throw new TypeError(`parallel(): item ${i} is ${typeof t}, expected a function returning a promise (write () => agent(...))`);
      }
    });
    // Thunks run here, in input order, so their agents queue in call order.
    return Promise.all(thunks.map((t, i) => {
      const slotNull = (e) => {
        native.log(LOG.warn, `parallel(): item ${i} threw, its slot is null: ${formatValue(e)}`);
        return null;
      };
      let p;
      try { p = t(); } catch (e) { return slotNull(e); }
      return p instanceof Promise ? p.then(undefined, slotNull) : p;
    }));
  }

  function pipeline(items, ...stages) {
    checkItems('pipeline', items);
    stages.forEach((s, i) => {
      if (typeof s !== 'function') throw new TypeError(`pipeline(): stage ${i} is ${typeof s}, expected a function`);
    });
    // Each item walks all stages on its own: no barrier between stages.
    return Promise.all(items.map(async (item, index) => {
      let prev = item;
      for (let s = 0; s < stages.length; s++) {
        try {
          // Agents the stage spawns before its first await carry the stage
          // as their queue priority (see agent-request.priority).
          const outer = currentStage;
          currentStage = s;
          let step;
          try { step = stages[s](prev, item, index); } finally { currentStage = outer; }
          prev = await step;
        } catch (e) {
          native.log(LOG.warn, `pipeline(): stage ${s} threw for item ${index}, the item is null: ${formatValue(e)}`);
          return null;
        }
      }
      return prev;
    }));
  }

  function phase(title) {
    currentPhase = String(title);
    native.phase(currentPhase);
  }

  function log(...msg) { native.log(LOG.info, formatArgs(msg)); }

  const console = Object.freeze({
    log: (...a) => native.log(LOG.info, formatArgs(a)),
    info: (...a) => native.log(LOG.info, formatArgs(a)),
    debug: (...a) => native.log(LOG.debug, formatArgs(a)),
    warn: (...a) => native.log(LOG.warn, formatArgs(a)),
    error: (...a) => native.log(LOG.error, formatArgs(a)),
  });

  function setTimeout(fn, ms, ...args) {
    if (typeof fn !== 'function') throw new TypeError('setTimeout(fn, ms): fn must be a function');
    let delay = Number(ms);
    if (!(delay > 0)) delay = 0;
    delay = Math.min(Math.floor(delay), 0xffffffff);
    const id = native.setTimer(delay);
    timers[id] = { fn, args };
    timersInFlight++;
    return id;
  }

  function clearTimeout(id) {
    if (typeof id === 'number' && timers[id] !== undefined) {
      delete timers[id];
      timersInFlight--;
      native.clearTimer(id);
    }
  }

  // Determinism: these would make a resumed run take other branches.
  const RealDate = Date;
  function nondeterministic(what) {
    return new Error(`${what} is not available in a workflow: it would make the run non-deterministic and break resume; pass times in through args or ask an agent`);
  }
  function WorkflowDate(...a) {
    if (!new.target) throw nondeterministic('Date()');
    if (a.length === 0) throw nondeterministic('new Date() without arguments');
    return Reflect.construct(RealDate, a, new.target);
  }
  WorkflowDate.prototype = RealDate.prototype;
  Object.defineProperty(RealDate.prototype, 'constructor', { value: WorkflowDate, writable: true, configurable: true });
  WorkflowDate.UTC = RealDate.UTC;
  WorkflowDate.parse = RealDate.parse;
  WorkflowDate.now = function now() { throw nondeterministic('Date.now()'); };
  Math.random = function random() { throw nondeterministic('Math.random()'); };

  // No code generation at run time.
  const noCodegen = (what) => function () {
    throw new EvalError(`${what} is not available in a workflow: scripts cannot generate code at run time`);
  };
  const codeCtors = [
    Function,
    Object.getPrototypeOf(async function () {}).constructor,
    Object.getPrototypeOf(function* () {}).constructor,
    Object.getPrototypeOf(async function* () {}).constructor,
  ];
  for (const C of codeCtors) {
    const blocked = noCodegen('new Function / function constructors');
    blocked.prototype = C.prototype;
    Object.defineProperty(C.prototype, 'constructor', { value: blocked, writable: false, configurable: false });
  }

  const g = globalThis;
  const define = (name, value) => Object.defineProperty(g, name, { value, writable: false, enumerable: false, configurable: false });
  delete g.eval;
  delete g.SharedArrayBuffer;
  delete g.WebAssembly;
  g.Function = codeCtors[0].prototype.constructor;
  g.Date = WorkflowDate;
  define('agent', agent);
  define('parallel', parallel);
  define('pipeline', pipeline);
  define('phase', phase);
  define('budget', budget);
  define('workflow', workflow);
  define('log', log);
  define('console', console);
  define('setTimeout', setTimeout);
  define('clearTimeout', clearTimeout);
  define('WorkflowBudgetExceededError', WorkflowBudgetExceededError);
  define('WorkflowAgentCapError', WorkflowAgentCapError);

  function describe(e) {
    if (e instanceof Error) {
      return { name: String(e.name || 'Error'), message: String(e.message), stack: e.stack ? String(e.stack) : null };
    }
    return { name: 'Error', message: `uncaught non-Error value: ${formatValue(e)}`, stack: null };
  }

  // An agent has ended: count its tokens and hand back its resolvers.
  function takeAgent(id, outputTokens) {
    budgetSpent += outputTokens;
    const a = agents[id];
    if (a !== undefined) {
      delete agents[id];
      agentsInFlight--;
    }
    return a;
  }

  // The host-facing half, called from lib.rs.
  return {
    start(argsJson, run, total) {
      if (started) throw new Error('start() called twice');
      started = true;
      budgetTotal = typeof total === 'number' ? total : null;
      // Empty: no args were given, and the script sees `undefined` (as in
      // Claude Code); `null` is an explicit null.
      define('args', argsJson === '' ? undefined : JSON.parse(argsJson));
      let p;
      try { p = run(); } catch (e) { p = Promise.reject(e); }
      Promise.resolve(p).then((v) => { outcome = { ok: v }; }, (e) => { outcome = { err: e }; });
    },
    agentDone(id, value, outputTokens) {
      const a = takeAgent(id, outputTokens);
      if (a !== undefined) a.resolve(value);
      return a !== undefined;
    },
    agentError(id, message, outputTokens) {
      const a = takeAgent(id, outputTokens);
      if (a !== undefined) a.reject(new Error(message));
      return a !== undefined;
    },
    timerFired(id) {
      const t = timers[id];
      if (t === undefined) return;
      delete timers[id];
      timersInFlight--;
      try {
        t.fn(...t.args);
      } catch (e) {
        // As in Node: an exception nobody can catch ends the program.
        if (outcome === null) outcome = { err: e };
      }
    },
    // -> { state: 'waiting', inflight } | { state: 'ok', json } | { state: 'err', name, message, stack }
    status() {
      if (outcome !== null) {
        if ('err' in outcome) return { state: 'err', ...describe(outcome.err) };
        let json;
        try {
          json = JSON.stringify(outcome.ok === undefined ? null : outcome.ok);
        } catch (e) {
          return { state: 'err', name: 'TypeError', message: `the script's result is not JSON-serialisable: ${e.message}`, stack: null };
        }
        if (json === undefined) json = 'null';
        return { state: 'ok', json };
      }
      const inflight = agentsInFlight + timersInFlight;
      if (inflight === 0) {
        return {
          state: 'err', name: 'Deadlock',
          message: 'the script is waiting for a promise that nothing will settle (no agent or timer is in flight)',
          stack: null,
        };
      }
      return { state: 'waiting', inflight };
    },
  };
})
