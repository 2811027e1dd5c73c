//! Bad input: a clear error, a non-zero exit, never a panic.

use crate::support::{run, run_in, temp_dir};

#[test]
fn missing_script_file() {
    let dir = temp_dir("missing");
    let out = run_in(&dir, "nope.js", &[]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("cannot read the script nope.js"),
        "{}",
        out.stderr
    );
}

#[test]
fn invalid_args_json() {
    let out = run("return args\n", &["--args", "{not json"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("--args is not valid JSON"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_args_file() {
    let out = run("return args\n", &["--args-file", "absent.json"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("cannot read --args-file absent.json"),
        "{}",
        out.stderr
    );
}

#[test]
fn non_utf8_script() {
    let dir = temp_dir("utf8");
    std::fs::write(dir.join("bad.js"), b"const a = 1\nconst b = '\xff\xfe'\n").unwrap();
    let out = run_in(&dir, "bad.js", &[]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("not UTF-8"), "{}", out.stderr);
    assert!(out.stderr.contains("line 2"), "{}", out.stderr);
}

#[test]
fn oversized_script() {
    let big = format!("// {}\nreturn 1\n", "x".repeat(600 * 1024));
    let out = run(&big, &[]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("at most 524288 bytes"),
        "{}",
        out.stderr
    );
}

#[test]
fn unknown_backend() {
    let out = run("return 1\n", &["--backend", "gpt-9"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("unknown backend `gpt-9`"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_flag_values() {
    for args in [
        &["--concurrency", "0"][..],
        &["--max-agents", "-3"],
        &["--timeout", "soon"],
        &["--memory-limit", "12Q"],
        &["--no-such-flag"],
    ] {
        let out = run("return 1\n", args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("error"), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn bad_sim_rules() {
    let cases = [
        ("not json", "not a valid rules file"),
        (
            r#"{"rules": [{"match": {"label": "x"}, "reply": "a", "error": "b"}]}"#,
            "more than one",
        ),
        (r#"{"rules": [{"latency": 5}]}"#, "latency"),
    ];
    for (text, expected) in cases {
        let out = crate::support::run_with_files(
            "return 1\n",
            &[("rules.json", text)],
            &["--sim-rules", "rules.json"],
        );
        assert_eq!(out.code, 2, "{text}");
        assert!(
            out.stderr.contains("sim rules rules.json"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains(expected), "{text}: {}", out.stderr);
    }
}

#[test]
fn default_backend_is_announced() {
    let out = run("return 1\n", &[]);
    assert_eq!(out.code, 0);
    assert!(
        out.stderr.contains("simulated backend (sim)"),
        "{}",
        out.stderr
    );
}
