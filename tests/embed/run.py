"""Runs compiled workflows in three hosts and checks they agree.

For each case (every example with its sim rules, and the conformance
scripts listed below): `wasmflow build` makes the component, `wasmflow run
flow.wasm --record` runs it on the sim backend and records every agent
result, then the Node host (jco, poll driver) and the Python host
(wasmtime-py, poll driver, agents on threads) replay that table. All three
must give the same result, with the same number of agents.

    python3 tests/embed/run.py [--wasmflow PATH] [--keep DIR]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EMBED = os.path.join(ROOT, "tests", "embed")
JCO = os.path.join(EMBED, "node", "node_modules", ".bin", "jco")

# Conformance scripts that need nothing a minimal host lacks (timers work,
# but workflow() children and option checks are the CLI host's).
CONFORMANCE = [
    "01-return-object", "30-parallel-null-slot-and-order", "33-pipeline-stage-arguments",
    "34-pipeline-throw-drops-item-null-flows", "40-error-rule-resolves-null",
    "41-regex-prompt-rule", "42-schema-valid-after-two-invalid", "46-schema-text-reply-parsed",
    "47-budget-stops-loop", "48-budget-unset", "49-budget-in-flight-keep-results",
    "55-args-plain-text", "56-console-and-log", "60-phase-grouping",
    "63-promise-allsettled-and-es2021", "64-hashbang-line",
]


def cases():
    ex = os.path.join(ROOT, "examples")
    for name in sorted(os.listdir(ex)):
        if name.endswith(".js"):
            stem = name[:-3]
            yield stem, os.path.join(ex, name), ["--sim-rules", os.path.join(ex, stem + ".rules.json")], None
    for stem in CONFORMANCE:
        path = os.path.join(ROOT, "tests", "conformance", stem + ".js")
        flags, rules = [], None
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("#!"):
                    continue
                if not line.startswith("//"):
                    break
                key, _, value = line[2:].strip().partition(": ")
                if key == "flags":
                    flags = json.loads(value)
                elif key == "rules":
                    rules = json.loads(value)
        yield stem, path, flags, rules


def run(cmd, cwd, env=None):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


def check(wasmflow, work, name, script, flags, rules, env):
    d = os.path.join(work, name)
    os.makedirs(d)
    if rules is not None:
        with open(os.path.join(d, "rules.json"), "w") as f:
            json.dump(rules, f)
        flags = flags + ["--sim-rules", "rules.json"]
    out = run([wasmflow, "build", "--quiet", "-o", "flow.wasm", script], d, env)
    if out.returncode != 0:
        return f"build failed: {out.stderr}"
    out = run([wasmflow, "run", "flow.wasm", "--json", "--quiet", "--no-journal", "--record", "rec.json"] + flags, d, env)
    if out.returncode != 0:
        return f"wasmflow run exited {out.returncode}: {out.stderr}"
    cli = json.loads(out.stdout)
    with open(os.path.join(d, "rec.json")) as f:
        recorded = len(json.load(f)["agents"])
    out = run([JCO, "transpile", "flow.wasm", "--instantiation", "async", "--quiet", "-o", "jco", "--name", "flow"], d)
    if out.returncode != 0:
        return f"jco transpile failed: {out.stderr}"
    results = {"cli": {"result": cli["result"], "agents": recorded}}
    for host, cmd in [
        ("node", ["node", os.path.join(EMBED, "node", "host.mjs"), "jco/flow.js", "rec.json"]),
        ("python", [sys.executable, os.path.join(EMBED, "python", "host.py"), "flow.wasm", "rec.json"]),
    ]:
        out = run(cmd, d)
        if out.returncode != 0:
            return f"{host} host exited {out.returncode}: {out.stdout}{out.stderr[-2000:]}"
        results[host] = json.loads(out.stdout)
    if not (results["cli"] == results["node"] == results["python"]):
        return "results differ:\n" + "\n".join(f"  {h}: {json.dumps(r, sort_keys=True)}" for h, r in results.items())
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--wasmflow", default=os.path.join(ROOT, "target", "debug", "wasmflow"))
    parser.add_argument("--keep", help="work in this directory and keep it")
    args = parser.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="wasmflow-embed-")
    if args.keep:
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
    env = dict(os.environ)
    for k in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
        env.pop(k, None)
    failures, n = [], 0
    for name, script, flags, rules in cases():
        n += 1
        problem = check(args.wasmflow, work, name, script, flags, rules, env)
        print(f"{'ok  ' if problem is None else 'FAIL'} {name}", flush=True)
        if problem:
            failures.append(f"== {name}: {problem}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("\n".join(failures), file=sys.stderr)
        print(f"{len(failures)} of {n} cases differ between hosts", file=sys.stderr)
        return 1
    print(f"all {n} cases: the CLI, Node (jco) and Python (wasmtime-py) hosts agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
