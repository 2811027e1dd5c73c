//! Operator experience: saved and bundled workflows by name, managed
//! machines that refuse to run, the Markdown run report.

use std::path::{Path, PathBuf};

use crate::support::{run_env, run_in, temp_dir, wasmflow};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../examples/{name}"))
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

/// `plan` on every example counts the agents a real run starts, by phase
/// and by model, and prices them from the price table.
#[test]
fn plan_counts_what_a_real_run_starts_and_prices_it() {
    let ex = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let prices = wasmflow::config::Config::default();
    let mut names: Vec<String> = std::fs::read_dir(&ex)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".js").map(str::to_string)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 5);
    for name in names {
        let dir = temp_dir("plan");
        let script = ex.join(format!("{name}.js"));
        let rules = ex.join(format!("{name}.rules.json"));
        let flags = [
            "--sim-rules",
            rules.to_str().unwrap(),
            "--model",
            "haiku",
            "--json",
            "--quiet",
        ];
        let real = run_in(&dir, script.to_str().unwrap(), &flags);
        assert_eq!(real.code, 0, "{name}: {}", real.stderr);
        let real = real.json();
        let mut argv = vec!["plan", script.to_str().unwrap()];
        argv.extend(flags);
        let (code, stdout, stderr) = cli(&dir, &argv);
        assert_eq!(code, 0, "{name}: {stderr}");
        let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let e = &plan["estimate"];
        assert_eq!(e["ended"], "ok", "{name}");
        assert_eq!(
            e["agents"]["min"], real["agents"]["spawned"],
            "{name}: agents"
        );
        for group in ["by_phase", "by_model"] {
            let counts = |v: &serde_json::Value| -> Vec<(String, u64)> {
                v.as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, l)| (k.clone(), l["agents"].as_u64().unwrap()))
                    .collect()
            };
            assert_eq!(
                counts(&e[group]),
                counts(&real["cost"][group]),
                "{name}: agents {group}"
            );
        }
        let mut total = 0.0;
        for (model, line) in e["by_model"].as_object().unwrap() {
            let price = prices
                .price(model)
                .unwrap_or_else(|| panic!("{model} has a price"));
            let expected = (line["input"].as_u64().unwrap() as f64 * price.input
                + line["output"].as_u64().unwrap() as f64 * price.output)
                / 1e6;
            let got = line["usd"].as_f64().unwrap();
            assert!(
                (got - expected).abs() < 1e-9,
                "{name} {model}: {got} vs {expected}"
            );
            total += expected;
        }
        let usd = e["usd"].as_f64().unwrap();
        assert!((usd - total).abs() < 1e-9, "{name}: total {usd} vs {total}");
        let text = wasmflow()
            .current_dir(&dir)
            .env("HOME", &dir)
            .args(["plan", script.to_str().unwrap(), "--model", "haiku"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("assumptions:") && text.contains("input tokens"),
            "{text}"
        );
    }
}

/// Over the threshold, a run without a terminal refuses unless `--yes`;
/// the sim backend costs nothing and never asks.
#[test]
fn a_run_over_the_threshold_refuses_without_yes() {
    let dir = temp_dir("confirm");
    std::fs::write(dir.join("wasmflow.toml"), "[plan]\nconfirm_agents = 3\n").unwrap();
    std::fs::write(
        dir.join("flow.js"),
        "const r = await parallel([1, 2, 3, 4, 5].map(i => () => agent(`text:${i}`)))\nreturn r\n",
    )
    .unwrap();
    let agent =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fake-agent.py");
    let exec = format!("python3 {}", agent.display());
    let log = dir.join("agents.log");
    let out = run_env(
        &dir,
        "flow.js",
        &["--exec", &exec, "--json", "--quiet"],
        &[("FAKE_AGENT_LOG", log.to_str().unwrap())],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("about 5 agents")
            && out.stderr.contains("threshold of 3 agents")
            && out.stderr.contains("--yes"),
        "{}",
        out.stderr
    );
    assert!(!log.exists(), "no agent may start");
    assert!(
        !dir.join(".wasmflow/runs").exists()
            || std::fs::read_dir(dir.join(".wasmflow/runs"))
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().is_dir())
                .count()
                == 0
    );
    let out = run_env(
        &dir,
        "flow.js",
        &["--exec", &exec, "--json", "--quiet", "--yes"],
        &[("FAKE_AGENT_LOG", log.to_str().unwrap())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.json()["result"],
        serde_json::json!(["1", "2", "3", "4", "5"])
    );
    // A price threshold too: $0.01 is crossed by 5 opus agents as assumed.
    std::fs::write(dir.join("wasmflow.toml"), "[plan]\nconfirm_usd = 0.01\n").unwrap();
    let out = run_env(
        &dir,
        "flow.js",
        &["--exec", &exec, "--model", "opus", "--quiet"],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("about $") && out.stderr.contains("--yes"),
        "{}",
        out.stderr
    );
    let out = run_in(&dir, "flow.js", &["--quiet", "--model", "opus"]);
    assert_eq!(out.code, 0, "the sim backend never asks: {}", out.stderr);
}

/// Every workflows directory between the working directory and the
/// repository root counts, per name: a nearer `.claude/workflows/` does not
/// hide a name saved only at the root.
#[test]
fn saved_workflows_are_found_per_name_up_to_the_repository_root() {
    let repo = temp_dir("saved-per-name");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    let app = repo.join("pkg/app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::create_dir_all(repo.join(".claude/workflows")).unwrap();
    std::fs::create_dir_all(repo.join("pkg/.claude/workflows")).unwrap();
    let flow = |name: &str, value: &str| {
        format!("export const meta = {{ name: '{name}', description: 'd' }}\nreturn '{value}'\n")
    };
    std::fs::write(
        repo.join(".claude/workflows/rooted.js"),
        flow("rooted", "from the root"),
    )
    .unwrap();
    std::fs::write(
        repo.join(".claude/workflows/both.js"),
        flow("both", "root copy"),
    )
    .unwrap();
    std::fs::write(
        repo.join("pkg/.claude/workflows/both.js"),
        flow("both", "nearer copy"),
    )
    .unwrap();
    let run = |name: &str| {
        let out = wasmflow()
            .current_dir(&app)
            .env("HOME", &repo)
            .args(["run", name, "--quiet", "--no-journal"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(run("rooted"), "from the root");
    assert_eq!(run("both"), "nearer copy");
    let out = wasmflow()
        .current_dir(&app)
        .env("HOME", &repo)
        .args(["list", "--json"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = list.as_array().unwrap();
    let both: Vec<&serde_json::Value> = rows.iter().filter(|r| r["name"] == "both").collect();
    assert_eq!(both.len(), 2, "{list:#}");
    assert!(
        both.iter().any(|r| r["shadowed"] == true
            && r["path"]
                .as_str()
                .unwrap()
                .starts_with(repo.join(".claude").to_str().unwrap())),
        "{list:#}"
    );
    assert!(
        rows.iter()
            .any(|r| r["name"] == "rooted" && r["shadowed"] == false),
        "{list:#}"
    );
}
