//! Telling TypeScript from broken JavaScript by looking where the JavaScript
//! parse stopped, without parsing the script again as TypeScript.
//!
//! oxc's TypeScript parser backtracks exponentially on some inputs (the
//! `scripts` fuzz target found `({[y<b<` repeated: 2 GB and 3 s for 84
//! bytes, 25 times more per repetition), and a script is untrusted input.
//! These rules read a few tokens around the first error, so the cost is
//! linear in the script; they cover the TypeScript people actually write
//! (annotations, interfaces, type aliases, enums, generics, `as`, `!.`).

/// Whether the first JavaScript syntax error, `message` at byte `offset`,
/// is most likely TypeScript syntax.
pub(super) fn looks_like_typescript(source: &str, offset: usize, message: &str) -> bool {
    // oxc names these itself.
    if message.contains("only be used in TypeScript files") {
        return true;
    }
    let at = source.get(offset..).unwrap_or("");
    let before = source.get(..offset).unwrap_or("");
    annotation_at(at)
        || declaration_on_line(source, offset)
        || return_type_at(at, message)
        || generics_at(at, before)
        || at.starts_with("!.")
        || at.starts_with("![")
}

/// `x: T`, `x?: T` or `: T`, where the JavaScript parse stopped at the name
/// or at the colon (`const x: number`, `function f(a: string)`).
fn annotation_at(at: &str) -> bool {
    let rest = skip_ident(at.trim_start()).trim_start();
    let rest = rest.strip_prefix(['?', '!']).unwrap_or(rest).trim_start();
    match rest.strip_prefix(':') {
        Some(ty) => starts_type(ty.trim_start()),
        None => false,
    }
}

/// A line that declares a type: `interface X`, `type X =`, `enum X`,
/// `declare …`, `namespace X`, `abstract class`, with or without `export`.
fn declaration_on_line(source: &str, offset: usize) -> bool {
    let start = source
        .get(..offset)
        .and_then(|b| b.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line = source.get(start..).unwrap_or("").trim_start();
    let line = line.strip_prefix("export").map_or(line, str::trim_start);
    let Some((word, rest)) = split_word(line) else {
        return false;
    };
    let rest = rest.trim_start();
    match word {
        "interface" | "enum" | "namespace" => !skip_ident(rest).eq(rest),
        "type" => {
            let after = skip_ident(rest);
            after != rest && after.trim_start().starts_with(['=', '<'])
        }
        "declare" => split_word(rest).is_some_and(|(w, _)| {
            matches!(
                w,
                "const" | "let" | "var" | "function" | "class" | "module" | "namespace" | "global"
            )
        }),
        "abstract" => split_word(rest).is_some_and(|(w, _)| w == "class"),
        _ => false,
    }
}

/// `function f(…): T {` — oxc reports the missing body at `function`.
fn return_type_at(at: &str, message: &str) -> bool {
    if !message.contains("function body") {
        return false;
    }
    let Some(open) = at.find('(') else {
        return false;
    };
    let Some(close) = at[open..].find(')') else {
        return false;
    };
    at[open + close + 1..]
        .trim_start()
        .strip_prefix(':')
        .is_some_and(|t| starts_type(t.trim_start()))
}

/// `function f<T>(`, `<T,>(x) =>`, `new Map<string, number>()`.
fn generics_at(at: &str, before: &str) -> bool {
    if let Some(params) = at.strip_prefix('<') {
        let after_name = skip_ident(params.trim_start());
        if after_name != params.trim_start() {
            let tail = after_name.trim_start();
            let named_function =
                before
                    .trim_end()
                    .rsplit_once("function")
                    .is_some_and(|(_, name)| {
                        let name = name.trim();
                        !name.is_empty() && skip_ident(name).is_empty()
                    });
            if named_function || tail.starts_with(',') || tail.starts_with("extends") {
                return true;
            }
        }
    }
    // `Map<string, number>()`: JavaScript reads `Map < string, number > ()`
    // and stops somewhere in it.
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = at.find('\n').map_or(at.len(), |i| i);
    let line = format!("{}{}", &before[line_start..], &at[..line_end]);
    type_arguments_in(&line)
}

/// `name<A, B[]>(` somewhere in `line`. Each scan stops at the first
/// character a type argument list cannot hold, so the whole is linear.
fn type_arguments_in(line: &str) -> bool {
    line.match_indices('<').any(|(i, _)| {
        if !line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
            return false;
        }
        let inner = &line[i + 1..];
        let Some(end) = inner.find(|c: char| {
            !(c.is_alphanumeric() || matches!(c, '_' | '$' | ',' | ' ' | '[' | ']'))
        }) else {
            return false;
        };
        inner[end..].starts_with(">(")
            && inner[..end].split(',').all(|a| {
                let a = a.trim().trim_end_matches("[]");
                !a.is_empty() && skip_ident(a).is_empty()
            })
    })
}

/// What can start a type after `:`: a name, `{`, `[`, `(`, a string.
fn starts_type(s: &str) -> bool {
    s.starts_with(|c: char| {
        c.is_alphabetic() || matches!(c, '_' | '$' | '{' | '[' | '(' | '\'' | '"')
    })
}

/// `s` after a leading identifier (unchanged when there is none).
fn skip_ident(s: &str) -> &str {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, c)) if c.is_alphabetic() || c == '_' || c == '$' => {}
        _ => return s,
    }
    let end = chars
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .map_or(s.len(), |(i, _)| i);
    &s[end..]
}

/// The leading word of `s` and what follows it.
fn split_word(s: &str) -> Option<(&str, &str)> {
    let rest = skip_ident(s);
    let word = &s[..s.len() - rest.len()];
    (!word.is_empty()).then_some((word, rest))
}
