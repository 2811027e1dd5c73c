"""`wasmflow mcp` driven over stdio by the official MCP Python SDK.

Every case starts the real server (target/debug/wasmflow mcp) in a fresh
project with a fresh HOME holding the user's config, talks to it through
`mcp.ClientSession`, and checks what comes back and what is on disk.

    tests/mcp/run.sh [-k SUBSTRING] [--wasmflow PATH]
"""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager

import httpx2
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cases  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WASMFLOW = os.path.join(ROOT, "target", "debug", "wasmflow")
INSPECTOR = os.environ.get("WASMFLOW_MCP_INSPECTOR", "")
CASE_DIRS = []
TOOLS = {
    "workflow_run", "workflow_status", "workflow_result", "workflow_stop", "workflow_skip",
    "workflow_retry", "workflow_agent", "workflow_list", "workflow_plan",
}

# Three agents one after another: with --sim-latency it takes a while.
SEQUENTIAL = """
export const meta = { name: 'steps', description: 'agents one after another', phases: [{ title: 'Steps' }] }
phase('Steps')
const out = []
for (let i = 0; i < (args?.n ?? 3); i++) out.push(await agent(`step ${i}`, { label: `step-${i}` }))
return { out }
"""
FAN_OUT = """
const n = args?.n ?? 10
const r = await parallel(Array.from({ length: n }, (_, i) => () => agent(`item ${i}`, { label: `item-${i}` })))
return r.length
"""


class Case:
    """A project and a HOME of its own."""

    def __init__(self, name, user_config="", project_config=None):
        self.dir = tempfile.mkdtemp(prefix=f"wf-mcp-{name}-")
        CASE_DIRS.append(self.dir)
        self.home = os.path.join(self.dir, "home")
        self.project = os.path.join(self.dir, "project")
        os.makedirs(os.path.join(self.home, ".config", "wasmflow"))
        os.makedirs(self.project)
        if user_config:
            with open(os.path.join(self.home, ".config", "wasmflow", "config.toml"), "w") as f:
                f.write(user_config)
        if project_config is not None:
            with open(os.path.join(self.project, "wasmflow.toml"), "w") as f:
                f.write(project_config)
        self.env = {
            "HOME": self.home,
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "WASMFLOW_CACHE_DIR": os.path.join(ROOT, "target", "wasmflow-test-cache"),
            "XDG_DATA_HOME": os.path.join(self.home, ".local", "share"),
        }

    def runs(self):
        d = os.path.join(self.project, ".wasmflow", "runs")
        return sorted(x for x in os.listdir(d) if not x.startswith(".")) if os.path.isdir(d) else []

    @asynccontextmanager
    async def session(self, *flags, elicit=None, logs=None):
        params = StdioServerParameters(
            command=WASMFLOW, args=["mcp", "--project", self.project, *flags], env=self.env, cwd=self.project
        )
        kwargs = {}
        if elicit is not None:
            kwargs["elicitation_callback"] = elicit
        if logs is not None:
            kwargs["logging_callback"] = logs
        async with stdio_client(params) as (r, w):
            async with ClientSession(r, w, **kwargs) as s:
                await s.initialize()
                yield s

    def cli(self, *args):
        return subprocess.run([WASMFLOW, *args], cwd=self.project, env=self.env, capture_output=True, text=True, timeout=120)


def body(result):
    """The JSON text of a tool result."""
    return json.loads(result.content[0].text)


def text(result):
    return result.content[0].text


async def call(s, name, args=None, **kw):
    return await s.call_tool(name, args or {}, **kw)


async def launched(s, args):
    r = await call(s, "workflow_run", args)
    assert not r.is_error, text(r)
    b = body(r)
    assert b["status"] == "async_launched", b
    assert r.structured_content == b, "structured content is the JSON text"
    return b


async def result_of(s, run_id, wait=60, **kw):
    r = await call(s, "workflow_result", {"runId": run_id, "waitSeconds": wait}, **kw)
    assert not r.is_error, text(r)
    return body(r)


async def refused(s, name, args, *needles):
    r = await call(s, name, args)
    assert r.is_error, f"{name} {args} was not refused: {text(r)[:300]}"
    for n in needles:
        assert n in text(r), f"{n!r} not in {text(r)!r}"
    return text(r)


# --- cases ------------------------------------------------------------------


async def case_tools_listed():
    c = Case("tools")
    async with c.session() as s:
        tools = (await s.list_tools()).tools
        assert {t.name for t in tools} == TOOLS, [t.name for t in tools]
        for t in tools:
            assert t.input_schema.get("additionalProperties") is False, t.name
        run = next(t for t in tools if t.name == "workflow_run")
        assert set(run.input_schema["properties"]) == {"script", "name", "scriptPath", "args", "resumeFromRunId", "backend"}


async def case_inline_script_result_equals_cli():
    c = Case("inline")
    script = SEQUENTIAL
    async with c.session() as s:
        b = await launched(s, {"script": script, "args": {"n": 2}})
        assert b["backend"] == "sim" and b["workflowName"] == "steps", b
        assert b["phases"] == [{"title": "Steps", "agents": 2}], b["phases"]
        assert b["estimate"]["agents"]["typical"] == 2, b["estimate"]
        path = b["scriptPath"]
        assert path.startswith(os.path.realpath(c.project) + "/.wasmflow/scripts/") and path.endswith(".js"), path
        assert open(path).read() == script
        res = await result_of(s, b["runId"])
        assert res["status"] == "ok" and res["backend"] == "sim", res
        st = body(await call(s, "workflow_status", {"runId": b["runId"]}))
        assert st["status"] == "ok" and st["agents"]["done"] == 2, st
        assert [p["title"] for p in st["phases"]] == ["Steps"], st
    cli = c.cli("run", path, "--args", '{"n": 2}')
    assert cli.returncode == 0, cli.stderr
    assert res["result"] == json.loads(cli.stdout), (res["result"], cli.stdout)


async def case_session_closed_mid_run():
    c = Case("closed")
    async with c.session("--sim-latency", "1s") as s:
        b = await launched(s, {"script": SEQUENTIAL, "args": {"n": 3}})
        st = body(await call(s, "workflow_status", {"runId": b["runId"]}))
        assert st["status"] in ("starting", "running"), st
    # The client is gone and so is its server; the run goes on.
    async with c.session() as s:
        res = await result_of(s, b["runId"], wait=60)
        assert res["status"] == "ok", res
        assert len(res["result"]["out"]) == 3, res


async def case_refused_script_names_its_line():
    c = Case("refused")
    async with c.session() as s:
        msg = await refused(s, "workflow_run", {"script": "const a = 1\nconst t = Date.now()\nreturn t"}, "Date.now()", "line 2")
        assert ".wasmflow/scripts/" in msg, msg
        assert c.runs() == [], c.runs()


async def case_two_megabyte_result_paged():
    c = Case("paged")
    script = "const s = await agent('x'); return { big: 'é'.repeat(1100000) + 'z'.repeat(123), s }"
    async with c.session() as s:
        b = await launched(s, {"script": script})
        first = await result_of(s, b["runId"])
        assert "result" not in first and first["offset"] == 0 and first["next_offset"], list(first)
        pages, offset, n = [], 0, 0
        while offset is not None:
            p = body(await call(s, "workflow_result", {"runId": b["runId"], "offset": offset, "maxBytes": 300000}))
            pages.append(p["data"])
            offset = p["next_offset"]
            n += 1
        joined = "".join(pages).encode()
    on_disk = open(os.path.join(c.project, ".wasmflow", "runs", b["runId"], "result.json"), "rb").read()
    assert joined == on_disk, (len(joined), len(on_disk))
    assert len(on_disk) > 2_000_000 and n >= 7, (len(on_disk), n)


async def case_wait_sends_progress():
    c = Case("progress")
    seen = []

    async def progress(p, total, message):
        seen.append((time.monotonic(), p, message))

    async with c.session("--sim-latency", "2s") as s:
        b = await launched(s, {"script": SEQUENTIAL, "args": {"n": 6}})
        start = time.monotonic()
        res = await result_of(s, b["runId"], wait=120, progress_callback=progress)
        took = time.monotonic() - start
    assert res["status"] == "ok", res
    assert took >= 10, took
    assert len(seen) >= 2, seen
    gaps = [b[0] - a[0] for a, b in zip([(start,)] + seen, seen)]
    assert max(gaps) <= 10.5, gaps
    assert all(a[1] < b[1] for a, b in zip(seen, seen[1:])), "progress increases"
    assert "agents done" in seen[-1][2], seen[-1]


async def case_stop_then_resume_pays_once():
    c = Case("resume")
    async with c.session("--sim-latency", "700ms") as s:
        b = await launched(s, {"script": SEQUENTIAL, "args": {"n": 6}})
        run_id = b["runId"]
        await asyncio.sleep(2.5)
        stopped = body(await call(s, "workflow_stop", {"runId": run_id}))
        assert stopped["status"] in ("paused", "running"), stopped
        for _ in range(100):
            st = body(await call(s, "workflow_status", {"runId": run_id}))
            if st["status"] != "running":
                break
            await asyncio.sleep(0.1)
        assert st["status"] == "paused", st
        done_before = st["agents"]["done"]
        assert 1 <= done_before < 6, st
        again = await launched(s, {"resumeFromRunId": run_id})
        assert again["runId"] == run_id, again
        res = await result_of(s, run_id)
    assert res["status"] == "ok" and len(res["result"]["out"]) == 6, res
    journal = res["summary"]["from_journal"]["agents"]
    live = res["summary"]["live"]["agents"]
    assert journal >= done_before and journal + live == 6, res["summary"]


async def case_caps_and_project_cannot_raise():
    c = Case(
        "caps",
        user_config='exec = "touch MARKER; cat >/dev/null; echo ok"\n[mcp]\nmax_agents = 5\n',
        project_config='[mcp]\nmax_agents = 1000\nbackends = ["sim", "exec"]\nmax_running_runs = 1000\n',
    )
    async with c.session() as s:
        await refused(s, "workflow_run", {"script": FAN_OUT, "args": {"n": 10}}, "10 agents", "max_agents")
        await refused(s, "workflow_run", {"script": FAN_OUT, "args": {"n": 3}, "backend": "exec"}, "`exec` is not allowed")
        await refused(s, "workflow_run", {"script": FAN_OUT, "exec": "touch MARKER"}, "unknown field `exec`")
        await refused(s, "workflow_plan", {"script": FAN_OUT, "backend": "exec"}, "not allowed")
        b = await launched(s, {"script": FAN_OUT, "args": {"n": 4}})
        assert (await result_of(s, b["runId"]))["result"] == 4
    assert not os.path.exists(os.path.join(c.project, "MARKER")), "the exec command ran"
    assert c.runs() == [b["runId"]], c.runs()


async def case_paths_refused():
    c = Case("paths")
    outside = os.path.join(c.dir, "outside.js")
    with open(outside, "w") as f:
        f.write("return 'outside'")
    os.symlink(outside, os.path.join(c.project, "link.js"))
    with open(os.path.join(c.project, ".env"), "w") as f:
        f.write("SECRET_KEY=hunter2\n")
    os.makedirs(os.path.join(c.project, "sub"))
    with open(os.path.join(c.project, "sub", "ok.js"), "w") as f:
        f.write("return await agent('inside')")
    async with c.session() as s:
        await refused(s, "workflow_run", {"scriptPath": "../../etc/passwd"}, "outside the project")
        await refused(s, "workflow_run", {"scriptPath": "/etc/passwd"}, "outside the project")
        await refused(s, "workflow_run", {"scriptPath": "link.js"}, "outside the project")
        msg = await refused(s, "workflow_run", {"scriptPath": ".env"}, "not a workflow")
        assert "hunter2" not in msg, msg
        await refused(s, "workflow_run", {"name": "../outside"}, "not a workflow name")
        await refused(s, "workflow_run", {"script": "return 1", "scriptPath": "sub/ok.js"}, "one of")
        assert c.runs() == [], c.runs()
        b = await launched(s, {"scriptPath": "sub/ok.js"})
        assert (await result_of(s, b["runId"]))["result"].startswith("sim reply")


async def case_bad_input_keeps_serving():
    c = Case("bad")
    async with c.session() as s:
        await refused(s, "workflow_status", {"runId": 5}, "bad input")
        await refused(s, "workflow_status", {"runId": "20990101-000000-dead"}, "no run")
        await refused(s, "workflow_status", {"runId": "../../x"}, "not a run id")
        await refused(s, "workflow_result", {"runId": "20990101-000000-dead"}, "no run")
        await refused(s, "workflow_run", {"script": "x" * (10 << 20)}, "limit")
        await refused(s, "workflow_run", {"script": "return args", "args": "{not json"}, "not JSON")
        await refused(s, "workflow_run", {}, "give the workflow")
        await refused(s, "workflow_agent", {"runId": "20990101-000000-dead", "agent": True}, "no run")
        await refused(s, "workflow_list", {"x": 1}, "unknown field")
        r = await s.call_tool("no_such_tool", {})
        assert r.is_error and "no tool" in text(r), text(r)
        assert {t.name for t in (await s.list_tools()).tools} == TOOLS
        b = await launched(s, {"script": "return args", "args": '{"a": [1, 2]}'})
        assert (await result_of(s, b["runId"]))["result"] == {"a": [1, 2]}
        b = await launched(s, {"script": "return args", "args": "plain text"})
        assert (await result_of(s, b["runId"]))["result"] == "plain text"


async def case_fifty_concurrent_runs():
    c = Case("fifty", user_config="[mcp]\nmax_running_runs = 64\n")
    async with c.session() as s:
        calls = [launched(s, {"script": FAN_OUT, "args": {"n": 3 + i % 4}}) for i in range(50)]
        started = await asyncio.gather(*calls)
        ids = {b["runId"] for b in started}
        assert len(ids) == 50, len(ids)
        results = await asyncio.gather(*[result_of(s, b["runId"], wait=300) for b in started])
    for i, r in enumerate(results):
        assert r["status"] == "ok" and r["result"] == 3 + i % 4, (i, r)


async def case_running_runs_capped():
    c = Case("running", user_config="[mcp]\nmax_running_runs = 2\n")
    async with c.session("--sim-latency", "3s") as s:
        a = await launched(s, {"script": SEQUENTIAL})
        b = await launched(s, {"script": SEQUENTIAL, "args": {"n": 2}})
        await refused(s, "workflow_run", {"script": SEQUENTIAL, "args": {"n": 1}}, "max_running_runs = 2")
        await call(s, "workflow_stop", {"runId": a["runId"]})
        await call(s, "workflow_stop", {"runId": b["runId"]})


async def case_consent_by_elicitation():
    cfg = (
        'exec = "cat >/dev/null; echo ok"\n'
        '[plan]\nconfirm_agents = 3\n'
        '[mcp]\nbackends = ["exec", "sim"]\nallow_unpriced = true\n'
    )
    c = Case("consent", user_config=cfg)
    asked = []

    async def yes(ctx, params):
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={})

    async def no(ctx, params):
        asked.append(params.message)
        return types.ElicitResult(action="decline")

    async with c.session() as s:
        await refused(s, "workflow_run", {"script": FAN_OUT, "args": {"n": 5}, "backend": "exec"}, "cannot ask the user")
        small = await launched(s, {"script": FAN_OUT, "args": {"n": 2}, "backend": "exec"})
        assert small["backend"] == "exec"
        assert (await result_of(s, small["runId"]))["result"] == 2
    async with c.session(elicit=no) as s:
        await refused(s, "workflow_run", {"script": FAN_OUT, "args": {"n": 5}, "backend": "exec"}, "declined")
    async with c.session(elicit=yes) as s:
        b = await launched(s, {"script": FAN_OUT, "args": {"n": 5}, "backend": "exec"})
        assert (await result_of(s, b["runId"]))["result"] == 5
    assert len(asked) == 2 and "5 agents" in asked[0], asked
    assert len(c.runs()) == 2, c.runs()


async def case_end_of_run_message_and_steering():
    c = Case("steer")
    messages = []

    async def log(params):
        messages.append(params.data)

    async with c.session("--sim-latency", "1500ms", logs=log) as s:
        b = await launched(s, {"script": FAN_OUT, "args": {"n": 3}})
        run_id = b["runId"]
        for _ in range(100):
            st = body(await call(s, "workflow_status", {"runId": run_id}))
            if len(st["running"]) == 3:
                break
            await asyncio.sleep(0.05)
        assert len(st["running"]) == 3, st
        skipped = body(await call(s, "workflow_skip", {"runId": run_id, "agent": "item-1"}))
        assert skipped["agent"] == 2, skipped
        res = await result_of(s, run_id)
        assert res["status"] == "ok" and res["result"] == 3, res
        agent = body(await call(s, "workflow_agent", {"runId": run_id, "agent": 1}))
        assert "item 0" in json.dumps(agent), agent
        await refused(s, "workflow_retry", {"runId": run_id, "agent": 1}, "not running")
        await refused(s, "workflow_stop", {"runId": run_id}, "not running")
        listed = body(await call(s, "workflow_list"))["workflows"]
        assert any(w["origin"] == "bundled" for w in listed), listed
        plan = body(await call(s, "workflow_plan", {"script": FAN_OUT, "args": {"n": 7}}))
        assert plan["estimate"]["agents"]["typical"] == 7 and plan["backend"] == "sim", plan
        for _ in range(50):
            if messages:
                break
            await asyncio.sleep(0.1)
    assert any(m.get("runId") == run_id and m.get("status") == "ok" for m in messages), messages


async def case_resources_and_prompts():
    c = Case("resources")
    os.makedirs(os.path.join(c.project, ".wasmflow", "workflows"))
    with open(os.path.join(c.project, ".wasmflow", "workflows", "echo-back.js"), "w") as f:
        f.write("export const meta = { name: 'echo-back', description: 'Says its args back', whenToUse: 'testing' }\nreturn await agent(`echo ${args}`)\n")
    async with c.session() as s:
        listed = (await s.list_resources()).resources
        assert [str(r.uri) for r in listed] == ["wasmflow://contract"], listed
        contract = (await s.read_resource("wasmflow://contract")).contents[0]
        assert contract.mime_type == "text/markdown"
        assert contract.text == open(os.path.join(ROOT, "docs", "workflow-api.md")).read()
        templates = (await s.list_resource_templates()).resource_templates
        assert {t.uri_template for t in templates} == {"wasmflow://runs/{runId}/status", "wasmflow://runs/{runId}/result"}
        b = await launched(s, {"script": "return { n: 7 }"})
        await result_of(s, b["runId"])
        res = (await s.read_resource(f"wasmflow://runs/{b['runId']}/result")).contents[0]
        assert json.loads(res.text) == {"n": 7} and res.mime_type == "application/json", res
        st = json.loads((await s.read_resource(f"wasmflow://runs/{b['runId']}/status")).contents[0].text)
        assert st["status"] == "ok", st
        try:
            await s.read_resource("wasmflow://runs/20990101-000000-dead/result")
            raise AssertionError("an unknown run's resource was read")
        except AssertionError:
            raise
        except Exception as e:  # the SDK raises the JSON-RPC error
            assert "no run" in str(e), e
        prompts = (await s.list_prompts()).prompts
        names = {p.name for p in prompts}
        assert "echo-back" in names and "deep-research" in names, names
        echo = next(p for p in prompts if p.name == "echo-back")
        assert [a.name for a in echo.arguments] == ["args"] and not echo.arguments[0].required
        got = await s.get_prompt("echo-back", {"args": "what is wasm?"})
        msg = got.messages[0].content.text
        assert '"name":"echo-back"' in msg and '"args":"what is wasm?"' in msg and "workflow_run" in msg, msg


def raw_server(c, capabilities):
    """A server on raw pipes, initialized with `capabilities`."""
    p = subprocess.Popen(
        [WASMFLOW, "mcp", "--project", c.project, "--sim-latency", "1s"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=c.env, text=True,
    )
    ids = iter(range(1, 1_000_000))

    def request(method, params):
        i = next(ids)
        p.stdin.write(json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}) + "\n")
        p.stdin.flush()
        while True:
            line = p.stdout.readline()
            assert line, "the server closed its stdout"
            m = json.loads(line)
            if m.get("id") == i:
                return m

    init = request("initialize", {"protocolVersion": "2025-11-25", "capabilities": capabilities, "clientInfo": {"name": "raw", "version": "0"}})
    assert "result" in init, init
    p.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
    p.stdin.flush()
    return p, request


def case_tasks_extension():
    c = Case("tasks")
    p, request = raw_server(c, {"extensions": {"io.modelcontextprotocol/tasks": {}}})
    try:
        init_caps = request("tools/list", {})["result"]
        assert len(init_caps["tools"]) == len(TOOLS)
        r = request("tools/call", {"name": "workflow_run", "arguments": {"script": SEQUENTIAL, "args": {"n": 2}}})["result"]
        assert r["resultType"] == "task" and r["status"] == "working", r
        task_id = r["taskId"]
        for _ in range(100):
            t = request("tasks/get", {"taskId": task_id})["result"]
            if t["status"] != "working":
                break
            time.sleep(0.2)
        assert t["status"] == "completed", t
        out = t["result"]["structuredContent"]["result"]["out"]
        assert len(out) == 2 and out[1].endswith(": step 1"), t
        assert t["result"]["structuredContent"]["status"] == "ok"
        r = request("tools/call", {"name": "workflow_run", "arguments": {"script": SEQUENTIAL, "args": {"n": 6}}})["result"]
        time.sleep(1.5)
        assert "error" not in request("tasks/cancel", {"taskId": r["taskId"]})
        for _ in range(100):
            t = request("tasks/get", {"taskId": r["taskId"]})["result"]
            if t["status"] != "working":
                break
            time.sleep(0.2)
        assert t["status"] == "cancelled" and "resumeFromRunId" in t["statusMessage"], t
        bad = request("tasks/get", {"taskId": "20990101-000000-dead"})
        assert "error" in bad, bad
    finally:
        p.stdin.close()
        p.wait(timeout=10)
    # A client without the extension gets plain results.
    p, request = raw_server(c, {})
    try:
        r = request("tools/call", {"name": "workflow_run", "arguments": {"script": "return 1"}})["result"]
        assert r["structuredContent"]["status"] == "async_launched", r
        assert "error" in request("tasks/get", {"taskId": r["structuredContent"]["runId"]})
    finally:
        p.stdin.close()
        p.wait(timeout=10)


class HttpServer:
    """`wasmflow mcp --listen 127.0.0.1:0`: its URL and token from stderr."""

    def __init__(self, c):
        self.p = subprocess.Popen(
            [WASMFLOW, "mcp", "--project", c.project, "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=c.env, text=True,
        )
        self.url = self.token = None
        while self.url is None or self.token is None:
            line = self.p.stderr.readline()
            assert line, "the server ended before saying where it listens"
            if "serving MCP at " in line:
                self.url = line.split("serving MCP at ")[1].strip()
            if "wasmflow mcp: token " in line:
                self.token = line.split("token ")[1].strip()
        self.host = self.url.split("/")[2]

    def close(self):
        self.p.terminate()
        self.p.wait(timeout=10)


async def case_streamable_http_with_token():
    c = Case("http")
    server = HttpServer(c)
    try:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {server.token}"}) as http:
            async with streamable_http_client(server.url, http_client=http) as (r, w):
                async with ClientSession(r, w) as s:
                    await s.initialize()
                    assert {t.name for t in (await s.list_tools()).tools} == TOOLS
                    b = await launched(s, {"script": FAN_OUT, "args": {"n": 3}})
                    res = await result_of(s, b["runId"])
                    assert res["result"] == 3 and res["backend"] == "sim", res
                    contract = (await s.read_resource("wasmflow://contract")).contents[0].text
                    assert "agent(" in contract
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
        accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        async with httpx2.AsyncClient() as raw:
            r = await raw.post(server.url, json=init, headers=accept)
            assert r.status_code == 401 and "token" in r.text, (r.status_code, r.text)
            r = await raw.post(server.url, json=init, headers={**accept, "Authorization": "Bearer wrong"})
            assert r.status_code == 401, r.status_code
            good = {**accept, "Authorization": f"Bearer {server.token}"}
            r = await raw.post(server.url, json=init, headers={**good, "Host": "evil.example:80"})
            assert r.status_code == 403 and "Host" in r.text, (r.status_code, r.text)
            r = await raw.post(server.url, json=init, headers={**good, "Origin": "http://evil.example"})
            assert r.status_code == 403 and "Origin" in r.text, (r.status_code, r.text)
            r = await raw.post(server.url, json=init, headers={**good, "Origin": f"http://{server.host}"})
            assert r.status_code == 200, (r.status_code, r.text)
    finally:
        server.close()
    # Only loopback without the explicit flag.
    p = subprocess.run([WASMFLOW, "mcp", "--listen", "0.0.0.0:0"], env=c.env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "--allow-remote" in p.stderr, (p.returncode, p.stderr)


def case_inspector_cli_lists_tools():
    """The MCP Inspector's CLI (npm, pinned by tests/mcp/run.sh), over stdio and HTTP."""
    assert INSPECTOR, "WASMFLOW_MCP_INSPECTOR is not set (tests/mcp/run.sh sets it)"
    c = Case("inspector")
    out = subprocess.run(
        [INSPECTOR, "--cli", WASMFLOW, "mcp", "--project", c.project, "--method", "tools/list"],
        env={**c.env, "PATH": os.environ["PATH"]}, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout[out.stdout.index("{"):])
    assert {t["name"] for t in listed["tools"]} == TOOLS, listed
    server = HttpServer(c)
    try:
        out = subprocess.run(
            [INSPECTOR, "--cli", server.url, "--transport", "http", "--header", f"Authorization: Bearer {server.token}", "--method", "tools/list"],
            env={**c.env, "PATH": os.environ["PATH"]}, capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert {t["name"] for t in json.loads(out.stdout[out.stdout.index("{"):])["tools"]} == TOOLS
    finally:
        server.close()


def case_stdout_is_only_json_rpc():
    """Raw pipes: every line the server writes is a JSON-RPC message."""
    c = Case("stdout")
    p = subprocess.Popen(
        [WASMFLOW, "mcp", "--project", c.project], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, env=c.env, text=True,
    )
    send = lambda m: (p.stdin.write(json.dumps(m) + "\n"), p.stdin.flush())
    send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
    assert json.loads(p.stdout.readline())["id"] == 1
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "workflow_run", "arguments": {"script": "console.log('to stdout?'); log('hello'); return await agent('x')"}}})
    reply = json.loads(p.stdout.readline())
    run_id = json.loads(reply["result"]["content"][0]["text"])["runId"]
    send({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "workflow_result", "arguments": {"runId": run_id, "waitSeconds": 30}}})
    lines = []
    while True:
        line = p.stdout.readline()
        assert line, "the server closed its stdout"
        lines.append(json.loads(line))
        if lines[-1].get("id") == 3:
            break
    p.stdin.close()
    assert p.wait(timeout=10) == 0
    assert all(m.get("jsonrpc") == "2.0" for m in lines), lines


if __name__ == "__main__":
    cases.main(globals(), CASE_DIRS, "mcp")
