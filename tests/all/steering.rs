//! Watch and steer a run from another shell: attach, skip, retry, one
//! agent's record.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{cli_in as cli, data_dir, temp_dir, text};

const THREE: &str = "export const meta = { name: 'three', description: 'd' }\n\
phase('Work')\n\
const [a, b, c] = await parallel([\n\
  () => agent('one', { label: 'one' }),\n\
  () => agent('two', { label: 'two' }),\n\
  () => agent('three', { label: 'dup' }),\n\
  () => agent('four', { label: 'dup' }),\n\
])\n\
return { a, b, c }\n";

/// Launches `THREE` detached with slow agents; returns the run id once its
/// agents are running.
fn launch(dir: &Path) -> String {
    std::fs::write(dir.join("flow.js"), THREE).unwrap();
    let out = cli(
        dir,
        &[
            "run",
            "flow.js",
            "-d",
            "--sim-latency",
            "2000",
            "--sim-trace",
            "trace.jsonl",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let show = cli(dir, &["show", &id, "--agent", "two", "--json"]);
        if show.status.success()
            && serde_json::from_slice::<Value>(&show.stdout).unwrap()["state"] == "running"
        {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "agents never started: {}",
            text(&show.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn trace(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("trace.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn skip_and_retry_a_running_agent_from_another_shell() {
    let dir = temp_dir("steer");
    let id = launch(&dir);
    // An ambiguous label names the candidates.
    let out = cli(&dir, &["show", &id, "--agent", "dup"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("3, 4"), "{}", text(&out.stderr));
    let out = cli(&dir, &["skip", &id, "one"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = cli(&dir, &["retry", &id, "two"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("retry 1"),
        "{}",
        text(&out.stderr)
    );
    let out = cli(&dir, &["wait", &id, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["result"]["a"], Value::Null, "{summary:#}");
    assert!(summary["result"]["b"].as_str().unwrap().contains("two"));
    assert_eq!(summary["agents"]["skipped"], 1, "{summary:#}");
    // The trace shows the abandoned executions and the new one.
    let t = trace(&dir);
    let of = |label: &str| -> Vec<&Value> { t.iter().filter(|e| e["label"] == label).collect() };
    assert_eq!(of("one").len(), 1);
    assert_eq!(of("one")[0]["abandoned"], true);
    let two = of("two");
    assert_eq!(two.len(), 2, "{two:?}");
    assert!(
        two.iter()
            .any(|e| e["abandoned"] == true && e["attempt"] == 1)
    );
    assert!(
        two.iter()
            .any(|e| e.get("abandoned").is_none() && e["attempt"] == 2)
    );
    // The journal says why, and who asked.
    let journal =
        std::fs::read_to_string(dir.join(".wasmflow/runs").join(&id).join("journal.jsonl"))
            .unwrap();
    let skipped: Vec<Value> = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["type"] == "skipped")
        .collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["label"], "one");
    assert!(
        skipped[0]["by"].as_str().unwrap().contains("process"),
        "{skipped:?}"
    );
    // One agent's record.
    let out = cli(&dir, &["show", &id, "--agent", "two", "--json"]);
    let two: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(two["state"], "done");
    assert_eq!(two["prompt"], "two");
    assert_eq!(two["options"], json!({"label": "two"}));
    assert_eq!(two["retries"], 1);
    let out = cli(&dir, &["show", &id, "--agent", "one"]);
    assert!(
        text(&out.stdout).contains("state     skipped"),
        "{}",
        text(&out.stdout)
    );
    // Finished agents and finished runs: refused, saying so.
    let out = cli(&dir, &["skip", &id, "two"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not running"),
        "{}",
        text(&out.stderr)
    );
    // A resume runs the skipped agent again, and only it.
    let before = trace(&dir).len();
    let out = cli(
        &dir,
        &["resume", &id, "--json", "--quiet", "--sim-latency", "0"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(s["result"]["a"].as_str().unwrap().contains("one"), "{s:#}");
    assert_eq!(trace(&dir).len(), before + 1);
}

#[test]
fn skipping_an_agent_that_already_finished_is_refused() {
    let dir = temp_dir("steer-finished");
    std::fs::write(
        dir.join("flow.js"),
        "const a = await agent('quick', { label: 'quick' })\nconst b = await agent('slow', { label: 'slow' })\nreturn [a, b]\n",
    )
    .unwrap();
    let rules = r#"{"rules": [{"match": {"label": "slow"}, "reply": "late", "latency_ms": 3000}]}"#;
    std::fs::write(dir.join("rules.json"), rules).unwrap();
    let out = cli(&dir, &["run", "flow.js", "-d", "--sim-rules", "rules.json"]);
    let id = text(&out.stdout).trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = cli(&dir, &["show", &id, "--agent", "slow", "--json"]);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = cli(&dir, &["skip", &id, "quick"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("already finished"),
        "{}",
        text(&out.stderr)
    );
    let out = cli(&dir, &["retry", &id, "quick"]);
    assert_eq!(out.status.code(), Some(2));
    let out = cli(&dir, &["stop", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn attach_draws_a_detached_run_and_ctrl_c_leaves_it_running() {
    let tmux = Command::new("tmux").arg("-V").output();
    assert!(
        tmux.is_ok_and(|o| o.status.success()),
        "this test drives a real terminal with tmux: apt-get install -y tmux"
    );
    let dir = temp_dir("attach");
    std::fs::write(
        dir.join("flow.js"),
        "export const meta = { name: 'attached', description: 'd' }\n\
         phase('Fan')\n\
         const xs = await parallel(Array.from({ length: 8 }, (_, i) => () => agent(`item ${i}`, { label: `item-${i}` })))\n\
         phase('Judge')\n\
         return await agent('judge', { label: 'judge' })\n",
    )
    .unwrap();
    let out = cli(
        &dir,
        &[
            "run",
            "flow.js",
            "-d",
            "--sim-latency",
            "1500",
            "--concurrency",
            "4",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    let exe = env!("CARGO_BIN_EXE_wasmflow");
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("engine-cache");
    let attach = |session: &str| {
        let command = format!(
            "cd {} && HOME={} XDG_DATA_HOME={} WASMFLOW_CACHE_DIR={} {exe} attach {id}; echo EXIT=$?; sleep 60",
            dir.display(),
            dir.display(),
            data_dir().display(),
            cache.display()
        );
        assert!(
            Command::new("tmux")
                .args([
                    "new-session",
                    "-d",
                    "-s",
                    session,
                    "-x",
                    "100",
                    "-y",
                    "30",
                    &command
                ])
                .status()
                .unwrap()
                .success()
        );
    };
    let capture = |session: &str| {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", session])
            .output()
            .unwrap();
        text(&out.stdout)
    };
    let kill = |session: &str| {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", session])
            .status();
    };
    // First attach: agents running under their phase; then Ctrl-C.
    let first = format!("wf-attach-a-{}", std::process::id());
    attach(&first);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut screen = capture(&first);
    while !(screen.contains("Fan") && screen.contains("· item-")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        screen = capture(&first);
    }
    assert!(
        screen.contains("· item-"),
        "no running agent under its phase:\n{screen}"
    );
    let _ = Command::new("tmux")
        .args(["send-keys", "-t", &first, "C-c"])
        .status();
    std::thread::sleep(Duration::from_millis(300));
    kill(&first);
    let runs: Value = serde_json::from_slice(&cli(&dir, &["runs", "--json"]).stdout).unwrap();
    assert_eq!(
        runs[0]["status"], "running",
        "Ctrl-C in attach stopped the run: {runs:#}"
    );
    // The run finishes on its own; attaching then shows the final tree.
    let out = cli(&dir, &["wait", &id, "--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let second = format!("wf-attach-b-{}", std::process::id());
    attach(&second);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut screen = capture(&second);
    while !screen.contains("EXIT=") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        screen = capture(&second);
    }
    kill(&second);
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(
        screen.contains("9 done · 0 failed · 0 running · 0 queued"),
        "{screen}"
    );
    assert!(
        screen.contains("✓ Fan") && screen.contains("✓ Judge"),
        "{screen}"
    );
    assert!(screen.contains("is ok"), "{screen}");
}
