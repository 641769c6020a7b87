//! `{{ path }}` templates in task parameters, rendered over the job's
//! context `{"parameters", "outputs", "error", "job"}` just before a try.
//!
//! A string that is exactly one reference becomes the referenced JSON value
//! itself (numbers and objects stay typed); otherwise references are
//! interpolated (strings raw, other values as compact JSON). `\{{` is a
//! literal `{{`. A path that leads nowhere is an error naming the last part
//! that exists.

use serde_json::{Map, Value};

use crust_shared::model::task::{parse_template, Segment};

/// Checks template syntax (unclosed `{{`, empty or unknown paths); used at
/// save time by `validate_params`.
pub fn check(template: &str) -> Result<(), String> {
    crust_shared::model::task::check_template(template)
}

/// Renders every string inside `value` (object keys excepted).
pub fn render(value: &Value, context: &Value) -> Result<Value, String> {
    Ok(match value {
        Value::String(text) => render_str(text, context)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| render(item, context))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| Ok((key.clone(), render(item, context)?)))
                .collect::<Result<Map<_, _>, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Renders one template string.
pub fn render_str(text: &str, context: &Value) -> Result<Value, String> {
    let segments = parse_template(text)?;
    if let [Segment::Ref(path)] = segments.as_slice() {
        return lookup(context, path).cloned();
    }
    let mut out = String::with_capacity(text.len());
    for segment in &segments {
        match segment {
            Segment::Text(literal) => out.push_str(literal),
            Segment::Ref(path) => match lookup(context, path)? {
                Value::String(value) => out.push_str(value),
                other => out.push_str(&other.to_string()),
            },
        }
    }
    Ok(Value::String(out))
}

/// Follows `path` through `context`: object keys, or indexes into arrays.
fn lookup<'c>(context: &'c Value, path: &[String]) -> Result<&'c Value, String> {
    let mut current = context;
    for (depth, part) in path.iter().enumerate() {
        let next = match current {
            Value::Object(map) => map.get(part),
            Value::Array(items) => part.parse::<usize>().ok().and_then(|at| items.get(at)),
            _ => None,
        };
        current = next.ok_or_else(|| {
            let whole = path.join(".");
            let parent = if depth == 0 {
                "the context".to_owned()
            } else {
                path[..depth].join(".")
            };
            format!("template {{{{ {whole} }}}}: {parent} has no {part:?}")
        })?;
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn check_reports_syntax_errors() {
        assert!(check("{{ parameters.a }}").is_ok());
        assert!(check("{{ parameters.a").unwrap_err().contains("unclosed"));
        assert!(check("{{}}").unwrap_err().contains("empty path"));
    }
}
