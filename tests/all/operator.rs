//! Operator experience: saved and bundled workflows by name, managed
//! machines that refuse to run, the Markdown run report.

use std::path::{Path, PathBuf};

use crate::support::{run_env, run_in, temp_dir, wasmflow};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/{name}"))
}

fn cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = wasmflow()
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("WASMFLOW_DISABLE")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

#[test]
fn a_saved_script_runs_by_name_with_the_same_result() {
    let dir = temp_dir("save-run");
    std::fs::copy(example("route-audit.js"), dir.join("flow.js")).unwrap();
    let rules = example("route-audit.rules.json");
    let rules = rules.to_str().unwrap();
    let direct = run_in(
        &dir,
        "flow.js",
        &["--json", "--quiet", "--sim-rules", rules],
    );
    assert_eq!(direct.code, 0, "{}", direct.stderr);
    let (code, _, stderr) = cli(&dir, &["save", "flow.js"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("wasmflow run route-audit"), "{stderr}");
    assert!(dir.join(".wasmflow/workflows/route-audit.js").is_file());
    let by_name = run_in(
        &dir,
        "route-audit",
        &["--json", "--quiet", "--sim-rules", rules],
    );
    assert_eq!(by_name.code, 0, "{}", by_name.stderr);
    assert_eq!(by_name.json()["result"], direct.json()["result"]);
    // From a run id, under another name, in the user's directory.
    let id = direct.json()["run_id"].as_str().unwrap().to_string();
    let (code, _, stderr) = cli(&dir, &["save", &id, "--name", "Audit Routes", "--user"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        dir.join(".config/wasmflow/workflows/audit-routes.js")
            .is_file()
    );
    let again = run_in(
        &dir,
        "audit-routes",
        &["--json", "--quiet", "--sim-rules", rules],
    );
    assert_eq!(again.json()["result"], direct.json()["result"]);
}

#[test]
fn save_refuses_to_overwrite_without_force_and_refuses_symlinks() {
    let dir = temp_dir("save-refusals");
    std::fs::write(
        dir.join("a.js"),
        "export const meta = {name: 'same', description: 'a'}\nreturn 1\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("b.js"),
        "export const meta = {name: 'same', description: 'b'}\nreturn 2\n",
    )
    .unwrap();
    assert_eq!(cli(&dir, &["save", "a.js"]).0, 0);
    let (code, _, stderr) = cli(&dir, &["save", "b.js"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("already saved") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(run_in(&dir, "same", &["--quiet"]).stdout.trim(), "1");
    assert_eq!(cli(&dir, &["save", "b.js", "--force"]).0, 0);
    assert_eq!(run_in(&dir, "same", &["--quiet"]).stdout.trim(), "2");

    // A saved file that is a link: refused even with --force, target intact.
    let outside = dir.join("outside.txt");
    std::fs::write(&outside, "keep me").unwrap();
    let link = dir.join(".wasmflow/workflows/linked.js");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    std::fs::write(
        dir.join("c.js"),
        "export const meta = {name: 'linked', description: 'c'}\nreturn 3\n",
    )
    .unwrap();
    let (code, _, stderr) = cli(&dir, &["save", "c.js", "--force"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");

    // A workflows directory that is a link.
    let other = temp_dir("save-link-dir");
    let elsewhere = other.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(other.join(".config/wasmflow")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, other.join(".config/wasmflow/workflows")).unwrap();
    std::fs::write(other.join("d.js"), "return 4\n").unwrap();
    let (code, _, stderr) = cli(&other, &["save", "d.js", "--user"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(std::fs::read_dir(&elsewhere).unwrap().next().is_none());

    // A broken script is not worth a name.
    std::fs::write(dir.join("bad.js"), "return (\n").unwrap();
    let (code, _, stderr) = cli(&dir, &["save", "bad.js"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("bad.js cannot be saved"), "{stderr}");
}

#[test]
fn bundled_workflows_run_by_name_and_a_saved_one_wins() {
    let dir = temp_dir("bundled");
    let rules = example("review.rules.json");
    let out = run_in(
        &dir,
        "review",
        &["--json", "--quiet", "--sim-rules", rules.to_str().unwrap()],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(example("review.expected.json")).unwrap())
            .unwrap();
    assert_eq!(out.json()["result"], golden["result"]);
    // A run of a bundled workflow resumes by its name.
    let id = out.json()["run_id"].as_str().unwrap().to_string();
    let (code, stdout, stderr) = cli(&dir, &["resume", &id, "--json", "--quiet"]);
    assert_eq!(code, 0, "{stderr}");
    let resumed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(resumed["result"], golden["result"]);

    let (_, stdout, _) = cli(&dir, &["list", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    let bundled: Vec<&str> = rows
        .iter()
        .filter(|r| r["origin"] == "bundled")
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(bundled, ["deep-research", "review"]);

    std::fs::create_dir_all(dir.join(".wasmflow/workflows")).unwrap();
    std::fs::write(dir.join(".wasmflow/workflows/review.js"), "return 'mine'\n").unwrap();
    assert_eq!(
        run_in(&dir, "review", &["--quiet"]).stdout.trim(),
        "\"mine\""
    );
    let (_, stdout, _) = cli(&dir, &["list", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    let shadowed = rows
        .iter()
        .find(|r| r["origin"] == "bundled" && r["name"] == "review")
        .unwrap();
    assert_eq!(shadowed["shadowed"], true);
}

#[test]
fn a_disabled_machine_refuses_to_run_or_resume() {
    let dir = temp_dir("disabled");
    std::fs::write(dir.join("flow.js"), "return await agent('x')\n").unwrap();
    let ok = run_in(&dir, "flow.js", &["--json", "--quiet"]);
    assert_eq!(ok.code, 0);
    let id = ok.json()["run_id"].as_str().unwrap().to_string();
    let out = run_env(&dir, "flow.js", &["--quiet"], &[("WASMFLOW_DISABLE", "1")]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("disabled") && out.stderr.contains("WASMFLOW_DISABLE"),
        "{}",
        out.stderr
    );
    let resumed = wasmflow()
        .current_dir(&dir)
        .env("HOME", &dir)
        .env("WASMFLOW_DISABLE", "1")
        .args(["resume", &id])
        .output()
        .unwrap();
    assert_eq!(resumed.status.code(), Some(2));
    // The user config says so.
    std::fs::create_dir_all(dir.join(".config/wasmflow")).unwrap();
    std::fs::write(dir.join(".config/wasmflow/config.toml"), "disable = true\n").unwrap();
    let out = run_in(&dir, "deep-research", &["--quiet"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("disable = true") && out.stderr.contains("config.toml"),
        "{}",
        out.stderr
    );
    // A project file cannot turn it back on.
    std::fs::write(dir.join("wasmflow.toml"), "disable = false\n").unwrap();
    assert_eq!(run_in(&dir, "flow.js", &["--quiet"]).code, 2);
    // Commands that start no agents still work.
    assert_eq!(cli(&dir, &["list"]).0, 0);
    assert_eq!(cli(&dir, &["show", &id]).0, 0);
}

#[test]
fn show_writes_a_markdown_report() {
    let dir = temp_dir("report");
    let rules = example("route-audit.rules.json");
    let out = run_in(
        &dir,
        example("route-audit.js").to_str().unwrap(),
        &[
            "--json",
            "--quiet",
            "--sim-rules",
            rules.to_str().unwrap(),
            "--model",
            "haiku",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = out.json()["run_id"].as_str().unwrap().to_string();
    let (code, md, stderr) = cli(&dir, &["show", &id, "--format", "md"]);
    assert_eq!(code, 0, "{stderr}");
    for needle in [
        "# route-audit — run ",
        "| status | **ok** |",
        "| agents | 15 spawned, 14 done (0 from the journal), 1 failed |",
        "## Phases",
        "| Verify | 9 | 1 |",
        "## Models",
        "| claude-haiku-4-5 | 15 |",
        "## Failures",
        "rate limited (simulated)",
        "## Result",
        "```json",
        "src/routes/admin.rs",
    ] {
        assert!(md.contains(needle), "report lacks `{needle}`:\n{md}");
    }
    // haiku has a list price: the cost is a number, by phase and in total.
    assert!(!md.contains("unknown (unpriced)"), "{md}");
}
