//! Tool names: Claude Code's `mcp__SERVER__TOOL`, made valid for the
//! model APIs, and the globs `[tools]` and `opts.disallowedTools` use.

use sha2::{Digest, Sha256};

/// Longest tool name both APIs take (OpenAI: `^[a-zA-Z0-9_-]{1,64}$`,
/// <https://platform.openai.com/docs/api-reference/chat/create>; the
/// Messages API's limit is no lower).
pub const MAX_API_NAME: usize = 64;

/// The name Claude Code gives a server's tool.
pub fn qualified(server: &str, tool: &str) -> String {
    format!("mcp__{server}__{tool}")
}

/// `qualified` made valid for the APIs: other characters become `_`, and a
/// name that changed or is too long is shortened with a hash of the
/// original, so distinct tools stay distinct.
pub fn api_name(qualified: &str) -> String {
    let clean: String = qualified
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == qualified && clean.len() <= MAX_API_NAME && !clean.is_empty() {
        return clean;
    }
    let hash = crate::run::key::hex(&Sha256::digest(qualified.as_bytes()));
    let keep = MAX_API_NAME - 9;
    let head: String = clean.chars().take(keep).collect();
    format!("{head}_{}", &hash[..8])
}

/// Whether `name` (`mcp__SERVER__TOOL`) matches `pattern`: a glob with `*`
/// (any run of characters) and `?` (one character), or, as in Claude Code's
/// permission rules, `mcp__SERVER` for every tool of that server.
pub fn matches(pattern: &str, name: &str) -> bool {
    if !pattern.contains(['*', '?'])
        && pattern.starts_with("mcp__")
        && pattern.matches("__").count() == 1
        && name.starts_with(pattern)
        && name[pattern.len()..].starts_with("__")
    {
        return true;
    }
    glob(pattern.as_bytes(), name.as_bytes())
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matcher with one backtrack point: linear enough for names.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_for_the_apis() {
        assert_eq!(
            api_name("mcp__fs__read_text_file"),
            "mcp__fs__read_text_file"
        );
        let dotted = api_name("mcp__my.server__get item");
        assert!(dotted.starts_with("mcp__my_server__get_item_"), "{dotted}");
        let long = api_name(&qualified("s", &"x".repeat(100)));
        assert_eq!(long.len(), MAX_API_NAME);
        let other = api_name(&qualified("s", &format!("{}y", "x".repeat(99))));
        assert_ne!(long, other);
        let ok = regex::Regex::new("^[a-zA-Z0-9_-]{1,64}$").unwrap();
        for n in [dotted, long, other, api_name("mcp__ü__ß")] {
            assert!(ok.is_match(&n), "{n}");
        }
    }

    #[test]
    fn globs_and_server_rules() {
        assert!(matches("mcp__fs__*", "mcp__fs__read_file"));
        assert!(matches("mcp__fs", "mcp__fs__read_file"));
        assert!(!matches("mcp__fs", "mcp__fsx__read_file"));
        assert!(matches("*write*", "mcp__fs__write_file"));
        assert!(!matches("*write*", "mcp__fs__read_file"));
        assert!(matches("mcp__fs__read_?ile", "mcp__fs__read_file"));
        assert!(matches("mcp__fs__read_file", "mcp__fs__read_file"));
        assert!(!matches("mcp__fs__read", "mcp__fs__read_file"));
        assert!(matches("*", "anything"));
    }
}
