//! Caps and bounds end runs with clear errors; nothing hangs.

use crate::support::run;

#[test]
fn the_1001st_agent_throws_naming_the_cap() {
    let src = "let n = 0\ntry {\n  for (let i = 0; i < 1001; i++) { await agent('a' + i); n++ }\n} catch (e) {\n  return { n, name: e.name, message: e.message }\n}\nreturn { n }\n";
    let out = run(src, &["--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["n"], 1000);
    assert_eq!(v["name"], "WorkflowAgentCapError");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("at most 1000 agents"),
        "{v}"
    );
}

#[test]
fn max_agents_flag_lowers_the_cap() {
    let out = run(
        "await agent('a'); await agent('b'); await agent('c')\n",
        &["--quiet", "--max-agents", "2", "--json"],
    );
    assert_eq!(out.code, 1);
    let v = out.json();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 2 agents"),
        "{v}"
    );
    assert_eq!(v["agents"]["spawned"], 2);
}

#[test]
fn set_timeout_is_not_a_deadlock() {
    let src = "const order = []\nsetTimeout(() => order.push('late'), 80)\nawait new Promise(r => setTimeout(r, 50))\norder.push('after 50')\nawait new Promise(r => setTimeout(r, 60))\nreturn order\n";
    let out = run(src, &["--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), serde_json::json!(["after 50", "late"]));
}

#[test]
fn clear_timeout_cancels() {
    let src = "let fired = false\nconst t = setTimeout(() => { fired = true }, 10)\nclearTimeout(t)\nawait new Promise(r => setTimeout(r, 40))\nreturn fired\n";
    let out = run(src, &["--quiet"]);
    assert_eq!(out.json(), serde_json::json!(false));
}

#[test]
fn a_promise_nothing_settles_is_a_deadlock() {
    let out = run(
        "await new Promise(() => {})\nreturn 1\n",
        &["--quiet", "--json"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["error"]["script"]["name"], "Deadlock");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing will settle"),
        "{v}"
    );
}

#[test]
fn an_endless_loop_hits_the_cpu_limit() {
    let out = run(
        "await agent('first')\nwhile (true) {}\n",
        &["--quiet", "--json", "--cpu-limit", "50000000"],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["status"], "limit");
    assert_eq!(v["error"]["limit"], "cpu");
    assert!(out.stderr.contains("CPU allowance"), "{}", out.stderr);
    assert_eq!(v["agents"]["done"], 1);
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let src = "const hoard = []\nwhile (true) hoard.push('x'.repeat(1 << 20) + hoard.length)\n";
    let out = run(src, &["--quiet", "--json", "--memory-limit", "64M"]);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    let v = out.json();
    assert_eq!(v["error"]["limit"], "memory", "{v}");
    assert!(out.stderr.contains("at most 64 MiB"), "{}", out.stderr);
}

#[test]
fn out_of_memory_is_catchable_by_the_script() {
    let src = "let caught = null\ntry {\n  const hoard = []\n  while (true) hoard.push('y'.repeat(1 << 20) + hoard.length)\n} catch (e) { caught = String(e) }\nreturn caught\n";
    let out = run(src, &["--quiet", "--memory-limit", "64M"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.json().as_str().unwrap().contains("out of memory"),
        "{}",
        out.stdout
    );
}

#[test]
fn the_wall_clock_limit_ends_a_slow_run() {
    let out = run(
        "await agent('slow')\nreturn 1\n",
        &[
            "--quiet",
            "--json",
            "--sim-latency",
            "5000",
            "--timeout",
            "300ms",
        ],
    );
    assert_eq!(out.code, 3);
    let v = out.json();
    assert_eq!(v["error"]["limit"], "wall_clock");
    assert!(v["duration_ms"].as_u64().unwrap() < 4000, "{v}");
}
