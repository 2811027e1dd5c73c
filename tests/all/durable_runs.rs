//! Durable runs: the journal, resume, SIGKILL at random moments, pause.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Output, read_trace, temp_dir, wasmflow};

/// 200 agents: a fan-out (with repeated content), a pipeline, a vote.
const CRASH_FLOW: &str = r#"export const meta = { name: 'crash', description: 'crash test workflow' }
const items = Array.from({ length: 60 }, (_, i) => 'item ' + (i % 50))
const first = await parallel(items.map((it, i) => () => agent('scan ' + it, { label: 'scan' + i })))
const piped = await pipeline(first.slice(0, 40),
  s => agent('refine ' + s, { label: 'refine' }),
  r => agent('check ' + r, { label: 'check' }))
const votes = await parallel(Array.from({ length: 60 }, (_, i) => () => agent('vote ' + (i % 20), { label: 'vote' + i })))
return { first, piped, votes }
"#;

fn spawn(dir: &Path, args: &[&str]) -> Child {
    wasmflow()
        .current_dir(dir)
        .env("HOME", dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wasmflow starts")
}

fn cli(dir: &Path, args: &[&str]) -> Output {
    let out = spawn(dir, args).wait_with_output().unwrap();
    let o = Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        dir: dir.to_path_buf(),
    };
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    o
}

fn only_run(dir: &Path) -> String {
    let ids: Vec<String> = std::fs::read_dir(dir.join(".wasmflow/runs"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0].clone()
}

/// The run a killed first attempt left, if it got as far as run.json.
fn started_run(dir: &Path) -> Option<String> {
    let runs = dir.join(".wasmflow/runs");
    let id = std::fs::read_dir(&runs)
        .ok()?
        .flatten()
        .find(|e| e.path().join("run.json").is_file())?
        .file_name()
        .to_string_lossy()
        .into_owned();
    Some(id)
}

fn journal(dir: &Path, id: &str) -> Vec<Value> {
    std::fs::read_to_string(dir.join(".wasmflow/runs").join(id).join("journal.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn result_keys(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["type"] == "result")
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect()
}

fn run_info(dir: &Path, id: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(dir.join(".wasmflow/runs").join(id).join("run.json")).unwrap(),
    )
    .unwrap()
}

/// The uninterrupted result of a script.
fn reference(script: &str, args: &[&str]) -> Value {
    let dir = temp_dir("reference");
    std::fs::write(dir.join("flow.js"), script).unwrap();
    let mut all = vec!["run", "--quiet", "--no-journal"];
    all.extend_from_slice(args);
    all.push("flow.js");
    let out = cli(&dir, &all);
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.json()
}

/// A small deterministic generator for kill moments.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

#[test]
fn sigkill_at_random_moments_never_pays_twice() {
    let flags = ["--sim-latency", "100", "--concurrency", "16"];
    let expected = reference(CRASH_FLOW, &flags);
    let dir = temp_dir("crash");
    std::fs::write(dir.join("flow.js"), CRASH_FLOW).unwrap();
    let trace = dir.join("trace.jsonl");
    let trace_arg = trace.to_str().unwrap().to_string();
    let mut rng = Lcg(0x5eed);
    let mut kills = 0;
    let mut attempts = 0;
    let mut id: Option<String> = None;
    let final_out = loop {
        attempts += 1;
        assert!(attempts < 60, "the run never finished");
        let mut args: Vec<String> = match &id {
            None => ["run", "--quiet"].iter().map(|s| s.to_string()).collect(),
            Some(id) => vec!["resume".into(), id.clone(), "--quiet".into()],
        };
        if id.is_none() {
            args.extend(flags.iter().map(|s| s.to_string()));
            args.extend([
                "--sim-trace".to_string(),
                trace_arg.clone(),
                "flow.js".into(),
            ]);
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = spawn(&dir, &argv);
        if kills < 12 {
            // Between process start-up and a few waves of completions:
            // some kills land while a burst of 16 results is committed.
            std::thread::sleep(Duration::from_millis(rng.next(30, 260)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                if id.is_none() {
                    // Killed before its run directory held a run.json:
                    // nothing ran; start afresh.
                    id = started_run(&dir);
                }
                continue;
            }
        }
        let out = child.wait_with_output().unwrap();
        if id.is_none() {
            id = started_run(&dir);
        }
        break out;
    };
    let stderr = String::from_utf8_lossy(&final_out.stderr);
    assert_eq!(final_out.status.code(), Some(0), "{stderr}");
    assert!(kills >= 10, "only {kills} kills landed");
    let result: Value = serde_json::from_slice(&final_out.stdout).unwrap();
    assert_eq!(result, expected, "the resumed result differs");
    let id = id.unwrap();
    // Every agent finished exactly once in the journal: none ran again
    // after its result was recorded.
    let keys = result_keys(&journal(&dir, &id));
    let unique: HashSet<&String> = keys.iter().collect();
    assert_eq!(keys.len(), 200, "result records: {}", keys.len());
    assert_eq!(unique.len(), 200);
    // Live executions: all 200, plus at most the ones in flight at each kill.
    let live = read_trace(&trace).len();
    eprintln!("crash test: {kills} kills over {attempts} attempts, {live} live executions");
    assert!(
        (200..=200 + kills * 16).contains(&live),
        "{live} live executions for 200 agents and {kills} kills"
    );
    assert_eq!(run_info(&dir, &id)["status"], "ok");
}

#[test]
fn an_edited_prompt_reruns_only_that_call_and_what_depends_on_it() {
    let flow = "const a = await agent('alpha')\nconst b = await agent('beta')\nconst c = await agent('gamma ' + b)\nreturn [a, b, c]\n";
    let dir = temp_dir("edited");
    std::fs::write(dir.join("flow.js"), flow).unwrap();
    let out = cli(
        &dir,
        &["run", "--quiet", "--sim-trace", "t1.jsonl", "flow.js"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = only_run(&dir);
    std::fs::write(dir.join("flow.js"), flow.replace("'beta'", "'BETA'")).unwrap();
    let out = cli(&dir, &["resume", &id, "--quiet", "--sim-trace", "t2.jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let live: Vec<String> = std::fs::read_to_string(dir.join("t2.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["label"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    // `beta` changed and `gamma`'s prompt holds its reply: two live agents.
    assert_eq!(live.len(), 2, "{live:?}");
    let info = run_info(&dir, &id);
    assert_eq!(info["summary"]["agents"]["cached"], 1);
    assert_eq!(info["sessions"], 2);
}

#[test]
fn a_torn_or_garbage_journal_tail_keeps_every_valid_record() {
    let flow = "return await parallel(['a', 'b', 'c', 'd'].map(p => () => agent(p)))\n";
    let dir = temp_dir("torn");
    std::fs::write(dir.join("flow.js"), flow).unwrap();
    let out = cli(&dir, &["run", "--quiet", "flow.js"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let expected = out.json();
    let id = only_run(&dir);
    let path = dir.join(".wasmflow/runs").join(&id).join("journal.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("this line is garbage\n{\"type\":\"result\",\"key\":\"wf1:");
    std::fs::write(&path, &text).unwrap();
    let out = cli(&dir, &["resume", &id, "--sim-trace", "t.jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), expected);
    assert!(
        out.stderr.contains("skipped a torn last line"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("skipped line"), "{}", out.stderr);
    // Nothing ran again, and the torn tail was cut before appending.
    assert_eq!(
        std::fs::read_to_string(dir.join("t.jsonl")).unwrap_or_default(),
        ""
    );
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(after.ends_with('\n'));
    assert_eq!(result_keys(&journal(&dir, &id)).len(), 4);

    // Missing and malformed run ids.
    for (id, needle) in [
        ("20990101-000000-dead", "no run `20990101-000000-dead`"),
        ("../etc", "not a run id"),
    ] {
        let out = cli(&dir, &["resume", id]);
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(out.stderr.contains(needle), "{}", out.stderr);
    }
}

#[test]
fn completion_order_dependent_prompts_resume_fully_cached() {
    // The counter makes each stage-2 prompt depend on which stage-1 agent
    // finished first; latencies make that differ from call order.
    let flow = "let n = 0\nconst r = await pipeline([1, 2, 3, 4, 5, 6], x => agent('first ' + x, { label: 'l' + x }), y => agent('second #' + (n++) + ' ' + y))\nreturn r\n";
    let rules = r#"{"rules": [
        {"match": {"label": "l1"}, "latency_ms": 120}, {"match": {"label": "l2"}, "latency_ms": 10},
        {"match": {"label": "l3"}, "latency_ms": 80}, {"match": {"label": "l4"}, "latency_ms": 30},
        {"match": {"label": "l5"}, "latency_ms": 60}, {"match": {"label": "l6"}, "latency_ms": 5}]}"#;
    let dir = temp_dir("order");
    std::fs::write(dir.join("flow.js"), flow).unwrap();
    std::fs::write(dir.join("rules.json"), rules).unwrap();
    let out = cli(
        &dir,
        &["run", "--quiet", "--sim-rules", "rules.json", "flow.js"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let expected = out.json();
    let id = only_run(&dir);
    let out = cli(&dir, &["resume", &id, "--quiet", "--sim-trace", "t.jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), expected);
    assert_eq!(
        std::fs::read_to_string(dir.join("t.jsonl")).unwrap_or_default(),
        "",
        "an agent ran again"
    );
    assert_eq!(run_info(&dir, &id)["summary"]["agents"]["cached"], 12);
}

fn wait_for_journal(dir: &Path, results: usize) -> String {
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < Duration::from_secs(30), "no progress");
        if let Ok(entries) = std::fs::read_dir(dir.join(".wasmflow/runs")) {
            for e in entries.flatten().filter(|e| e.path().is_dir()) {
                let id = e.file_name().to_string_lossy().into_owned();
                let n = std::fs::read_to_string(e.path().join("journal.jsonl"))
                    .map(|t| t.matches("\"type\":\"result\"").count())
                    .unwrap_or(0);
                if n >= results {
                    return id;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const SLOW_FLOW: &str = "const a = await parallel(Array.from({ length: 8 }, (_, i) => () => agent('a' + i)))\nconst b = await parallel(Array.from({ length: 8 }, (_, i) => () => agent('b' + i)))\nreturn [a.length, b]\n";

#[test]
fn ctrl_c_and_stop_pause_a_run_that_resumes_to_the_same_result() {
    let flags = ["--sim-latency", "300", "--concurrency", "4"];
    let expected = reference(SLOW_FLOW, &flags);
    for how in ["sigint", "stop"] {
        let dir = temp_dir(how);
        std::fs::write(dir.join("flow.js"), SLOW_FLOW).unwrap();
        let mut args = vec!["run", "--sim-trace", "t.jsonl"];
        args.extend_from_slice(&flags);
        args.push("flow.js");
        let child = spawn(&dir, &args);
        let id = wait_for_journal(&dir, 4);
        match how {
            "sigint" => {
                let ok = std::process::Command::new("kill")
                    .args(["-INT", &child.id().to_string()])
                    .status()
                    .unwrap();
                assert!(ok.success());
            }
            _ => {
                let out = cli(&dir, &["stop", &id]);
                assert_eq!(out.code, 0, "{}", out.stderr);
                assert!(out.stderr.contains("paused"), "{}", out.stderr);
            }
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{how}: {stderr}");
        assert!(
            stderr.contains(&format!("wasmflow resume {id}")),
            "{how}: {stderr}"
        );
        assert_eq!(run_info(&dir, &id)["status"], "paused");
        // The agents running at the pause finished and were journaled.
        let done_before = result_keys(&journal(&dir, &id)).len();
        assert!(done_before >= 8, "{how}: {done_before}");
        let out = cli(&dir, &["resume", &id, "--quiet"]);
        assert_eq!(out.code, 0, "{how}: {}", out.stderr);
        assert_eq!(out.json(), expected, "{how}");
        assert_eq!(
            read_trace(&dir.join("t.jsonl")).len(),
            16,
            "{how}: an agent ran twice"
        );
        assert_eq!(run_info(&dir, &id)["status"], "ok");
    }
}

#[test]
fn runs_show_and_prune() {
    let dir = temp_dir("runs");
    std::fs::write(
        dir.join("flow.js"),
        "export const meta = { name: 'listed', description: 'x' }\nreturn await agent('x')\n",
    )
    .unwrap();
    let out = cli(&dir, &["run", "--quiet", "flow.js"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = only_run(&dir);
    let out = cli(&dir, &["runs"]);
    assert!(
        out.stdout.contains(&id) && out.stdout.contains("listed") && out.stdout.contains("ok"),
        "{}",
        out.stdout
    );
    let out = cli(&dir, &["runs", "--json"]);
    let rows: Value = out.json();
    assert_eq!(rows[0]["agents"]["done"], 1);
    let out = cli(&dir, &["show", &id]);
    assert!(
        out.stdout.contains("run.json") && out.stdout.contains("1 done"),
        "{}",
        out.stdout
    );
    let out = cli(&dir, &["runs", "prune", "--older-than", "1d"]);
    assert_eq!(out.code, 0);
    assert!(dir.join(".wasmflow/runs").join(&id).exists());
    std::thread::sleep(Duration::from_millis(1100));
    let out = cli(&dir, &["runs", "prune", "--older-than", "1s"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!dir.join(".wasmflow/runs").join(&id).exists());
}

#[test]
fn a_run_stopped_by_its_budget_resumes_with_a_higher_one() {
    let flow = "const out = []\nfor (let i = 0; i < 6; i++) out.push(await agent('step ' + i))\nreturn out.length\n";
    let rules = r#"{"default": {"usage": {"input": 10, "output": 100}}}"#;
    let dir = temp_dir("budget-resume");
    std::fs::write(dir.join("flow.js"), flow).unwrap();
    std::fs::write(dir.join("rules.json"), rules).unwrap();
    let out = cli(
        &dir,
        &[
            "run",
            "--quiet",
            "--budget",
            "300",
            "--sim-rules",
            "rules.json",
            "--sim-trace",
            "t.jsonl",
            "flow.js",
        ],
    );
    // Three agents spend the budget; the fourth agent() throws.
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("WorkflowBudgetExceededError"),
        "{}",
        out.stderr
    );
    let id = only_run(&dir);
    assert_eq!(read_trace(&dir.join("t.jsonl")).len(), 3);
    let out = cli(&dir, &["resume", &id, "--quiet", "--budget", "1000"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), 6);
    // The three finished agents were not run again, and they counted
    // toward the budget as before.
    assert_eq!(read_trace(&dir.join("t.jsonl")).len(), 6);
    let info = run_info(&dir, &id);
    assert_eq!(info["summary"]["agents"]["cached"], 3);
    assert_eq!(info["summary"]["tokens"]["output"], 600);
}
