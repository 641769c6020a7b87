//! `{{ path }}` templates in task parameters: their syntax, checked when a
//! workflow is saved, and their rendering over the job's context
//! `{"parameters", "outputs", "error", "job"}` just before a try.
//!
//! Parser and renderer live together so the grammar has one home. Both are
//! pure (they only walk JSON), so this is `crust-model` and not the worker:
//! the api checks syntax at save time ([`check_templates_in`]), the worker
//! renders ([`render_limited`]) over a context it supplies through
//! [`Scope`] (its outputs stay serialised and are read in place with
//! [`lookup_raw`]).
//!
//! A string that is exactly one reference becomes the referenced JSON value
//! itself (numbers and objects stay typed); otherwise references are
//! interpolated (strings raw, other values as compact JSON). `\{{` is a
//! literal `{{`. A path that leads nowhere is an error naming the last part
//! that exists, unless the reference has a default:
//! `{{ parameters.who | default: "ann" }}` stands for the JSON literal after
//! `default:` (a string, number, `true`, `false` or `null`) when the path is
//! missing or `null`. The literal is checked at save time; it cannot contain
//! `}}` (the reference ends at the first one).

use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The top-level names a template path may start with.
/// `item` and `index` are a `forEach` item and its position; `secrets` the
/// stored secrets (rendered by the worker in the params of the tasks it
/// runs, and masked in everything the job writes).
pub const TEMPLATE_ROOTS: &[&str] = &[
    "parameters",
    "outputs",
    "error",
    "job",
    "item",
    "index",
    "secrets",
];

// ---- Syntax -------------------------------------------------------------

/// Checks the template syntax of every string in `value`, naming where.
pub fn check_templates_in(at: &str, value: &Value) -> Result<(), String> {
    match value {
        Value::String(text) => check_template(text).map_err(|err| format!("{at}: {err}")),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(index, item)| check_templates_in(&format!("{at}[{index}]"), item)),
        Value::Object(map) => map
            .iter()
            .try_for_each(|(key, item)| check_templates_in(&format!("{at}.{key}"), item)),
        _ => Ok(()),
    }
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text copied as is (escapes already resolved).
    Text(String),
    /// A `{{ path }}` or `{{ path | default: literal }}` reference.
    Ref(Reference),
}

/// A reference: its path, split at the dots, and its default, if any.
/// It derefs to the path, so `reference.first()` is the root name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub path: Vec<String>,
    /// Used when the path is missing or `null`.
    pub default: Option<Value>,
}

impl Reference {
    /// A reference without a default.
    pub fn new(path: Vec<String>) -> Self {
        Self {
            path,
            default: None,
        }
    }

    /// The value the reference renders to in `context`.
    pub fn resolve(&self, context: &(impl Scope + ?Sized)) -> Result<Value, String> {
        match (context.lookup(&self.path), &self.default) {
            (Ok(Value::Null) | Err(_), Some(default)) => Ok(default.clone()),
            (found, _) => found,
        }
    }
}

impl std::ops::Deref for Reference {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.path
    }
}

/// True when `text` holds at least one (unescaped) `{{`.
pub fn has_template(text: &str) -> bool {
    match parse_template(text) {
        Ok(segments) => segments.iter().any(|s| matches!(s, Segment::Ref(_))),
        Err(_) => true,
    }
}

/// Checks template syntax: every `{{` closed, paths not empty, paths
/// starting with one of [`TEMPLATE_ROOTS`].
pub fn check_template(text: &str) -> Result<(), String> {
    parse_template(text).map(drop)
}

/// Splits a template into text and references. `\{{` is a literal `{{`.
pub fn parse_template(text: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("{{") {
        if rest[..at].ends_with('\\') {
            literal.push_str(&rest[..at - 1]);
            literal.push_str("{{");
            rest = &rest[at + 2..];
            continue;
        }
        literal.push_str(&rest[..at]);
        let inner_start = &rest[at + 2..];
        let Some(end) = inner_start.find("}}") else {
            return Err(format!(
                "template {:?}: unclosed {{{{ (add }}}} or write \\{{{{ for a literal {{{{)",
                shorten(&rest[at..])
            ));
        };
        let inner = inner_start[..end].trim();
        let reference = parse_reference(inner)
            .map_err(|reason| format!("template {{{{ {inner} }}}}: {reason}"))?;
        if !literal.is_empty() {
            segments.push(Segment::Text(std::mem::take(&mut literal)));
        }
        segments.push(Segment::Ref(reference));
        rest = &inner_start[end + 2..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        segments.push(Segment::Text(literal));
    }
    Ok(segments)
}

/// `path` or `path | default: literal`.
fn parse_reference(inner: &str) -> Result<Reference, String> {
    let Some((path, filter)) = inner.split_once('|') else {
        return parse_path(inner).map(Reference::new);
    };
    let path = parse_path(path.trim())?;
    let filter = filter.trim();
    let Some(literal) = filter.strip_prefix("default:") else {
        let name = filter.split(':').next().unwrap_or(filter).trim();
        return Err(format!("unknown filter {name:?} (the only one is default)"));
    };
    let literal = literal.trim();
    let default = match serde_json::from_str::<Value>(literal) {
        Ok(Value::Array(_) | Value::Object(_)) | Err(_) => {
            return Err(format!(
                "default: {literal:?} is not a JSON string, number, true, false or null"
            ))
        }
        Ok(value) => value,
    };
    Ok(Reference {
        path,
        default: Some(default),
    })
}

fn parse_path(inner: &str) -> Result<Vec<String>, String> {
    if inner.is_empty() {
        return Err("empty path".into());
    }
    let parts: Vec<String> = inner.split('.').map(str::to_owned).collect();
    if let Some(bad) = parts
        .iter()
        .find(|part| part.is_empty() || part.contains(char::is_whitespace) || part.contains('{'))
    {
        return Err(if bad.is_empty() {
            "empty path segment".into()
        } else {
            format!("{bad:?} is not a path segment")
        });
    }
    if !TEMPLATE_ROOTS.contains(&parts[0].as_str()) {
        return Err(format!(
            "unknown name {:?} (paths start with {})",
            parts[0],
            TEMPLATE_ROOTS.join(", ")
        ));
    }
    Ok(parts)
}

fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

// ---- Rendering ----------------------------------------------------------

/// What templates are rendered over: anything that can answer a path.
pub trait Scope {
    /// The value at `path`, or an error naming the part that is missing.
    fn lookup(&self, path: &[String]) -> Result<Value, String>;
}

impl Scope for Value {
    fn lookup(&self, path: &[String]) -> Result<Value, String> {
        lookup(self, path, 0).cloned()
    }
}

/// Renders every string inside `value` (object keys excepted).
pub fn render(value: &Value, context: &(impl Scope + ?Sized)) -> Result<Value, String> {
    let mut left = usize::MAX;
    render_limited(value, context, &mut left)
}

/// [`render`] within a budget of `left` bytes of JSON for all the values
/// the templates produce (it shrinks as they render): a template that
/// would produce more fails instead of filling memory.
pub fn render_limited(
    value: &Value,
    context: &(impl Scope + ?Sized),
    left: &mut usize,
) -> Result<Value, String> {
    Ok(match value {
        Value::String(text) => render_str_limited(text, context, left)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| render_limited(item, context, left))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| Ok((key.clone(), render_limited(item, context, left)?)))
                .collect::<Result<Map<_, _>, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Renders one template string.
pub fn render_str(text: &str, context: &(impl Scope + ?Sized)) -> Result<Value, String> {
    let mut left = usize::MAX;
    render_str_limited(text, context, &mut left)
}

fn too_large(text: &str) -> String {
    let shown: String = text.chars().take(60).collect();
    format!("template {shown:?}: renders to more than the limit of bytes a task's params may take (CRUST_WORKER_MAX_OUTPUT_BYTES)")
}

fn spend(left: &mut usize, bytes: usize, text: &str) -> Result<(), String> {
    *left = left.checked_sub(bytes).ok_or_else(|| too_large(text))?;
    Ok(())
}

fn render_str_limited(
    text: &str,
    context: &(impl Scope + ?Sized),
    left: &mut usize,
) -> Result<Value, String> {
    let segments = parse_template(text)?;
    if let [Segment::Ref(reference)] = segments.as_slice() {
        let value = reference.resolve(context)?;
        spend(left, json_len(&value), text)?;
        return Ok(value);
    }
    let mut out = String::with_capacity(text.len());
    for segment in &segments {
        let before = out.len();
        match segment {
            Segment::Text(literal) => out.push_str(literal),
            Segment::Ref(reference) => match reference.resolve(context)? {
                Value::String(value) => out.push_str(&value),
                other => out.push_str(&other.to_string()),
            },
        }
        spend(left, out.len() - before, text)?;
    }
    Ok(Value::String(out))
}

/// Bytes of `value` as JSON, without building the text.
pub fn json_len(value: &(impl serde::Serialize + ?Sized)) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// The error for `path[depth]` missing under `path[..depth]`.
pub fn missing(path: &[String], depth: usize) -> String {
    let whole = path.join(".");
    let parent = if depth == 0 {
        "the context".to_owned()
    } else {
        path[..depth].join(".")
    };
    format!(
        "template {{{{ {whole} }}}}: {parent} has no {:?}",
        path[depth]
    )
}

/// Follows `path[from..]` through `value`: object keys, or indexes into
/// arrays (errors name the whole path).
pub fn lookup<'c>(value: &'c Value, path: &[String], from: usize) -> Result<&'c Value, String> {
    let mut current = value;
    for (depth, part) in path.iter().enumerate().skip(from) {
        let next = match current {
            Value::Object(map) => map.get(part),
            Value::Array(items) => part.parse::<usize>().ok().and_then(|at| items.get(at)),
            _ => None,
        };
        current = next.ok_or_else(|| missing(path, depth))?;
    }
    Ok(current)
}

/// Follows `path[from..]` through serialised JSON, parsing one level at a
/// time (never the whole tree), and returns the value found.
pub fn lookup_raw(raw: &RawValue, path: &[String], from: usize) -> Result<Value, String> {
    let mut current: &RawValue = raw;
    for (depth, part) in path.iter().enumerate().skip(from) {
        let text = current.get().trim_start();
        let next = if text.starts_with('{') {
            let map: std::collections::HashMap<std::borrow::Cow<'_, str>, &RawValue> =
                serde_json::from_str(current.get()).map_err(|err| err.to_string())?;
            map.get(part.as_str()).copied()
        } else if text.starts_with('[') {
            match part.parse::<usize>() {
                Ok(at) => {
                    let items: Vec<&RawValue> =
                        serde_json::from_str(current.get()).map_err(|err| err.to_string())?;
                    items.get(at).copied()
                }
                Err(_) => None,
            }
        } else {
            None
        };
        current = next.ok_or_else(|| missing(path, depth))?;
    }
    serde_json::from_str(current.get()).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_parse_into_text_and_references() {
        assert_eq!(
            parse_template("Hi {{parameters.name}}, id {{ outputs.a.items.0.id }}!").unwrap(),
            vec![
                Segment::Text("Hi ".into()),
                Segment::Ref(Reference::new(vec!["parameters".into(), "name".into()])),
                Segment::Text(", id ".into()),
                Segment::Ref(Reference::new(vec![
                    "outputs".into(),
                    "a".into(),
                    "items".into(),
                    "0".into(),
                    "id".into()
                ])),
                Segment::Text("!".into()),
            ]
        );
        assert_eq!(
            parse_template(r"a \{{ b }}").unwrap(),
            vec![Segment::Text("a {{ b }}".into())]
        );
        assert!(!has_template(r"\{{ x }}"));
        assert!(has_template("{{ job.id }}"));
    }

    #[test]
    fn template_syntax_errors_are_explained() {
        assert!(check_template("x {{ parameters.a")
            .unwrap_err()
            .contains("unclosed"));
        assert!(check_template("{{ }}").unwrap_err().contains("empty path"));
        assert!(check_template("{{ outputs..a }}")
            .unwrap_err()
            .contains("empty path segment"));
        assert!(check_template("{{ foo.a }}")
            .unwrap_err()
            .contains("unknown name \"foo\""));
        assert!(check_template("{{ outputs.a b }}").is_err());
        assert!(check_template("plain } {text}").is_ok());
    }

    #[test]
    fn a_default_is_a_json_literal_checked_when_parsed() {
        let parsed = parse_template(r#"{{ parameters.who | default: "ann | bob" }}"#).unwrap();
        let [Segment::Ref(reference)] = parsed.as_slice() else {
            panic!("{parsed:?}")
        };
        assert_eq!(reference.first().map(String::as_str), Some("parameters"));
        assert_eq!(reference.default, Some(json!("ann | bob")));
        for literal in ["5", "-1.5", "true", "false", "null", r#""""#] {
            check_template(&format!("{{{{ parameters.x|default:{literal} }}}}")).unwrap();
        }
        for (text, reason) in [
            (
                "{{ parameters.x | default: ann }}",
                "default: \"ann\" is not a JSON string",
            ),
            (
                "{{ parameters.x | default: [1] }}",
                "default: \"[1]\" is not a JSON string",
            ),
            ("{{ parameters.x | default: {} }}", "is not a JSON string"),
            (
                "{{ parameters.x | default: }}",
                "default: \"\" is not a JSON string",
            ),
            ("{{ parameters.x | upper }}", "unknown filter \"upper\""),
            ("{{ | default: 1 }}", "empty path"),
            ("{{ nope.x | default: 1 }}", "unknown name \"nope\""),
        ] {
            let err = check_template(text).unwrap_err();
            assert!(err.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn a_default_stands_in_for_a_missing_or_null_value() {
        let ctx = json!({"parameters": {"who": "bo", "none": null, "n": 0}});
        let render = |text: &str| render_str(text, &ctx).unwrap();
        assert_eq!(
            render(r#"{{ parameters.who | default: "ann" }}"#),
            json!("bo")
        );
        assert_eq!(
            render(r#"{{ parameters.nobody | default: "ann" }}"#),
            json!("ann")
        );
        assert_eq!(render("{{ parameters.none | default: 3 }}"), json!(3));
        assert_eq!(render("{{ parameters.n | default: 3 }}"), json!(0));
        assert_eq!(
            render("{{ parameters.a.b.c | default: false }}"),
            json!(false)
        );
        assert_eq!(render("{{ parameters.a | default: null }}"), json!(null));
        assert_eq!(
            render(r#"hi {{ parameters.x | default: "ann" }}, {{ parameters.y | default: 2 }}"#),
            json!("hi ann, 2")
        );
        // Without a default a missing path is still an error.
        assert!(render_str("{{ parameters.nobody }}", &ctx).is_err());
    }

    fn context() -> Value {
        json!({
            "parameters": {"email": "a@b.io", "n": "5"},
            "outputs": {"fetch": {"status": 200, "body": {"items": [{"id": 7}, {"id": 8}]}}},
            "job": {"id": "12"},
        })
    }

    #[test]
    fn a_single_reference_keeps_its_type() {
        let ctx = context();
        assert_eq!(
            render_str("{{ outputs.fetch.status }}", &ctx).unwrap(),
            json!(200)
        );
        assert_eq!(
            render_str("{{outputs.fetch.body.items.1}}", &ctx).unwrap(),
            json!({"id": 8})
        );
        assert_eq!(
            render_str("{{ parameters.email }}", &ctx).unwrap(),
            json!("a@b.io")
        );
    }

    #[test]
    fn mixed_text_interpolates() {
        let ctx = context();
        assert_eq!(
            render_str("job {{ job.id }}: {{outputs.fetch.body.items.0.id}} {{ outputs.fetch.body.items.0 }}", &ctx)
                .unwrap(),
            json!("job 12: 7 {\"id\":7}")
        );
        assert_eq!(
            render_str(" {{ outputs.fetch.status }}", &ctx).unwrap(),
            json!(" 200")
        );
        assert_eq!(
            render_str("no templates", &ctx).unwrap(),
            json!("no templates")
        );
    }

    #[test]
    fn missing_paths_name_the_missing_part() {
        let ctx = context();
        assert_eq!(
            render_str("{{ outputs.fetch.y }}", &ctx).unwrap_err(),
            "template {{ outputs.fetch.y }}: outputs.fetch has no \"y\""
        );
        assert_eq!(
            render_str("x {{ outputs.fetch.body.items.5.id }}", &ctx).unwrap_err(),
            "template {{ outputs.fetch.body.items.5.id }}: outputs.fetch.body.items has no \"5\""
        );
        assert_eq!(
            render_str("{{ error }}", &ctx).unwrap_err(),
            "template {{ error }}: the context has no \"error\""
        );
        assert_eq!(
            render_str("{{ parameters.email.x }}", &ctx).unwrap_err(),
            "template {{ parameters.email.x }}: parameters.email has no \"x\""
        );
    }

    #[test]
    fn escapes_stay_literal() {
        let ctx = context();
        assert_eq!(
            render_str(r"\{{ job.id }} is {{ job.id }}", &ctx).unwrap(),
            json!("{{ job.id }} is 12")
        );
        assert_eq!(
            render_str(r"\{{ nothing", &ctx).unwrap(),
            json!("{{ nothing")
        );
    }

    #[test]
    fn params_render_recursively() {
        let ctx = context();
        let params = json!({
            "url": "http://x/{{ job.id }}",
            "body": {"to": ["{{ parameters.email }}", 3], "count": "{{ outputs.fetch.status }}"},
            "{{ keys }}": "are not rendered",
        });
        assert_eq!(
            render(&params, &ctx).unwrap(),
            json!({
                "url": "http://x/12",
                "body": {"to": ["a@b.io", 3], "count": 200},
                "{{ keys }}": "are not rendered",
            })
        );
    }

    #[test]
    fn a_template_that_renders_too_much_fails() {
        let big = "x".repeat(64 * 1024);
        let ctx = json!({"parameters": {"big": big}});
        let many = "{{ parameters.big }}".repeat(2_000);
        let err = render_limited(&json!({"message": many}), &ctx, &mut (1024 * 1024)).unwrap_err();
        assert!(err.ends_with("renders to more than the limit of bytes a task's params may take (CRUST_WORKER_MAX_OUTPUT_BYTES)"), "{err}");
        // A single reference to a big value counts too, across params.
        let one = json!({"a": "{{ parameters.big }}", "b": "{{ parameters.big }}"});
        render_limited(&one, &ctx, &mut (200 * 1024)).unwrap();
        assert!(render_limited(&one, &ctx, &mut (100 * 1024)).is_err());
    }

    #[test]
    fn raw_lookups_follow_paths_without_a_tree() {
        let raw = RawValue::from_string(
            r#"{"body": {"items": [{"id": 7}, {"id": 8, "k\"q": "v"}]}, "status": 200}"#.into(),
        )
        .unwrap();
        let path = |p: &str| p.split('.').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            lookup_raw(&raw, &path("outputs.f.body.items.1.id"), 2).unwrap(),
            json!(8)
        );
        assert_eq!(
            lookup_raw(&raw, &path("outputs.f.body.items.1"), 2).unwrap(),
            json!({"id": 8, "k\"q": "v"})
        );
        assert_eq!(
            lookup_raw(&raw, &path("outputs.f.body.nope"), 2).unwrap_err(),
            "template {{ outputs.f.body.nope }}: outputs.f.body has no \"nope\""
        );
        assert_eq!(
            lookup_raw(&raw, &path("outputs.f.status.x"), 2).unwrap_err(),
            "template {{ outputs.f.status.x }}: outputs.f.status has no \"x\""
        );
    }
}
