"""`wasmflow serve` over HTTP and in a real browser.

API and security cases speak HTTP to a live server over live sim runs; the
browser cases drive Debian's headless chromium through chromedriver with
Selenium (pinned by tests/dashboard/run.sh). Screenshots go to
target/dashboard-shots/ (two of them are committed under docs/).

    tests/dashboard/run.sh [-k SUBSTRING] [--wasmflow PATH]
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cases  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WASMFLOW = os.path.join(ROOT, "target", "debug", "wasmflow")
SHOTS = os.path.join(ROOT, "target", "dashboard-shots")
XSS = '<img src=x onerror="window.__xss=1">'
DIRS = []

FAN = """export const meta = { name: 'fan-out', description: 'agents in parallel', phases: [{ title: 'Work' }, { title: 'Sum' }] }
phase('Work')
const r = await parallel(Array.from({ length: args.n }, (_, i) => () => agent(`item ${i}`, { label: `item-${i}` })))
phase('Sum')
log(`${r.filter(Boolean).length} of ${args.n} answered`)
return { answered: r.filter(Boolean).length }
"""


class Project:
    def __init__(self, name, config=None):
        self.dir = tempfile.mkdtemp(prefix=f"wf-dash-{name}-")
        DIRS.append(self.dir)
        self.home = os.path.join(self.dir, "home")
        os.makedirs(self.home)
        if config:
            with open(os.path.join(self.dir, "wasmflow.toml"), "w") as f:
                f.write(config)
        self.env = {
            "HOME": self.home, "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "WASMFLOW_CACHE_DIR": os.path.join(ROOT, "target", "wasmflow-test-cache"),
            "XDG_DATA_HOME": os.path.join(self.home, ".local", "share"),
        }
        self.server = None

    def write(self, name, text):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(text)

    def detach(self, script, *flags, args=None):
        cmd = [WASMFLOW, "run", script, "-d", "--quiet", *flags]
        if args is not None:
            cmd += ["--args", json.dumps(args)]
        p = subprocess.run(cmd, cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()

    def wait(self, run_id):
        subprocess.run([WASMFLOW, "wait", run_id], cwd=self.dir, env=self.env, capture_output=True, timeout=120)

    def serve(self):
        self.server = subprocess.Popen([WASMFLOW, "serve", "--port", "0"], cwd=self.dir, env=self.env,
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.url = self.server.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.url
        self.base = self.url.split("/?")[0]
        self.token = self.url.split("token=")[1]
        self.host = self.base.split("//")[1]
        return self

    def close(self):
        if self.server:
            self.server.terminate()
            self.server.wait(timeout=10)

    def http(self, method, path, body=None, headers=None, token=True):
        h = {"Authorization": f"Bearer {self.token}"} if token else {}
        h.update(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def get(self, path):
        status, body, _ = self.http("GET", path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)

    def until(self, what, check, timeout=60):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            v = check()
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")


def case_api_over_a_live_200_agent_run():
    p = Project("api")
    p.write("fan.js", FAN)
    run_id = p.detach("fan.js", "--sim-latency", "150", "--concurrency", "16", args={"n": 200})
    p.serve()
    try:
        listed = p.get("/api/runs")["runs"]
        assert [r["id"] for r in listed] == [run_id] and listed[0]["name"] == "fan-out", listed
        assert listed[0]["status"] in ("starting", "running"), listed
        # The event stream from the start: every agent's end arrives, then `end`.
        req = urllib.request.Request(p.base + f"/api/runs/{run_id}/events", headers={"Authorization": f"Bearer {p.token}"})
        done, kinds = set(), set()
        with urllib.request.urlopen(req, timeout=120) as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            event = None
            for raw in stream:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    if event == "end":
                        break
                    e = json.loads(line[6:])
                    kinds.add(e["type"])
                    if e["type"] == "agent_done":
                        done.add(e["id"])
                    event = None
        assert done == set(range(1, 201)), len(done)
        assert {"run_started", "phase", "agent_started", "log", "run_finished"} <= kinds, kinds
        run = p.get(f"/api/runs/{run_id}")
        assert run["state"]["status"] == "ok" and run["state"]["agents"]["done"] == 200, run["state"]["agents"]
        assert [ph["title"] for ph in run["state"]["phases"]] == ["Work", "Sum"], run["state"]["phases"]
        agents = p.get(f"/api/runs/{run_id}/agents")["agents"]
        assert len(agents) == 200 and all(a["state"] == "done" and a["attempts"] == 1 for a in agents), agents[:2]
        assert agents[41]["label"] == "item-41" and agents[41]["phase"] == "Work" and agents[41]["duration_ms"] >= 100, agents[41]
        one = p.get(f"/api/runs/{run_id}/agents/42")
        assert one["prompt"] == "item 41" and one["output"].startswith("sim reply"), one
        status, body, headers = p.http("GET", f"/api/runs/{run_id}/result?download=1")
        assert status == 200 and json.loads(body) == {"answered": 200}
        assert "attachment" in {k.lower(): v for k, v in headers.items()}.get("content-disposition", ""), headers
        status, body, _ = p.http("GET", f"/api/runs/{run_id}/script")
        assert status == 200 and body.decode() == FAN
        status, body, _ = p.http("GET", f"/api/runs/{run_id}/agents/999")
        assert status == 404, status
    finally:
        p.close()


def case_actions_skip_retry_stop_resume():
    p = Project("actions")
    p.write("fan.js", FAN)
    run_id = p.detach("fan.js", "--sim-latency", "2000", "--concurrency", "4", args={"n": 12})
    p.serve()
    try:
        agents = p.until("4 running agents", lambda: [a for a in p.get(f"/api/runs/{run_id}/agents")["agents"] if a["state"] == "running"] if len([a for a in p.get(f"/api/runs/{run_id}/agents")["agents"] if a["state"] == "running"]) >= 4 else None)
        first, second = agents[0]["id"], agents[1]["id"]
        status, body, _ = p.http("POST", f"/api/runs/{run_id}/agents/{first}/skip")
        assert status == 200, body
        p.until("the skipped agent", lambda: any(a["id"] == first and a["state"] == "skipped" for a in p.get(f"/api/runs/{run_id}/agents")["agents"]))
        status, body, _ = p.http("POST", f"/api/runs/{run_id}/agents/{second}/retry")
        assert status == 200, body
        p.until("a second try", lambda: any(a["id"] == second and a["attempts"] == 2 for a in p.get(f"/api/runs/{run_id}/agents")["agents"]))
        status, body, _ = p.http("POST", f"/api/runs/{run_id}/stop")
        assert status == 200, body
        p.until("paused", lambda: p.get(f"/api/runs/{run_id}")["state"]["status"] == "paused", timeout=30)
        status, body, _ = p.http("POST", f"/api/runs/{run_id}/stop")
        assert status == 409, (status, body)
        # Resume on sim: no money, no question; a detached process, not serve.
        status, body, _ = p.http("POST", f"/api/runs/{run_id}/resume")
        assert status == 200 and json.loads(body)["backend"] == "sim", body
        p.until("the resumed run's end", lambda: p.get(f"/api/runs/{run_id}")["state"]["status"] == "ok", timeout=60)
        # The skipped agent resolved null; a resume runs it again.
        assert json.loads(p.http("GET", f"/api/runs/{run_id}/result")[1])["answered"] == 12
        # A run that spends money (the exec backend, now the configured one:
        # a resume takes the backend from today's config) asks first.
        p.write("wasmflow.toml", 'backend = "exec"\nexec = "sleep 1; cat >/dev/null; echo ok"\n')
        spend = p.detach("fan.js", "--yes", args={"n": 40})
        p.until("running", lambda: p.get(f"/api/runs/{spend}")["state"]["status"] == "running")
        p.http("POST", f"/api/runs/{spend}/stop")
        p.until("paused", lambda: p.get(f"/api/runs/{spend}")["state"]["status"] == "paused", timeout=30)
        status, body, _ = p.http("POST", f"/api/runs/{spend}/resume")
        assert status == 428 and b"confirm" in body, (status, body)
        status, body, _ = p.http("POST", f"/api/runs/{spend}/resume", {"confirm": True})
        assert status == 200 and json.loads(body)["backend"] == "exec", body
        p.http("POST", f"/api/runs/{spend}/stop")
        p.until("paused again", lambda: p.get(f"/api/runs/{spend}")["state"]["status"] != "running", timeout=30)
    finally:
        p.close()


def case_security_rules():
    p = Project("security")
    p.write("one.js", "return await agent('x')\n")
    run_id = p.detach("one.js")
    p.wait(run_id)
    p.serve()
    try:
        for path in ["/api/runs", f"/api/runs/{run_id}", "/", "/no/such/route"]:
            status, _, _ = p.http("GET", path, token=False)
            assert status == 401, (path, status)
        status, _, _ = p.http("GET", "/api/runs", token=False, headers={"Authorization": "Bearer " + "0" * 64})
        assert status == 401
        status, body, _ = p.http("GET", "/api/runs", headers={"Host": "evil.example:80"})
        assert status == 403 and b"Host" in body, (status, body)
        status, _, _ = p.http("GET", "/api/runs", headers={"Host": "localhost:" + p.host.split(":")[1]})
        assert status == 200
        # A finished run still refuses a foreign Origin on a POST.
        status, body, _ = p.http("POST", f"/api/runs/{run_id}/stop", headers={"Origin": "http://evil.example"})
        assert status == 403 and b"Origin" in body, (status, body)
        status, body, _ = p.http("POST", f"/api/runs/{run_id}/resume", headers={"Origin": "http://evil.example"})
        assert status == 403, status
        # The cookie alone, with no Origin, changes nothing.
        cookie = {"Cookie": f"wasmflow_token_{p.host.split(':')[1]}={p.token}"}
        status, _, _ = p.http("GET", "/api/runs", token=False, headers=cookie)
        assert status == 200
        status, _, _ = p.http("POST", f"/api/runs/{run_id}/stop", token=False, headers=cookie)
        assert status == 403
        status, _, _ = p.http("POST", f"/api/runs/{run_id}/stop", token=False, headers={**cookie, "Origin": p.base})
        assert status == 409  # passes the guard; the run is not running
        status, _, _ = p.http("GET", "/api/runs", token=False, headers={"Cookie": f"wasmflow_token_1={p.token}"})
        assert status == 401, "another port's cookie"
        status, _, _ = p.http("GET", "/api/runs?token=" + p.token, token=False)
        assert status == 200
        for bad in ["bad.id", "..", "a%2F..%2Fb"]:
            status, _, _ = p.http("GET", f"/api/runs/{bad}")
            assert status in (400, 404), (bad, status)
        status, _, _ = p.http("GET", "/api/runs/bad.id")
        assert status == 400
        status, _, _ = p.http("GET", f"/api/runs/{run_id}/agents/x")
        assert status == 400
        status, _, headers = p.http("GET", "/")
        assert "script-src 'self'" in headers["content-security-policy"] and "unsafe-inline" not in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        status, _, headers = p.http("GET", "/?token=" + p.token, token=False)
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"] and f"_{p.host.split(':')[1]}=" in headers["set-cookie"]
    finally:
        p.close()
    other = subprocess.run([WASMFLOW, "serve", "--listen", "0.0.0.0:0"], capture_output=True, text=True, timeout=30)
    assert other.returncode == 2 and "--allow-remote" in other.stderr


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]:
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)


def case_browser_live_run_agent_and_stop():
    from selenium.webdriver.common.by import By

    p = Project("browser")
    p.write("fan.js", FAN)
    run_id = p.detach("fan.js", "--sim-latency", "700", "--concurrency", "8", args={"n": 120})
    p.serve()
    d = browser()
    try:
        os.makedirs(SHOTS, exist_ok=True)
        d.get(p.url)
        p.until("the runs table", lambda: d.find_elements(By.CSS_SELECTOR, f'#runs tr[data-id="{run_id}"]'))
        d.save_screenshot(os.path.join(SHOTS, "runs.png"))
        d.get(p.base + "/#/run/" + run_id)
        count = lambda: len(d.find_elements(By.CSS_SELECTOR, "#agents td .s-done"))
        first = p.until("some agents done", lambda: count() or None)
        p.until("more agents done without a reload", lambda: count() >= first + 8, timeout=30)
        assert d.execute_script("return performance.getEntriesByType('navigation').length") == 1
        lat = sorted(d.execute_script("return window.__painted || []"))
        assert lat, "no event reached the screen"
        print(f"      event-to-screen latency: p50 {lat[len(lat) // 2]} ms, max {lat[-1]} ms over {len(lat)} repaints", flush=True)
        # The table re-renders as events come: click and read through the
        # page itself, not through element handles that go stale.
        d.execute_script("document.querySelector('#agents tr[data-agent=\"3\"]').click()")
        p.until("the agent's prompt", lambda: "item 2" in d.execute_script("return document.getElementById('detail').textContent"))
        d.save_screenshot(os.path.join(SHOTS, "run.png"))
        d.execute_script("document.getElementById('stop').click()")
        p.until("paused on the page", lambda: d.execute_script("return document.querySelector('main .status').textContent") == "paused", timeout=30)
    finally:
        d.quit()
        p.close()


def case_model_output_is_text():
    from selenium.webdriver.common.by import By

    p = Project("xss")
    rules = {"rules": [
        {"match": {"label": "out"}, "reply": XSS},
        {"match": {"label": "fail"}, "error": XSS},
    ]}
    p.write("rules.json", json.dumps(rules))
    p.write("x.js", f"""export const meta = {{ name: {json.dumps(XSS)}, description: 'x' }}
phase({json.dumps(XSS)})
log({json.dumps(XSS)})
const a = await agent('say it', {{ label: 'out' }})
const b = await agent('fail', {{ label: 'fail' }})
const c = await agent('label', {{ label: {json.dumps(XSS)} }})
return {{ a, b, c }}
""")
    run_id = p.detach("x.js", "--sim-rules", "rules.json")
    p.wait(run_id)
    p.serve()
    d = browser()
    try:
        d.get(p.url)
        p.until("the run listed", lambda: d.find_elements(By.CSS_SELECTOR, f'#runs tr[data-id="{run_id}"]'))
        assert XSS in d.find_element(By.ID, "runs").text
        d.get(p.base + "/#/run/" + run_id)
        # The result is pretty JSON: the quotes come escaped.
        p.until("the result", lambda: "onerror=\\\"window.__xss=1" in d.find_element(By.ID, "result").text)
        d.execute_script("document.querySelector('#agents tr[data-agent=\"1\"]').click()")
        p.until("the output", lambda: XSS in d.find_element(By.ID, "detail").text)
        page = d.find_element(By.TAG_NAME, "body").text
        assert page.count(XSS) >= 5, page  # name, phase, log, failure, label, output
        assert XSS in d.find_element(By.ID, "failures").text and XSS in d.find_element(By.ID, "logs").text
        assert XSS in d.find_element(By.ID, "tree").text
        assert d.execute_script("return typeof window.__xss") == "undefined"
        assert not d.find_elements(By.CSS_SELECTOR, "main img")
    finally:
        d.quit()
        p.close()


if __name__ == "__main__":
    cases.main(globals(), DIRS, "dashboard")
