"""A wasmflow host in Python (wasmtime-py): drives a workflow component
through its poll exports, driver.start / driver.deliver. Each agent runs on a
thread that answers from a table recorded by `wasmflow run --record`; the
main thread feeds finished agents to `deliver` in the order the CLI did.

    python3 host.py <component.wasm> <recording.json>

Prints {"result": ..., "agents": N} on stdout; a script error exits 1.
"""

import json
import sys
import threading
import time

from wasmtime import Engine, Store
from wasmtime.component import Component, Linker, Record, Variant


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: python3 host.py <component.wasm> <recording.json>", file=sys.stderr)
        return 2
    component_path, recording_path = sys.argv[1:]
    with open(recording_path, encoding="utf-8") as f:
        recording = json.load(f)
    table = {}
    for order, a in enumerate(recording["agents"]):
        table[(a["prompt"], a["occurrence"])] = (order, a)
    seen = {}
    pending = {}  # id -> (order, thread, box)
    timers = {}  # id -> due (monotonic seconds)
    state = {"next_id": 1, "next_timer": 1, "report": None}

    def agent(row, box):
        # The agent's work: here, the recorded reply.
        outcome = Variant(row["kind"], row.get("value")) if row["kind"] != "skipped" else Variant("skipped")
        usage = Record()
        setattr(usage, "input-tokens", row["input_tokens"])
        setattr(usage, "output-tokens", row["output_tokens"])
        box["outcome"], box["usage"] = outcome, usage

    def spawn(_store, request):
        prompt = request.prompt
        n = seen.get(prompt, 0)
        seen[prompt] = n + 1
        if (prompt, n) not in table:
            raise RuntimeError(f"no recorded reply for agent #{n} with prompt {prompt[:80]!r}")
        order, row = table[(prompt, n)]
        agent_id = state["next_id"]
        state["next_id"] += 1
        box = {}
        thread = threading.Thread(target=agent, args=(row, box))
        thread.start()
        pending[agent_id] = (order, thread, box)
        return agent_id

    def report(_store, result_json):
        state["report"] = result_json

    def log(_store, level, message):
        print(f"[{level}] {message}", file=sys.stderr)

    def phase(_store, title):
        print(f"== {title}", file=sys.stderr)

    def set_timer(_store, delay_ms):
        timer_id = state["next_timer"]
        state["next_timer"] += 1
        timers[timer_id] = time.monotonic() + delay_ms / 1000
        return timer_id

    def clear_timer(_store, timer_id):
        timers.pop(timer_id, None)

    def load_workflow(_store, _reference):
        return "workflow() is not available in this host"

    def await_next(_store):
        raise RuntimeError("this host drives the poll exports; await-next is not available")

    engine = Engine()
    store = Store(engine)
    linker = Linker(engine)
    with linker.root() as root:
        with root.add_instance("wasmflow:workflow/host@0.1.0") as host:
            host.add_func("spawn", spawn)
            host.add_func("report", report)
            host.add_func("log", log)
            host.add_func("phase", phase)
            host.add_func("set-timer", set_timer)
            host.add_func("clear-timer", clear_timer)
            host.add_func("load-workflow", load_workflow)
        with root.add_instance("wasmflow:workflow/wait@0.1.0") as wait:
            wait.add_func("await-next", await_next)
    component = Component.from_file(engine, component_path)
    instance = linker.instantiate(store, component)
    driver = instance.get_export_index(store, "wasmflow:workflow/driver@0.1.0")
    start = instance.get_func(store, instance.get_export_index(store, "start", driver))
    deliver = instance.get_func(store, instance.get_export_index(store, "deliver", driver))

    def call(func, *args):
        result = func(store, *args)
        func.post_return(store)
        return result

    def next_event():
        if pending:
            agent_id = min(pending, key=lambda i: pending[i][0])
            _, thread, box = pending.pop(agent_id)
            thread.join()
            result = Record()
            result.id = agent_id
            result.outcome = box["outcome"]
            result.usage = box["usage"]
            return result  # event::agent (a record; timers are ints)
        if not timers:
            raise RuntimeError("the guest waits, but nothing is in flight")
        timer_id = min(timers, key=timers.get)
        time.sleep(max(0.0, timers.pop(timer_id) - time.monotonic()))
        return timer_id

    options = Record()
    setattr(options, "budget-total", recording.get("budget"))
    step = call(start, json.dumps(recording["args"]) if "args" in recording else "", options)
    delivered = 0
    # step: an int while waiting; None when done with success; a
    # script-error record when done with an error.
    while isinstance(step, int):
        event = next_event()
        if isinstance(event, Record):
            delivered += 1
        step = call(deliver, [event])
    if step is not None:
        print(json.dumps({"error": {"name": step.name, "message": step.message}, "agents": delivered}))
        return 1
    print(json.dumps({"result": json.loads(state["report"]), "agents": delivered}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
