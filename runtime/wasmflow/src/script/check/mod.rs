//! Static checks on a script, before any agent runs: syntax, TypeScript,
//! `import`/`require`, the determinism check, and `meta`.
//!
//! A real JavaScript parser (oxc) reads the script, so strings, comments,
//! templates and regular expressions never trigger a check.

use std::fmt;

use oxc_allocator::Allocator;
use std::collections::HashMap;

use oxc_ast::ast::{
    Argument, BindingPattern, CallExpression, Expression, ImportExpression, NewExpression,
    ObjectPropertyKind, Program, Statement, VariableDeclarationKind,
};
use oxc_ast_visit::{Visit, walk};
use oxc_parser::{ParseOptions, Parser};
use oxc_span::{GetSpan, SourceType, Span};
use serde::Serialize;

mod meta;
mod typescript;

pub use meta::{Meta, Phase};

/// One finding, positioned in the user's file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Line (from 1).
    pub line: u32,
    /// Column (from 1).
    pub column: u32,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}:{}: {}", self.line, self.column, self.message)
    }
}

/// Why a script was refused before running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `SyntaxError`, `TypeScriptError`, `ImportError`,
    /// `DeterminismError`, `MetaError` or `SchemaError`.
    pub kind: &'static str,
    /// Every reason, in source order.
    pub findings: Vec<Finding>,
}

/// What a script passing the checks looks like.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// `meta`, validated; `None` when the script has none (a warning).
    pub meta: Option<Meta>,
    /// Byte offset of the `export` keyword of `export const meta`, which the
    /// wrapper blanks out.
    pub export_offset: Option<usize>,
    /// Findings that do not stop the script.
    pub warnings: Vec<Finding>,
    /// Every `model` written as a string literal in an `agent()` call.
    pub literal_models: Vec<String>,
    /// No statement at all: only white space, comments, directives or a
    /// hashbang line.
    pub empty: bool,
}

/// Options of the checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Unknown `meta` keys are errors, not warnings.
    pub strict: bool,
}

/// Maps byte offsets to 1-based lines and columns.
pub(crate) struct Lines<'s> {
    source: &'s str,
    starts: Vec<usize>,
}

impl<'s> Lines<'s> {
    pub(crate) fn new(source: &'s str) -> Self {
        let mut starts = vec![0];
        starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        Lines { source, starts }
    }

    pub(crate) fn at(&self, offset: u32, message: impl Into<String>) -> Finding {
        let offset = (offset as usize).min(self.source.len());
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        let column = self
            .source
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        Finding {
            line: line as u32,
            column: column as u32,
            message: message.into(),
        }
    }
}

fn parse_options() -> ParseOptions {
    ParseOptions {
        allow_return_outside_function: true,
        ..ParseOptions::default()
    }
}

/// Runs every check on `source`.
pub fn analyze(source: &str, options: CheckOptions) -> Result<Analysis, Rejection> {
    let lines = Lines::new(source);
    let allocator = Allocator::default();
    let parsed = Parser::new(&allocator, source, SourceType::mjs())
        .with_options(parse_options())
        .parse();
    if parsed.panicked || parsed.diagnostics.has_errors() {
        let findings: Vec<Finding> = parsed
            .diagnostics
            .errors()
            .take(5)
            .map(|d| {
                let offset = d.labels.first().map(|l| l.offset()).unwrap_or(0);
                lines.at(offset, d.message.to_string())
            })
            .collect();
        let first_error = parsed.diagnostics.errors().next().map(|d| {
            let offset = d.labels.first().map_or(0, |l| l.offset() as usize);
            (offset, d.message.to_string())
        });
        if let Some((offset, message)) = first_error
            && typescript::looks_like_typescript(source, offset, &message)
        {
            let first = findings.first().cloned().unwrap_or(Finding {
                line: 1,
                column: 1,
                message: String::new(),
            });
            return Err(Rejection {
                kind: "TypeScriptError",
                findings: vec![Finding {
                    message: format!(
                        "TypeScript syntax is not supported: wasmflow runs plain JavaScript; remove the type annotations ({})",
                        first.message
                    ),
                    ..first
                }],
            });
        }
        return Err(Rejection {
            kind: "SyntaxError",
            findings,
        });
    }
    let program = parsed.program;
    check_module_syntax(&program, &lines)?;
    let mut visitor = Calls {
        lines: &lines,
        imports: Vec::new(),
        nondeterministic: Vec::new(),
        phase_titles: Vec::new(),
        schemas: Vec::new(),
        models: Vec::new(),
    };
    visitor.visit_program(&program);
    refuse_if_any("ImportError", visitor.imports)?;
    refuse_if_any("DeterminismError", visitor.nondeterministic)?;
    let schema_warnings = check_literal_schemas(&program, &lines, &visitor.schemas)?;
    let (meta, export_offset, mut warnings) = meta::extract(&program, &lines, options)?;
    warnings.extend(schema_warnings);
    if let Some(meta) = &meta
        && !meta.phases.is_empty()
    {
        for (title, finding) in visitor.phase_titles {
            if !meta.phases.iter().any(|p| p.title == title) {
                warnings.push(Finding {
                    message: format!("phase('{title}') is not one of meta.phases; progress will show it ungrouped"),
                    ..finding
                });
            }
        }
    }
    let mut literal_models = visitor.models;
    literal_models.sort();
    literal_models.dedup();
    Ok(Analysis {
        meta,
        export_offset,
        warnings,
        literal_models,
        empty: program.body.is_empty(),
    })
}

/// A rejection of `kind` when there are findings.
fn refuse_if_any(kind: &'static str, findings: Vec<Finding>) -> Result<(), Rejection> {
    if findings.is_empty() {
        Ok(())
    } else {
        Err(Rejection { kind, findings })
    }
}

/// Module syntax other than `export const meta` is refused: the body runs
/// as a function, not as an ES module.
fn check_module_syntax(program: &Program<'_>, lines: &Lines<'_>) -> Result<(), Rejection> {
    let mut findings = Vec::new();
    for stmt in &program.body {
        match stmt {
            Statement::ImportDeclaration(d) => findings.push(lines.at(
                d.span.start,
                "`import` is not available in workflows: a script is one self-contained file (inline what you need, or run another workflow with workflow())",
            )),
            Statement::ExportDeclaration(d) if meta::is_meta_export(d) => {}
            _ if stmt.is_module_declaration() => findings.push(lines.at(
                stmt.span().start,
                "only `export const meta = {...}` may be exported; workflows return their result with `return`",
            )),
            _ => {}
        }
    }
    refuse_if_any("ImportError", findings)
}

/// The `schema` option of an `agent()` call, as written.
enum SchemaSource {
    Literal(serde_json::Value),
    /// A top-level `const` holding it.
    Named(String),
}

/// Schemas written as literals (inline, or in a top-level `const` the call
/// names) are compiled before the run, so a broken one stops the script
/// before any agent runs. Others are checked when `agent()` is called.
/// Refuses literal schemas that do not compile; warns (with the line) about
/// those `agent()` will refuse at run time: not an object, or never
/// satisfiable.
fn check_literal_schemas(
    program: &Program<'_>,
    lines: &Lines<'_>,
    found: &[(SchemaSource, Finding)],
) -> Result<Vec<Finding>, Rejection> {
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let mut consts: HashMap<String, serde_json::Value> = HashMap::new();
    for stmt in &program.body {
        let Statement::VariableDeclaration(v) = stmt else {
            continue;
        };
        if v.kind != VariableDeclarationKind::Const {
            continue;
        }
        for d in &v.declarations {
            if let (
                BindingPattern::BindingIdentifier(id),
                Some(init @ Expression::ObjectExpression(_)),
            ) = (&d.id, &d.init)
                && let Ok(value) = meta::literal(init, lines, id.name.as_str())
            {
                consts.insert(id.name.to_string(), value);
            }
        }
    }
    let mut findings = Vec::new();
    let mut warnings = Vec::new();
    for (source, at) in found {
        let value = match source {
            SchemaSource::Literal(v) => Some(v),
            SchemaSource::Named(name) => consts.get(name),
        };
        let Some(value) = value else {
            continue;
        };
        if let Err(e) = crate::script::schema::Schema::compile(value) {
            findings.push(Finding {
                message: format!("agent(): {e}"),
                ..at.clone()
            });
            continue;
        }
        let refusal = crate::script::contradiction::not_an_object(value).or_else(|| {
            crate::script::contradiction::contradiction(value)
                .map(|why| format!("opts.schema can never be satisfied: {why}"))
        });
        if let Some(why) = refusal {
            warnings.push(Finding {
                message: format!("agent() will throw here: {why}"),
                ..at.clone()
            });
        }
    }
    refuse_if_any("SchemaError", findings)?;
    Ok(warnings)
}

struct Calls<'l, 's> {
    lines: &'l Lines<'s>,
    schemas: Vec<(SchemaSource, Finding)>,
    models: Vec<String>,
    imports: Vec<Finding>,
    nondeterministic: Vec<Finding>,
    /// Literal `phase('…')` titles and where they are.
    phase_titles: Vec<(String, Finding)>,
}

impl Calls<'_, '_> {
    fn nondeterministic(&mut self, span: Span, what: &str) {
        self.nondeterministic.push(self.lines.at(
            span.start,
            format!("{what} would make the run non-deterministic and break resume: pass times and seeds in through args, or ask an agent"),
        ));
    }
}

fn is_ident(e: &Expression<'_>, name: &str) -> bool {
    matches!(e.get_inner_expression(), Expression::Identifier(id) if id.name == name)
}

impl<'a> Visit<'a> for Calls<'_, '_> {
    fn visit_call_expression(&mut self, it: &CallExpression<'a>) {
        if it.callee.is_specific_member_access("Date", "now") {
            self.nondeterministic(it.span, "Date.now()");
        } else if it.callee.is_specific_member_access("Math", "random") {
            self.nondeterministic(it.span, "Math.random()");
        } else if is_ident(&it.callee, "Date") {
            self.nondeterministic(it.span, "Date() (the current time as a string)");
        } else if is_ident(&it.callee, "require") {
            self.imports.push(self.lines.at(
                it.span.start,
                "`require` is not available in workflows: a script is one self-contained file",
            ));
        } else if is_ident(&it.callee, "agent")
            && let Some(Argument::ObjectExpression(opts)) = it.arguments.get(1)
        {
            for prop in &opts.properties {
                let ObjectPropertyKind::ObjectProperty(p) = prop else {
                    continue;
                };
                if !p.computed
                    && p.key.static_name().as_deref() == Some("model")
                    && let Expression::StringLiteral(m) = &p.value
                {
                    self.models.push(m.value.to_string());
                }
                if p.computed || p.key.static_name().as_deref() != Some("schema") {
                    continue;
                }
                let at = self.lines.at(p.span.start, "");
                match &p.value {
                    Expression::Identifier(id) => self
                        .schemas
                        .push((SchemaSource::Named(id.name.to_string()), at)),
                    value @ Expression::ObjectExpression(_) => {
                        if let Ok(v) = meta::literal(value, self.lines, "schema") {
                            self.schemas.push((SchemaSource::Literal(v), at));
                        }
                    }
                    _ => {}
                }
            }
        } else if is_ident(&it.callee, "phase")
            && let Some(Argument::StringLiteral(s)) = it.arguments.first()
        {
            let at = self.lines.at(it.span.start, "");
            self.phase_titles.push((s.value.to_string(), at));
        }
        walk::walk_call_expression(self, it);
    }

    fn visit_new_expression(&mut self, it: &NewExpression<'a>) {
        if is_ident(&it.callee, "Date") && it.arguments.is_empty() {
            self.nondeterministic(it.span, "new Date() without arguments");
        }
        walk::walk_new_expression(self, it);
    }

    fn visit_import_expression(&mut self, it: &ImportExpression<'a>) {
        self.imports.push(self.lines.at(
            it.span.start,
            "`import()` is not available in workflows: a script is one self-contained file",
        ));
        walk::walk_import_expression(self, it);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reject(src: &str) -> Rejection {
        analyze(src, CheckOptions::default()).expect_err("should be refused")
    }

    #[test]
    fn nondeterminism_in_code_is_found_with_its_line() {
        let r = reject("const a = 1\nconst t = Date.now()\n");
        assert_eq!(r.kind, "DeterminismError");
        assert_eq!(r.findings[0].line, 2);
        assert_eq!(reject("return Math.random()").findings[0].line, 1);
        assert_eq!(reject("\n\nconst d = new Date()").findings[0].line, 3);
    }

    #[test]
    fn mentions_in_strings_comments_and_templates_do_not_count() {
        let src = "// Date.now()\n/* Math.random() */\nconst s = 'Date.now()'\nconst t = `new Date()`\nconst r = /Date.now()/\nreturn new Date(0)\n";
        analyze(src, CheckOptions::default()).unwrap();
    }

    #[test]
    fn imports_and_require_are_refused() {
        assert_eq!(reject("import fs from 'fs'\n").kind, "ImportError");
        let r = reject("const a = 1\nconst m = await import('x')\n");
        assert_eq!((r.kind, r.findings[0].line), ("ImportError", 2));
        assert_eq!(reject("const fs = require('fs')").kind, "ImportError");
        assert_eq!(reject("export default 1").kind, "ImportError");
    }

    #[test]
    fn typescript_is_named() {
        let r = reject("const n: number = 1\nreturn n\n");
        assert_eq!(r.kind, "TypeScriptError");
        assert!(r.findings[0].message.contains("TypeScript"));
        assert_eq!(r.findings[0].line, 1);
    }

    #[test]
    fn typescript_is_told_from_broken_javascript() {
        for ts in [
            "const x: number = 1",
            "let a: string[] = []",
            "function f(a: string, b?: number) { return a }",
            "function g(): Promise<void> {}",
            "const h = (x: number) => x",
            "const h2 = async (x: number): Promise<string> => 'a'",
            "interface Foo { a: string }",
            "export interface Foo { a: string }",
            "type Foo = { a: string }",
            "export type Foo = string",
            "enum Color { Red, Green }",
            "const y = foo as string",
            "const z = foo satisfies Bar",
            "function id<T>(x: T): T { return x }",
            "declare const q: number",
            "const m = new Map<string, number>()",
            "const n = a!.b",
            "const r = (await agent('x')) as string[]",
        ] {
            assert_eq!(reject(ts).kind, "TypeScriptError", "{ts}");
        }
        for js in [
            "return (1 +",
            "let x = 1 2",
            "if (x) { y = 1",
            "foo(a: 1)",
            "const type = 1; type 2",
            "let = = 1",
        ] {
            assert_eq!(reject(js).kind, "SyntaxError", "{js}");
        }
    }

    #[test]
    fn a_script_that_blows_up_typescript_parsing_is_a_plain_syntax_error() {
        // Found by the `scripts` fuzz target: re-parsing this as TypeScript
        // took oxc 25 times longer per repetition (2 GB at 10).
        let src = format!("const n: number = 1\n{}", "({[y<b<".repeat(40));
        let r = reject(&src);
        assert_eq!(r.kind, "TypeScriptError", "the first error decides");
        let src = "({[y<b<".repeat(40);
        assert_eq!(reject(&src).kind, "SyntaxError");
        // The hint itself stays linear on a long line of `<`.
        let src = format!("let x = a{} 2", "<b".repeat(100_000));
        assert_eq!(reject(&src).kind, "SyntaxError");
    }

    #[test]
    fn syntax_errors_have_lines() {
        let r = reject("const a = 1\nconst b = (a +\n");
        assert_eq!(r.kind, "SyntaxError");
        assert_eq!(r.findings[0].line, 3);
    }

    #[test]
    fn literal_schemas_are_checked_before_the_run() {
        let r = reject(
            "const S = { type: 'bogus' }\nawait agent('a')\nawait agent('b', { schema: S })\n",
        );
        assert_eq!((r.kind, r.findings[0].line), ("SchemaError", 3));
        let r = reject(
            "await agent('b', { label: 'x', schema: { $ref: 'https://example.com/x.json' } })\n",
        );
        assert!(r.findings[0].message.contains("refused"), "{r:?}");
        // Built at run time: left to the runtime check.
        analyze(
            "const S = make()\nawait agent('b', { schema: S })\n",
            CheckOptions::default(),
        )
        .unwrap();
        analyze(
            "await agent('b', { schema: { type: 'object' } })\n",
            CheckOptions::default(),
        )
        .unwrap();
    }

    #[test]
    fn top_level_await_and_return_are_fine() {
        let a = analyze(
            "const x = await agent('a')\nreturn x\n",
            CheckOptions::default(),
        )
        .unwrap();
        assert!(a.meta.is_none());
    }
}
