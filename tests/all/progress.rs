//! Progress on stderr: the plain line-per-event mode against a golden
//! file, and the live view on a real terminal (tmux) by its final screen.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{run_in, temp_dir};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Run ids and directories change from run to run.
fn normalise(stderr: &str, dir: &std::path::Path) -> String {
    let id = regex::Regex::new(r"\d{8}-\d{6}-[0-9a-f]{4}").unwrap();
    let text = stderr.replace(&dir.display().to_string(), "<DIR>");
    id.replace_all(&text, "<RUN-ID>").into_owned()
}

#[test]
fn agent_progress_matches_the_golden_file() {
    let dir = temp_dir("plain-progress");
    let ex = root().join("examples");
    let out = run_in(
        &dir,
        ex.join("route-audit.js").to_str().unwrap(),
        &[
            "--progress",
            "agents",
            "--concurrency",
            "1",
            "--model",
            "haiku",
            "--sim-rules",
            ex.join("route-audit.rules.json").to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = normalise(&out.stderr, &dir);
    let golden = root().join("tests/golden/progress-agents.txt");
    if std::env::var_os("WASMFLOW_BLESS").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden).expect("tests/golden/progress-agents.txt");
    assert_eq!(
        got, want,
        "plain progress changed; if on purpose, rerun with WASMFLOW_BLESS=1"
    );
    for needle in [
        "▸ phase Scan",
        "▸ phase Verify",
        "✗ verify:src/routes/billing.rs:2: rate limited",
        "(14 done, 1 failed, 0 running, 0 queued)",
    ] {
        assert!(want.contains(needle), "golden lacks {needle}");
    }
}

#[test]
fn the_live_view_leaves_a_complete_tree_on_a_terminal() {
    let tmux = Command::new("tmux").arg("-V").output();
    assert!(
        tmux.is_ok_and(|o| o.status.success()),
        "this test drives a real terminal with tmux: apt-get install -y tmux"
    );
    let dir = temp_dir("live-progress");
    std::fs::write(
        dir.join("slow.js"),
        "export const meta = { name: 'slow', description: 'd', phases: [{ title: 'Fan', model: 'haiku' }, { title: 'Judge' }, { title: 'Unused' }] }\n\
         phase('Fan')\n\
         const xs = await parallel(Array.from({ length: 12 }, (_, i) => () => agent(`item ${i}`, { label: `item-${i}` })))\n\
         log(`got ${xs.length}`)\n\
         phase('Judge')\n\
         return await agent('judge', { label: 'judge' })\n",
    )
    .unwrap();
    let session = format!("wf-live-{}", std::process::id());
    let exe = env!("CARGO_BIN_EXE_wasmflow");
    let engine_cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("engine-cache");
    let command = format!(
        "cd {} && HOME={} WASMFLOW_CACHE_DIR={} {exe} run slow.js --sim-latency 300 --concurrency 4 --model sonnet > out.json; echo EXIT=$?; sleep 120",
        dir.display(),
        dir.display(),
        engine_cache.display()
    );
    let started = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "100",
            "-y",
            "40",
            &command,
        ])
        .status()
        .unwrap();
    assert!(started.success());
    let capture = || {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut screen = capture();
    let mut saw_running = false;
    while !screen.contains("EXIT=") && Instant::now() < deadline {
        saw_running |= screen.contains("· item-") && screen.contains("running");
        std::thread::sleep(Duration::from_millis(100));
        screen = capture();
    }
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status();
    assert!(
        screen.contains("EXIT=0"),
        "the run did not finish:\n{screen}"
    );
    assert!(
        saw_running,
        "running agents were never shown under their phase"
    );
    let lines: Vec<&str> = screen.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("final screen lacks `{needle}`:\n{screen}"))
    };
    let header = at("slow  ");
    assert!(
        lines[header].contains("13 done · 0 failed · 0 running · 0 queued"),
        "{screen}"
    );
    assert!(
        lines[header].contains('$'),
        "sonnet and haiku are priced: {screen}"
    );
    assert!(lines[at("✓ Fan")].contains("12 done"), "{screen}");
    assert!(lines[at("✓ Judge")].contains("1 done"), "{screen}");
    assert!(lines[at("Unused")].contains("(not started)"), "{screen}");
    // log() lines scroll above the tree; no agent is left shown running.
    assert!(at("got 12") < header, "{screen}");
    assert!(!screen.contains("· item-"), "{screen}");
    let result = std::fs::read_to_string(dir.join("out.json")).unwrap();
    assert!(
        result.contains("judge") || result.contains("sim"),
        "{result}"
    );
}
