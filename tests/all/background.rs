//! Runs that outlive their launcher: `--detach`, `wait`, `logs`, `result`,
//! liveness by lock, the sealed spec.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{cli_in as cli, temp_dir, text, wasmflow};

const WIDE: &str = "export const meta = { name: 'wide', description: 'fan-out' }\n\
phase('Fan')\n\
const xs = await parallel(Array.from({ length: 200 }, (_, i) => () => agent('item ' + i, { label: 'item-' + i })))\n\
return { n: xs.filter(x => typeof x === 'string').length, first: xs[0] }\n";

/// The `run_id` of a `--json` summary.
fn run_id(out: &Output) -> String {
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    summary["run_id"].as_str().unwrap().to_string()
}

fn setup(name: &str, script: &str) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::write(dir.join("flow.js"), script).unwrap();
    dir
}

fn detach(dir: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["run", "flow.js", "-d", "--json"];
    args.extend_from_slice(extra);
    let out = cli(dir, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wait(dir: &Path, id: &str, extra: &[&str]) -> Output {
    let mut args = vec!["wait", id];
    args.extend_from_slice(extra);
    cli(dir, &args)
}

#[test]
fn a_detached_run_outlives_its_shell_and_its_session_hanging_up() {
    let dir = setup("detach-shell", WIDE);
    let reference = cli(&dir, &["run", "flow.js", "--quiet", "--no-journal"]);
    assert_eq!(
        reference.status.code(),
        Some(0),
        "{}",
        text(&reference.stderr)
    );
    let expected: Value = serde_json::from_slice(&reference.stdout).unwrap();
    // The launcher's shell is a session leader that hangs its whole session
    // up right after the launch, as a closing terminal does.
    let exe = env!("CARGO_BIN_EXE_wasmflow");
    let cache = wasmflow()
        .get_envs()
        .find(|(k, _)| *k == "WASMFLOW_CACHE_DIR")
        .and_then(|(_, v)| v.map(|v| v.to_os_string()))
        .unwrap_or_default();
    let started = Instant::now();
    let shell = Command::new("setsid")
        .current_dir(&dir)
        .env("HOME", &dir)
        .env("WASMFLOW_CACHE_DIR", cache)
        .env("XDG_DATA_HOME", crate::support::data_dir())
        .args([
            "bash",
            "-c",
            &format!("id=$(timeout 5 {exe} run flow.js -d --sim-latency 20) || exit 9; echo $id > id.txt; kill -HUP -$$; sleep 1"),
        ])
        .status()
        .unwrap();
    // The shell itself died of the hang-up (or exited): either way quickly.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_ne!(shell.code(), Some(9), "the launch failed or took over 5 s");
    let id = std::fs::read_to_string(dir.join("id.txt"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(id.len(), 20, "{id}");
    let out = wait(&dir, &id, &["--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got, expected);
    // The events and the logs tell the same story.
    let logs = cli(&dir, &["logs", &id]);
    let logs = text(&logs.stdout);
    assert!(
        logs.contains("▸ phase Fan") && logs.contains("run finished: ok"),
        "{logs}"
    );
    let runs: Value = serde_json::from_slice(&cli(&dir, &["runs", "--json"]).stdout).unwrap();
    assert_eq!(runs[0]["id"], json!(id));
    assert_eq!(runs[0]["status"], "ok");
}

#[test]
fn wait_exits_with_the_run_s_own_code() {
    let cases: [(&str, &[&str], i32); 3] = [
        ("return 1\n", &[], 0),
        ("await agent('a')\nthrow new Error('nope')\n", &[], 1),
        (
            "await agent('slow')\nreturn 1\n",
            &["--sim-latency", "5000", "--timeout", "300ms"],
            3,
        ),
    ];
    for (script, flags, code) in cases {
        let dir = setup("wait-codes", script);
        let launched = detach(&dir, flags);
        let id = launched["run_id"].as_str().unwrap();
        assert!(Path::new(launched["dir"].as_str().unwrap()).is_dir());
        let out = wait(&dir, id, &["--json"]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{script}: {}",
            text(&out.stderr)
        );
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["run_id"], json!(id));
        if code == 0 {
            assert_eq!(summary["result"], json!(1));
        }
    }
    // Still running after the timeout: 124, and the run goes on.
    let dir = setup("wait-timeout", "await agent('slow')\nreturn 2\n");
    let id = detach(&dir, &["--sim-latency", "1500"])["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = wait(&dir, &id, &["--timeout", "200ms"]);
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    // Paused by `stop`: 130.
    let out = cli(&dir, &["stop", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = wait(&dir, &id, &[]);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
}

#[test]
fn a_killed_detached_run_is_interrupted_and_resumes_without_paying_twice() {
    let dir = setup(
        "detach-kill",
        "const xs = await parallel(Array.from({ length: 40 }, (_, i) => () => agent('item ' + i, { label: 'i' + i })))\nreturn xs.length\n",
    );
    let launched = detach(
        &dir,
        &[
            "--sim-latency",
            "300",
            "--concurrency",
            "4",
            "--sim-trace",
            "trace.jsonl",
        ],
    );
    let id = launched["run_id"].as_str().unwrap().to_string();
    let pid = launched["pid"].as_u64().unwrap().to_string();
    // Let some agents finish, then kill it without warning.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let journal =
            std::fs::read_to_string(dir.join(".wasmflow/runs").join(&id).join("journal.jsonl"))
                .unwrap_or_default();
        if journal.lines().count() >= 8 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(200));
    let runs: Value = serde_json::from_slice(&cli(&dir, &["runs", "--json"]).stdout).unwrap();
    assert_eq!(runs[0]["status"], "interrupted", "{runs:#}");
    let out = wait(&dir, &id, &[]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    let done_before: Vec<String> = finished_keys(&dir, &id);
    let runs_before = std::fs::read_to_string(dir.join("trace.jsonl"))
        .unwrap()
        .lines()
        .count();
    let out = cli(&dir, &["resume", &id, "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        json!(40)
    );
    // No agent the journal had finished ran again.
    let trace = std::fs::read_to_string(dir.join("trace.jsonl")).unwrap();
    let rerun: Vec<String> = trace
        .lines()
        .skip(runs_before)
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|e| e["key"].as_str().unwrap().to_string())
        .filter(|k| done_before.contains(k))
        .collect();
    assert!(rerun.is_empty(), "ran again: {rerun:?}");
}

fn finished_keys(dir: &Path, id: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(".wasmflow/runs").join(id).join("journal.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["type"] == "result")
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_refused_script_under_detach_exits_1_with_its_line_and_leaves_nothing() {
    let dir = setup(
        "detach-refused",
        "export const meta = { name: 'x', description: 'd' }\nconst t = Date.now()\nreturn t\n",
    );
    let out = cli(&dir, &["run", "flow.js", "--detach"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("DeterminismError") && text(&out.stderr).contains("line 2"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    assert!(!dir.join(".wasmflow/runs").exists());
}

#[test]
fn twenty_detached_runs_at_once_all_finish() {
    let dir = setup(
        "detach-twenty",
        "const n = JSON.parse(JSON.stringify(args))\nconst xs = await parallel(Array.from({ length: 10 }, (_, i) => () => agent('r' + n + ' item ' + i)))\nreturn { n, count: xs.length }\n",
    );
    let launches: Vec<_> = (0..20)
        .map(|n| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let arg = n.to_string();
                let v = detach(&dir, &["--args", &arg, "--sim-latency", "10"]);
                (n, v["run_id"].as_str().unwrap().to_string())
            })
        })
        .collect();
    for handle in launches {
        let (n, id) = handle.join().unwrap();
        let out = wait(&dir, &id, &["--timeout", "60s"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(got, json!({"n": n, "count": 10}));
    }
}

#[test]
fn a_five_megabyte_result_pages_back_byte_identical() {
    let dir = setup(
        "result-pages",
        "const s = 'αβγ—z'.repeat(600000)\nreturn { s, n: s.length }\n",
    );
    let out = cli(&dir, &["run", "flow.js", "--quiet", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = run_id(&out);
    let whole = std::fs::read(dir.join(".wasmflow/runs").join(&id).join("result.json")).unwrap();
    assert!(whole.len() > 5_000_000, "{}", whole.len());
    let mut pages = Vec::new();
    let mut offset = 0u64;
    loop {
        let off = offset.to_string();
        let out = cli(
            &dir,
            &[
                "result",
                &id,
                "--offset",
                &off,
                "--max-bytes",
                "1000001",
                "--json",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let page: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(page["total_bytes"], json!(whole.len()));
        pages.extend_from_slice(page["data"].as_str().unwrap().as_bytes());
        match page["next_offset"].as_u64() {
            Some(next) => offset = next,
            None => break,
        }
    }
    assert_eq!(pages, whole);
    // Without paging: the whole of it; with a pointer: that part.
    let out = cli(&dir, &["result", &id]);
    assert_eq!(out.stdout.len(), whole.len() + 1);
    let out = cli(&dir, &["result", &id, "--pointer", "/n"]);
    assert_eq!(text(&out.stdout).trim(), "3000000");
}

#[test]
fn two_resumes_at_once_one_is_refused() {
    let dir = setup(
        "resume-race",
        "const xs = await parallel([1, 2, 3].map(i => () => agent('slow ' + i)))\nreturn xs.length\n",
    );
    let out = cli(
        &dir,
        &[
            "run",
            "flow.js",
            "--quiet",
            "--json",
            "--sim-latency",
            "1",
            "--max-agents",
            "1",
        ],
    );
    // The cap stopped it after one agent: a run to resume.
    let id = run_id(&out);
    let spawn = || {
        wasmflow()
            .current_dir(&dir)
            .env("HOME", &dir)
            .args([
                "resume",
                &id,
                "--max-agents",
                "10",
                "--sim-latency",
                "800",
                "--quiet",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let mut codes = [a.status.code(), b.status.code()];
    codes.sort();
    assert_eq!(
        codes,
        [Some(0), Some(2)],
        "{} / {}",
        text(&a.stderr),
        text(&b.stderr)
    );
    let refused = if a.status.code() == Some(2) { &a } else { &b };
    assert!(
        text(&refused.stderr).contains("still running"),
        "{}",
        text(&refused.stderr)
    );
}

#[test]
fn a_tampered_run_json_is_refused_by_resume() {
    let dir = setup("tampered", "return await agent('x')\n");
    let out = cli(&dir, &["run", "flow.js", "--quiet", "--json"]);
    let id = run_id(&out);
    let path = dir.join(".wasmflow/runs").join(&id).join("run.json");
    let mut info: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(info["spec_hmac"].is_string(), "{info:#}");
    // What an agent with file tools might write: another backend.
    info["spec"]["backend"]["name"] = json!("exec");
    info["spec"]["backend"]["exec"] = json!("touch pwned");
    std::fs::write(&path, info.to_string()).unwrap();
    let out = cli(&dir, &["resume", &id]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("run.json") && stderr.contains("does not verify"),
        "{stderr}"
    );
    assert!(!dir.join("pwned").exists());
    // The key lives outside the project, private.
    let key = crate::support::data_dir().join("wasmflow/key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_moved_script_resumes_from_the_kept_copy() {
    let dir = setup(
        "moved",
        "const a = await agent('one')\nconst b = await agent('two')\nreturn [a, b]\n",
    );
    let out = cli(
        &dir,
        &["run", "flow.js", "--quiet", "--json", "--max-agents", "1"],
    );
    let id = run_id(&out);
    std::fs::rename(dir.join("flow.js"), dir.join("elsewhere.js")).unwrap();
    let out = cli(&dir, &["resume", &id, "--max-agents", "5", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["agents"]["cached"], 1, "{s:#}");
    assert!(
        text(&out.stderr).contains("is gone"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_paused_run_resumes_in_the_background() {
    let dir = setup(
        "resume-detached",
        "const xs = await parallel(Array.from({ length: 6 }, (_, i) => () => agent('item ' + i)))\nreturn xs.length\n",
    );
    // Stopped by its agent cap after two agents: a run to resume.
    let out = cli(
        &dir,
        &[
            "run",
            "flow.js",
            "--quiet",
            "--json",
            "--concurrency",
            "1",
            "--max-agents",
            "2",
        ],
    );
    let id = run_id(&out);
    let out = cli(
        &dir,
        &[
            "resume",
            &id,
            "--detach",
            "--json",
            "--max-agents",
            "10",
            "--sim-latency",
            "50",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let launched: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(launched["run_id"], json!(id));
    let out = wait(&dir, &id, &["--json", "--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["result"], json!(6));
    assert_eq!(summary["agents"]["cached"], 2, "{summary:#}");
    // The flags given to the resume are in the spec it sealed.
    let info: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(".wasmflow/runs").join(&id).join("run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(info["spec"]["limits"]["max_agents"], 10);
}
