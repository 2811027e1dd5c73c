//! `export const meta = {...}`: read as a pure literal, without running code,
//! and validated against the contract.

use oxc_ast::ast::{
    ArrayExpressionElement, BindingPattern, Declaration, ExportDeclaration, Expression,
    ObjectPropertyKind, Program, PropertyKind, Statement, UnaryOperator, VariableDeclarationKind,
};
use oxc_span::GetSpan;
use serde::Serialize;
use serde_json::{Map, Number, Value};

use super::{CheckOptions, Finding, Lines, Rejection};

/// One entry of `meta.phases`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    /// The phase title.
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// A line about what it does.
    pub detail: Option<String>,
    /// Model alias for agents of this phase that do not pick one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A validated `meta`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Meta {
    /// `meta.name`.
    pub name: String,
    /// `meta.description`.
    pub description: String,
    #[serde(rename = "whenToUse", skip_serializing_if = "Option::is_none")]
    /// `meta.whenToUse`.
    pub when_to_use: Option<String>,
    /// `meta.phases`.
    pub phases: Vec<Phase>,
    /// The literal as written, unknown keys included.
    #[serde(skip)]
    pub raw: Value,
}

const META_KEYS: &[&str] = &["name", "description", "whenToUse", "phases", "title"];
const PHASE_KEYS: &[&str] = &["title", "detail", "model"];

/// Is this `export const meta = …`?
pub(super) fn is_meta_export(d: &ExportDeclaration<'_>) -> bool {
    meta_initializer(d).is_some()
}

fn meta_initializer<'a, 'b>(d: &'b ExportDeclaration<'a>) -> Option<&'b Expression<'a>> {
    let Declaration::VariableDeclaration(v) = &d.declaration else {
        return None;
    };
    if v.kind != VariableDeclarationKind::Const || v.declarations.len() != 1 {
        return None;
    }
    let decl = &v.declarations[0];
    match &decl.id {
        BindingPattern::BindingIdentifier(id) if id.name == "meta" => decl.init.as_ref(),
        _ => None,
    }
}

type Extracted = (Option<Meta>, Option<usize>, Vec<Finding>);

pub(super) fn extract(
    program: &Program<'_>,
    lines: &Lines<'_>,
    options: CheckOptions,
) -> Result<Extracted, Rejection> {
    let reject = |finding: Finding| Rejection {
        kind: "MetaError",
        findings: vec![finding],
    };
    let mut found = None;
    for (i, stmt) in program.body.iter().enumerate() {
        if let Statement::ExportDeclaration(d) = stmt
            && let Some(init) = meta_initializer(d)
        {
            if i != 0 {
                return Err(reject(lines.at(
                    d.span.start,
                    "`export const meta` must be the first statement of the script",
                )));
            }
            found = Some((d.span.start as usize, init));
        }
    }
    let Some((offset, init)) = found else {
        let warning = lines.at(
            0,
            "the script has no `export const meta = { name, description }`; its name is taken from the file name",
        );
        return Ok((None, None, vec![warning]));
    };
    let raw = literal(init, lines, "meta").map_err(reject)?;
    let mut warnings = Vec::new();
    let meta = validate(&raw, init, lines, options, &mut warnings).map_err(reject)?;
    Ok((Some(meta), Some(offset), warnings))
}

/// Converts a pure literal to JSON, naming what is not one.
pub(super) fn literal(e: &Expression<'_>, lines: &Lines<'_>, path: &str) -> Result<Value, Finding> {
    let not_literal = |what: &str| {
        lines.at(
            e.span().start,
            format!("meta must be a pure literal: {path} is {what}; write the value itself"),
        )
    };
    Ok(match e {
        Expression::StringLiteral(s) => Value::String(s.value.to_string()),
        Expression::BooleanLiteral(b) => Value::Bool(b.value),
        Expression::NullLiteral(_) => Value::Null,
        Expression::NumericLiteral(n) => {
            number(n.value).ok_or_else(|| not_literal("not a finite number"))?
        }
        Expression::UnaryExpression(u) if u.operator == UnaryOperator::UnaryNegation => {
            match &u.argument {
                Expression::NumericLiteral(n) => {
                    number(-n.value).ok_or_else(|| not_literal("not a finite number"))?
                }
                _ => return Err(not_literal("an expression")),
            }
        }
        Expression::TemplateLiteral(t) => {
            if !t.expressions.is_empty() {
                return Err(not_literal("a template with ${…} interpolation"));
            }
            let text: String = t
                .quasis
                .iter()
                .map(|q| {
                    q.value
                        .cooked
                        .as_ref()
                        .map(|c| c.to_string())
                        .unwrap_or_default()
                })
                .collect();
            Value::String(text)
        }
        Expression::ParenthesizedExpression(p) => literal(&p.expression, lines, path)?,
        Expression::ArrayExpression(a) => {
            let mut items = Vec::new();
            for (i, el) in a.elements.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                match el {
                    ArrayExpressionElement::Elision(s) => {
                        return Err(lines.at(
                            s.span.start,
                            format!("meta must be a pure literal: {item_path} is a hole in a sparse array"),
                        ));
                    }
                    ArrayExpressionElement::SpreadElement(s) => {
                        return Err(lines.at(
                            s.span.start,
                            format!("meta must be a pure literal: {item_path} is a spread (...)"),
                        ));
                    }
                    other => {
                        let expr = other
                            .as_expression()
                            .ok_or_else(|| not_literal("not a literal"))?;
                        items.push(literal(expr, lines, &item_path)?);
                    }
                }
            }
            Value::Array(items)
        }
        Expression::ObjectExpression(o) => {
            let mut map = Map::new();
            for prop in &o.properties {
                let p = match prop {
                    ObjectPropertyKind::ObjectProperty(p) => p,
                    ObjectPropertyKind::SpreadProperty(s) => {
                        return Err(lines.at(
                            s.span.start,
                            format!("meta must be a pure literal: {path} has a spread (...)"),
                        ));
                    }
                };
                let at = |what: &str| {
                    lines.at(
                        p.span.start,
                        format!("meta must be a pure literal: {path} has {what}"),
                    )
                };
                if p.computed {
                    return Err(at("a computed key ([…])"));
                }
                if p.method || p.kind != PropertyKind::Init {
                    return Err(at("a method or accessor"));
                }
                if p.shorthand {
                    return Err(at("a shorthand property (write `key: value`)"));
                }
                let key = p
                    .key
                    .static_name()
                    .ok_or_else(|| at("a key that is not a plain name"))?
                    .to_string();
                let value = literal(&p.value, lines, &format!("{path}.{key}"))?;
                map.insert(key, value);
            }
            Value::Object(map)
        }
        Expression::Identifier(id) if id.name == "undefined" => {
            return Err(not_literal("undefined"));
        }
        _ => return Err(not_literal("an expression, not a literal")),
    })
}

fn number(v: f64) -> Option<Value> {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        Some(Value::Number(Number::from(v as i64)))
    } else {
        Number::from_f64(v).map(Value::Number)
    }
}

fn validate(
    raw: &Value,
    init: &Expression<'_>,
    lines: &Lines<'_>,
    options: CheckOptions,
    warnings: &mut Vec<Finding>,
) -> Result<Meta, Finding> {
    let at = |message: String| lines.at(init.span().start, message);
    let Value::Object(obj) = raw else {
        return Err(at(
            "meta must be an object: { name, description, ... }".into()
        ));
    };
    let text = |key: &str, required: bool| -> Result<Option<String>, Finding> {
        match obj.get(key) {
            None if required => Err(at(format!("meta.{key} is required"))),
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(at(format!("meta.{key} must be a string"))),
        }
    };
    let name = text("name", true)?.unwrap_or_default();
    if name.trim().is_empty() {
        return Err(at("meta.name must not be empty".into()));
    }
    let description = text("description", true)?.unwrap_or_default();
    if description.trim().is_empty() {
        return Err(at("meta.description must not be empty".into()));
    }
    if description.contains('\n') {
        return Err(at(
            "meta.description must be one line (put details in whenToUse or phases)".into(),
        ));
    }
    let when_to_use = text("whenToUse", false)?;
    text("title", false)?;
    let mut phases = Vec::new();
    match obj.get("phases") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let Value::Object(p) = item else {
                    return Err(at(format!(
                        "meta.phases[{i}] must be an object {{ title, detail?, model? }}"
                    )));
                };
                let field = |key: &str| -> Result<Option<String>, Finding> {
                    match p.get(key) {
                        None => Ok(None),
                        Some(Value::String(s)) => Ok(Some(s.clone())),
                        Some(_) => Err(at(format!("meta.phases[{i}].{key} must be a string"))),
                    }
                };
                let title = field("title")?
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| at(format!("meta.phases[{i}].title is required")))?;
                if phases.iter().any(|ph: &Phase| ph.title == title) {
                    return Err(at(format!("meta.phases has the title '{title}' twice")));
                }
                for key in p.keys().filter(|k| !PHASE_KEYS.contains(&k.as_str())) {
                    unknown_key(&format!("meta.phases[{i}].{key}"), &at, options, warnings)?;
                }
                phases.push(Phase {
                    title,
                    detail: field("detail")?,
                    model: field("model")?,
                });
            }
        }
        Some(_) => return Err(at("meta.phases must be an array".into())),
    }
    for key in obj.keys().filter(|k| !META_KEYS.contains(&k.as_str())) {
        unknown_key(&format!("meta.{key}"), &at, options, warnings)?;
    }
    Ok(Meta {
        name,
        description,
        when_to_use,
        phases,
        raw: raw.clone(),
    })
}

fn unknown_key(
    path: &str,
    at: &dyn Fn(String) -> Finding,
    options: CheckOptions,
    warnings: &mut Vec<Finding>,
) -> Result<(), Finding> {
    let finding = at(format!("unknown key {path}"));
    if options.strict {
        return Err(Finding {
            message: format!("{} (--strict)", finding.message),
            ..finding
        });
    }
    warnings.push(finding);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{CheckOptions, analyze};

    fn meta_error(src: &str) -> String {
        let r = analyze(src, CheckOptions::default()).expect_err("refused");
        assert_eq!(r.kind, "MetaError", "{r:?}");
        r.findings[0].message.clone()
    }

    #[test]
    fn a_valid_meta_is_read() {
        let a = analyze(
            "export const meta = { name: 'x', description: `one line`, phases: [{ title: 'Scan', model: 'haiku' }], n: -2 }\nphase('Scan')\n",
            CheckOptions::default(),
        )
        .unwrap();
        let m = a.meta.unwrap();
        assert_eq!(m.name, "x");
        assert_eq!(m.phases[0].model.as_deref(), Some("haiku"));
        assert_eq!(a.export_offset, Some(0));
        assert_eq!(a.warnings.len(), 1, "unknown key n warns: {:?}", a.warnings);
    }

    #[test]
    fn non_literals_are_named() {
        assert!(
            meta_error("export const meta = { name: 'x', description: 'd', ...extra }")
                .contains("spread")
        );
        assert!(
            meta_error("export const meta = { ['name']: 'x', description: 'd' }")
                .contains("computed")
        );
        assert!(
            meta_error("export const meta = { name() { return 'x' }, description: 'd' }")
                .contains("method")
        );
        assert!(
            meta_error("const v = 1\nexport const meta = { name: `a${v}`, description: 'd' }")
                .contains("first statement")
        );
        assert!(
            meta_error("export const meta = { name: `a${1}`, description: 'd' }")
                .contains("interpolation")
        );
        assert!(
            meta_error(
                "export const meta = { name: 'x', description: 'd', phases: [, { title: 'a' }] }"
            )
            .contains("sparse")
        );
        assert!(
            meta_error("export const meta = { name: 'x', description: 'd', tags: [f()] }")
                .contains("meta.tags[0]")
        );
    }

    #[test]
    fn required_fields_and_shapes() {
        assert!(
            meta_error("export const meta = { description: 'd' }")
                .contains("meta.name is required")
        );
        assert!(
            meta_error("export const meta = { name: 'x' }")
                .contains("meta.description is required")
        );
        assert!(meta_error("export const meta = { name: '', description: 'd' }").contains("empty"));
        assert!(
            meta_error("export const meta = { name: 'x', description: 'a\\nb' }")
                .contains("one line")
        );
        assert!(meta_error("export const meta = { name: 'x', description: 'd', phases: [{ detail: 'no title' }] }").contains("title is required"));
    }

    #[test]
    fn strict_makes_unknown_keys_errors() {
        let src = "export const meta = { name: 'x', description: 'd', colour: 'red' }";
        assert!(analyze(src, CheckOptions { strict: false }).is_ok());
        let r = analyze(src, CheckOptions { strict: true }).unwrap_err();
        assert!(r.findings[0].message.contains("meta.colour"));
    }

    #[test]
    fn phase_titles_outside_meta_warn() {
        let a = analyze(
            "export const meta = { name: 'x', description: 'd', phases: [{ title: 'Scan' }] }\nphase('Scan')\nphase('Other')\n",
            CheckOptions::default(),
        )
        .unwrap();
        assert_eq!(a.warnings.len(), 1);
        assert_eq!(a.warnings[0].line, 3);
    }
}
