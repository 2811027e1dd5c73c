//! docs/workflow-api.md, the contract for people and models, keeps up with
//! what the guest defines: every global and every `agent()` option is in
//! it, and its examples pass the static checks.

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_contract_names_every_global_and_option_the_guest_knows() {
    let doc = std::fs::read_to_string(root().join("docs/workflow-api.md")).unwrap();
    let prelude = std::fs::read_to_string(root().join("guest/src/prelude.js")).unwrap();
    let defined = regex::Regex::new(r"define\('([A-Za-z_]+)'").unwrap();
    let globals: Vec<String> = defined
        .captures_iter(&prelude)
        .map(|c| c[1].to_string())
        .collect();
    assert!(globals.len() >= 12, "{globals:?}");
    let mut missing: Vec<String> = globals
        .iter()
        .map(String::as_str)
        .chain(wasmflow::script::options::KNOWN.iter().copied())
        .filter(|name| !doc.contains(&format!("`{name}")))
        .map(String::from)
        .collect();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "docs/workflow-api.md does not mention: {missing:?}"
    );
}

#[test]
fn the_contract_s_examples_pass_the_checks() {
    let doc = std::fs::read_to_string(root().join("docs/workflow-api.md")).unwrap();
    let blocks: Vec<&str> = doc
        .split("```js\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert!(blocks.len() >= 4, "{}", blocks.len());
    for block in blocks {
        let script = wasmflow::Script::from_source(
            "example.js".into(),
            "example.js".into(),
            block.to_string(),
            Default::default(),
        );
        assert!(script.is_ok(), "{block}\n{:?}", script.err());
    }
}
