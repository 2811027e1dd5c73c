//! What a script returns, throws and sees.

use crate::support::run;

#[test]
fn top_level_return_is_the_result() {
    let out = run(
        "export const meta = { name: 'r', description: 'returns' }\nconst x = await agent('hi')\nreturn { ok: true, n: 3, got: typeof x }\n",
        &["--quiet"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.json(),
        serde_json::json!({"ok": true, "n": 3, "got": "string"})
    );
}

#[test]
fn no_return_gives_null() {
    let out = run("log('nothing to return')\n", &["--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), serde_json::Value::Null);
}

#[test]
fn a_throw_on_line_40_is_reported_at_line_40() {
    let mut src = String::from("export const meta = { name: 't', description: 'throws' }\n");
    for i in 2..40 {
        src.push_str(&format!("const v{i} = {i}\n"));
    }
    src.push_str("throw new TypeError('the widget is broken')\n");
    let out = run(&src, &["--json", "--quiet"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let summary = out.json();
    assert_eq!(summary["status"], "script_error");
    let script = &summary["error"]["script"];
    assert_eq!(script["name"], "TypeError");
    assert_eq!(script["message"], "the widget is broken");
    assert_eq!(script["line"], 40, "{summary:#}");
    assert!(
        script["stack"].as_str().unwrap().contains("flow.js:40"),
        "{summary:#}"
    );
    assert!(
        out.stderr
            .contains("TypeError: the widget is broken (line 40)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("flow.js:40"), "{}", out.stderr);
}

#[test]
fn an_error_inside_an_awaited_function_names_its_line() {
    let src = "async function step(n) {\n  await agent('x' + n)\n  if (n === 2) throw new RangeError('bad step ' + n)\n}\nawait step(1)\nawait step(2)\n";
    let out = run(src, &["--json", "--quiet"]);
    assert_eq!(out.code, 1);
    let script = &out.json()["error"]["script"];
    assert_eq!(script["name"], "RangeError");
    assert_eq!(script["message"], "bad step 2");
    assert_eq!(script["line"], 3, "{script:#}");
}

#[test]
fn a_syntax_error_names_its_line() {
    let src = "const a = 1\nconst b = 2\nconst c = (a +\nreturn c\n";
    let out = run(src, &["--json", "--quiet"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let script = &out.json()["error"]["script"];
    assert_eq!(script["name"], "SyntaxError", "{script:#}");
    assert_eq!(script["line"], 4, "{script:#}");
    assert!(out.stderr.contains("SyntaxError"), "{}", out.stderr);
}

#[test]
fn args_reach_the_script() {
    let out = run(
        "return { doubled: args.n * 2, name: args.name }\n",
        &["--quiet", "--args", r#"{"n": 21, "name": "x"}"#],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), serde_json::json!({"doubled": 42, "name": "x"}));
}

#[test]
fn args_file_reaches_the_script() {
    let out = crate::support::run_with_files(
        "return args.items.length\n",
        &[("args.json", r#"{"items": [1, 2, 3]}"#)],
        &["--quiet", "--args-file", "args.json"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), serde_json::json!(3));
}

#[test]
fn args_is_undefined_without_flags_and_null_when_given_null() {
    let out = run("return args === undefined\n", &["--quiet"]);
    assert_eq!(out.json(), serde_json::json!(true));
    let out = run("return args === null\n", &["--quiet", "--args", "null"]);
    assert_eq!(out.json(), serde_json::json!(true));
}

#[test]
fn agent_text_and_json_replies_reach_the_script() {
    let rules = r#"{"rules": [{"match": {"label": "obj"}, "reply": {"files": ["a.rs", "b.rs"]}},
                               {"match": {"prompt": "greet"}, "reply": "hello there"}]}"#;
    let out = crate::support::run_with_files(
        "const o = await agent('list', { label: 'obj' })\nconst t = await agent('greet me')\nreturn { files: o.files, t }\n",
        &[("rules.json", rules)],
        &["--quiet", "--sim-rules", "rules.json"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.json(),
        serde_json::json!({"files": ["a.rs", "b.rs"], "t": "hello there"})
    );
}

#[test]
fn promise_all_phase_log_and_console_work() {
    let src = "phase('Scan')\nconsole.log('scanning', { n: 2 })\nconst [a, b] = await Promise.all([agent('a'), agent('b')])\nlog('got both')\nconsole.warn('careful')\nreturn [typeof a, typeof b]\n";
    let out = run(src, &["--events", "events.jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), serde_json::json!(["string", "string"]));
    assert!(out.stderr.contains("phase Scan"), "{}", out.stderr);
    assert!(out.stderr.contains("scanning {\"n\":2}"), "{}", out.stderr);
    assert!(out.stderr.contains("warn: careful"), "{}", out.stderr);
    let events = std::fs::read_to_string(out.path("events.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"phase"));
    assert_eq!(
        kinds.iter().filter(|k| **k == "agent_done").count(),
        2,
        "{kinds:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "agent_started" && e["phase"] == "Scan")
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "log" && e["message"] == "got both")
    );
    assert_eq!(kinds.last(), Some(&"run_finished"));
}

#[test]
fn parallel_gives_null_for_a_throwing_thunk_in_order() {
    let src = "const r = await parallel([() => agent('a'), () => { throw new Error('boom') }, async () => 7])\nreturn [typeof r[0], r[1], r[2]]\n";
    let out = run(src, &["--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), serde_json::json!(["string", null, 7]));
}

#[test]
fn the_result_must_be_json() {
    let out = run("return 10n\n", &["--quiet", "--json"]);
    assert_eq!(out.code, 1);
    assert!(
        out.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON-serialisable")
    );
}

#[test]
fn nondeterministic_calls_throw() {
    for call in ["Date.now()", "Math.random()", "new Date()", "Date()"] {
        let out = run(&format!("return {call}\n"), &["--quiet", "--json"]);
        assert_eq!(out.code, 1, "{call}");
        let msg = out.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains("non-deterministic"), "{call}: {msg}");
    }
    let out = run("return new Date(0).toISOString()\n", &["--quiet"]);
    assert_eq!(out.json(), serde_json::json!("1970-01-01T00:00:00.000Z"));
}

#[test]
fn code_generation_is_refused() {
    for expr in [
        "eval('1')",
        "new Function('return 1')()",
        "(async () => {}).constructor('return 1')",
        "typeof WebAssembly === 'undefined' ? (() => { throw new Error('absent') })() : 1",
    ] {
        let out = run(&format!("return {expr}\n"), &["--quiet", "--json"]);
        assert_eq!(out.code, 1, "{expr} ran: {}", out.stdout);
    }
}
