//! The fuzz oracles (`wasmflow::fuzzing`) as property tests: the same
//! checks the fuzz targets run, on inputs from a seeded generator.

use arbitrary::{Arbitrary, Unstructured};

use wasmflow::fuzzing::{self, ArbJson, HostOp, Outcome, Stmt};

/// Deterministic bytes (xorshift64*), different per case.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn engine() -> wasmflow::WorkflowEngine {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("engine-cache");
    wasmflow::WorkflowEngine::with_cache_dir(Some(&dir))
        .expect("engine loads")
        .0
}

#[test]
fn host_calls_keep_caps_and_accounting() {
    for seed in 0..400u64 {
        let data = bytes(seed, 64 + (seed as usize % 8) * 256);
        let mut u = Unstructured::new(&data);
        let ops: Vec<HostOp> = Vec::arbitrary(&mut u).unwrap_or_default();
        fuzzing::host_calls(&ops, seed % 7);
    }
}

#[test]
fn prompts_options_and_outcomes_cross_the_boundary_unchanged() {
    let engine = engine();
    for seed in 0..80u64 {
        let data = bytes(seed + 1000, 512);
        let mut u = Unstructured::new(&data);
        let prompt = String::arbitrary(&mut u).unwrap_or_default();
        let options = ArbJson::arbitrary(&mut u).unwrap_or(ArbJson::Null);
        let outcome = Outcome::arbitrary(&mut u).unwrap_or(Outcome::Text(String::new()));
        fuzzing::round_trip(&engine, &prompt, &options, outcome);
    }
    // A crash the round_trip target found: an outcome nested deeper than
    // the host reads back (now a clean limit error, not an internal one).
    let mut deep = ArbJson::Int(1);
    for _ in 0..200 {
        deep = ArbJson::List(vec![deep]);
    }
    fuzzing::round_trip(&engine, "deep", &ArbJson::Null, Outcome::Json(deep.clone()));
    // ... and options as deep (a clean TypeError in the script).
    fuzzing::round_trip(
        &engine,
        "deep opts",
        &ArbJson::Object(vec![("context".into(), deep)]),
        Outcome::Text("x".into()),
    );
    // Corners the generator rarely reaches.
    for prompt in ["", "\u{0}", "😀\u{2028}\u{FEFF}", "\\\"'`${x}"] {
        fuzzing::round_trip(
            &engine,
            prompt,
            &ArbJson::Object(vec![("__proto__".into(), ArbJson::Int(1))]),
            Outcome::Json(ArbJson::Str("\u{0}\u{D7FF}".into())),
        );
    }
}

#[test]
fn arbitrary_scripts_end_cleanly() {
    let engine = engine();
    for seed in 0..60u64 {
        let data = bytes(seed + 5000, 256);
        let mut u = Unstructured::new(&data);
        let stmts: Vec<Stmt> = Vec::arbitrary(&mut u).unwrap_or_default();
        let _ = fuzzing::script(&engine, &fuzzing::render(&stmts));
        // Raw bytes as source, too.
        let _ = fuzzing::script(&engine, &String::from_utf8_lossy(&bytes(seed + 9000, 200)));
    }
    // Seeds from the examples and the conformance scripts.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for dir in ["examples", "tests/conformance"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "js") {
                let _ = fuzzing::script(&engine, &std::fs::read_to_string(&p).unwrap());
            }
        }
    }
}

/// The scripts oracle runs on a virtual clock: timers fire in order, and
/// scripts that only wait (a long sleep, a loop of zero-delay timers) still
/// meet the wall-clock bound instead of hanging the fuzzer.
#[test]
fn the_scripts_oracle_keeps_timer_order_and_the_wall_clock() {
    let engine = engine();
    let ordered = "const seen = [];\n\
        await Promise.all([300, 5, 40].map(ms => new Promise(r => setTimeout(() => { seen.push(ms); r() }, ms))));\n\
        return seen;\n";
    let outcome = fuzzing::script(&engine, ordered).expect("the checks pass");
    assert_eq!(outcome.result.unwrap(), serde_json::json!([5, 40, 300]));
    for waits in [
        "await new Promise(r => setTimeout(r, 3600000));\nreturn 1;\n",
        "for (;;) { await new Promise(r => setTimeout(r, 0)); }\n",
    ] {
        let outcome = fuzzing::script(&engine, waits).expect("the checks pass");
        match outcome.result {
            Err(wasmflow::RunError::Limit { kind, .. }) => {
                assert_eq!(kind, wasmflow::error::LimitKind::WallClock, "{waits}")
            }
            other => panic!("{waits}: expected the wall-clock limit, got {other:?}"),
        }
    }
}

/// Found by the `scripts` target under ASan: 2,400 nested arrays overflowed
/// the host's stack in the static checks (10,000 aborted a release build),
/// and nesting or recursion that exhausts the engine's wasm stack was an
/// internal error. Both are now a `RangeError` naming the cause.
#[test]
fn deep_nesting_and_deep_recursion_are_script_errors() {
    let engine = engine();
    for source in [
        format!("return {}{}\n", "[".repeat(20_000), "]".repeat(20_000)),
        format!("const x = {}1\nreturn x\n", "!".repeat(100_000)),
        "function f(n) { return f(n + 1) + 1 }\nreturn f(0)\n".to_string(),
    ] {
        let outcome = fuzzing::script(&engine, &source).expect("the checks pass");
        match outcome.result {
            Err(wasmflow::RunError::Script(f)) => {
                assert_eq!(f.name, "RangeError", "{}", &source[..40]);
                assert!(f.message.contains("too deeply"), "{}", f.message);
            }
            other => panic!("{}: expected a RangeError, got {other:?}", &source[..40]),
        }
    }
}

/// The loader oracle on raw bytes and on damaged built components (the fuzz
/// target adds wasm-smith modules).
#[test]
fn the_loader_refuses_or_runs_cleanly_whatever_the_bytes() {
    let engine = engine();
    for seed in 0..40u64 {
        fuzzing::loader(&engine, &bytes(seed + 5000, (seed as usize % 5) * 40));
    }
    let mut raw = b"\0asm".to_vec();
    raw.extend(bytes(77, 64));
    fuzzing::loader(&engine, &raw);
    let script = wasmflow::Script::from_source(
        "p.js".into(),
        "p.js".into(),
        "return await agent('x')".into(),
        Default::default(),
    )
    .unwrap();
    let base = wasmflow::build_module(&engine, &script).unwrap();
    // Few: a damaged component that still validates costs a full compile.
    for seed in 0..16u64 {
        let noise = bytes(seed + 9000, 8);
        let edits: Vec<(u32, u8)> = noise
            .chunks(4)
            .map(|c| {
                let at = u32::from_le_bytes([c[0], c[1], c[2], 0]);
                (at, c[3] | 1)
            })
            .collect();
        fuzzing::loader(&engine, &fuzzing::mutate(&base, &edits));
    }
}

/// A schema from a few seeded choices: the keywords the contradiction check
/// reads, at random, nested up to three levels.
fn random_schema(r: &mut impl FnMut(u64) -> u64, depth: u32) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    let mut s = Map::new();
    let types = ["object", "array", "string", "integer", "number", "boolean"];
    let ty = types[r(types.len() as u64) as usize];
    if r(5) > 0 {
        s.insert("type".into(), json!(ty));
    }
    let small = |r: &mut dyn FnMut(u64) -> u64| json!(r(6));
    match ty {
        "object" => {
            let mut props = Map::new();
            let names = ["a", "b", "c"];
            for n in names.iter().take(r(4) as usize) {
                let sub = if depth < 3 && r(2) == 0 {
                    random_schema(r, depth + 1)
                } else if r(8) == 0 {
                    Value::Bool(false)
                } else {
                    json!({})
                };
                props.insert(n.to_string(), sub);
            }
            s.insert("properties".into(), Value::Object(props));
            let required: Vec<&str> = ["a", "b", "c", "x"]
                .into_iter()
                .filter(|_| r(3) == 0)
                .collect();
            s.insert("required".into(), json!(required));
            if r(3) == 0 {
                s.insert("additionalProperties".into(), json!(false));
            }
            if r(4) == 0 {
                s.insert("maxProperties".into(), small(r));
            }
        }
        "array" => {
            for k in ["minItems", "maxItems"] {
                if r(2) == 0 {
                    s.insert(k.into(), small(r));
                }
            }
            if depth < 3 && r(2) == 0 {
                s.insert("items".into(), random_schema(r, depth + 1));
            }
        }
        "string" => {
            for k in ["minLength", "maxLength"] {
                if r(2) == 0 {
                    s.insert(k.into(), small(r));
                }
            }
        }
        "integer" | "number" => {
            for k in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"] {
                if r(3) == 0 {
                    s.insert(k.into(), small(r));
                }
            }
        }
        _ => {}
    }
    if r(6) == 0 {
        let options: Vec<Value> = (0..r(3)).map(|i| json!(i)).collect();
        s.insert("enum".into(), Value::Array(options));
    }
    if r(8) == 0 {
        s.insert("const".into(), json!(r(2)));
    }
    if depth < 2 && r(8) == 0 {
        s = Map::from_iter([(
            "allOf".to_string(),
            json!([Value::Object(s), random_schema(r, depth + 1)]),
        )]);
    }
    Value::Object(s)
}

/// No false positives: a schema some value satisfies (a simulated agent's
/// reply, with one item per list or three, or a plain value) is never
/// called contradictory; and every schema in examples/ and
/// tests/conformance/ passes, but the ones written to be refused.
#[test]
fn the_contradiction_check_has_no_false_positives() {
    use wasmflow::script::contradiction::contradiction;
    use wasmflow::script::schema::{Schema, sample, sample_lists};
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut r = move |n: u64| {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n.max(1)
    };
    let (mut satisfiable, mut flagged) = (0, 0);
    for i in 0..20_000 {
        let schema = random_schema(&mut r, 0);
        let Ok(compiled) = Schema::compile(&schema) else {
            continue;
        };
        let seed = format!("s{i}");
        let candidates = [
            sample(&schema, &seed),
            sample_lists(&schema, &seed, 3),
            serde_json::json!({}),
            serde_json::json!([]),
            serde_json::json!(0),
            serde_json::json!(""),
        ];
        let found = contradiction(&schema);
        if candidates.iter().any(|c| compiled.errors(c).is_empty()) {
            satisfiable += 1;
            assert_eq!(found, None, "a satisfiable schema was flagged: {schema}");
        } else if found.is_some() {
            flagged += 1;
        }
    }
    // The generator must produce both kinds, or the test proves nothing.
    assert!(
        satisfiable > 2_000 && flagged > 500,
        "{satisfiable} satisfiable, {flagged} flagged"
    );

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut scripts = 0;
    for dir in ["examples", "tests/conformance"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            let path = entry.path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".js")
                || name.contains("contradiction")
                || name.contains("not-an-object")
            {
                continue;
            }
            let Ok(script) = wasmflow::Script::load(&path, Default::default()) else {
                continue;
            };
            scripts += 1;
            for w in &script.warnings {
                assert!(
                    !w.message.contains("agent() will throw here"),
                    "{name}: {}",
                    w.message
                );
            }
        }
    }
    assert!(scripts > 60, "{scripts}");
}
