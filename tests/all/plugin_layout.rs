//! The Claude Code plugin (integrations/claude-code) and the marketplace
//! at the repository root, checked against Claude Code's plugin and
//! marketplace references
//! (https://code.claude.com/docs/en/plugins-reference,
//! https://code.claude.com/docs/en/plugins/marketplace-reference): names,
//! JSON shapes, and paths that exist.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// kebab-case: lowercase letters, digits and single hyphens.
fn kebab(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn semver(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

#[test]
fn the_marketplace_lists_the_plugin_at_a_path_that_holds_it() {
    let market = json(&root().join(".claude-plugin/marketplace.json"));
    assert!(kebab(market["name"].as_str().unwrap()), "marketplace name");
    assert!(
        market["owner"]["name"].is_string(),
        "owner.name is required"
    );
    let plugins = market["plugins"].as_array().expect("plugins is an array");
    assert_eq!(plugins.len(), 1);
    let entry = &plugins[0];
    let source = entry["source"].as_str().expect("a relative path source");
    assert!(
        source.starts_with("./") && !source.contains(".."),
        "{source}"
    );
    let dir = root().join(source);
    let manifest = json(&dir.join(".claude-plugin/plugin.json"));
    assert_eq!(
        entry["name"], manifest["name"],
        "the entry names the plugin it points at"
    );
}

#[test]
fn the_plugin_has_a_manifest_an_mcp_server_a_skill_and_the_bundled_workflows() {
    let dir = root().join("integrations/claude-code");
    // Only plugin.json lives in .claude-plugin/; components sit at the root.
    let inside: Vec<String> = std::fs::read_dir(dir.join(".claude-plugin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(inside, ["plugin.json"]);
    let manifest = json(&dir.join(".claude-plugin/plugin.json"));
    assert!(kebab(manifest["name"].as_str().unwrap()));
    assert!(semver(manifest["version"].as_str().unwrap()));
    assert!(manifest["description"].is_string());
    for (key, _) in manifest.as_object().unwrap() {
        assert!(
            [
                "name",
                "version",
                "description",
                "author",
                "homepage",
                "repository",
                "license",
                "keywords"
            ]
            .contains(&key.as_str()),
            "plugin.json: `{key}` is not a field of the manifest this plugin means to use"
        );
    }

    let mcp = json(&dir.join(".mcp.json"));
    let servers = mcp["mcpServers"].as_object().expect("mcpServers");
    let server = &servers["wasmflow"];
    assert_eq!(server["command"], "wasmflow");
    assert_eq!(server["args"], serde_json::json!(["mcp"]));

    let skill = std::fs::read_to_string(dir.join("skills/wasmflow/SKILL.md")).unwrap();
    let front = skill
        .strip_prefix("---\n")
        .and_then(|s| s.split_once("\n---\n"))
        .expect("SKILL.md starts with YAML frontmatter")
        .0;
    let field = |k: &str| {
        front
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .unwrap_or_else(|| panic!("SKILL.md frontmatter has no {k}"))
    };
    assert_eq!(
        field("name"),
        "wasmflow",
        "the skill's name is its directory's"
    );
    assert!(kebab(field("name")) && field("name").len() <= 64);
    let description = field("description");
    assert!(!description.is_empty() && description.len() <= 1024);
    for tool in [
        "workflow_run",
        "workflow_status",
        "workflow_result",
        "resumeFromRunId",
        "wasmflow://contract",
    ] {
        assert!(skill.contains(tool), "the skill does not mention {tool}");
    }

    // The bundled workflows, the very files the binary embeds.
    for b in wasmflow::script::bundled::BUNDLED {
        let path = dir.join("workflows").join(format!("{}.js", b.name));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            text,
            b.source,
            "{} differs from the bundled one",
            path.display()
        );
        wasmflow::Script::load(&path, Default::default())
            .unwrap_or_else(|e| panic!("{} fails the checks: {e}", path.display()));
    }
}
