//! Go-compatible serialisation: `encoding/json` (`json.Marshal`) and the juju/cmd output
//! formatters `smart`, `yaml` (gopkg.in/yaml.v2 style) and `json` (docs/juju.md#hook-tools).

use serde_json::{Map, Number, Value};

/// A value handed to a formatter, keeping the Go type distinctions juju/cmd's `smart`
/// formatter cares about (`string`, `[]string`, `bool`, nil, anything else).
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Go nil.
    Nil,
    /// Go `string`.
    Str(String),
    /// Go `[]string`.
    StrList(Vec<String>),
    /// Go `bool`.
    Bool(bool),
    /// Any other value (maps, numbers, `[]interface{}`...), or an untyped JSON value
    /// whose strings/bools/nulls behave like the Go types above.
    Value(Value),
}

impl Output {
    /// Normalises an untyped value: JSON strings, bools and nulls become their Go types.
    fn normalised(&self) -> Output {
        match self {
            Output::Value(Value::Null) => Output::Nil,
            Output::Value(Value::String(s)) => Output::Str(s.clone()),
            Output::Value(Value::Bool(b)) => Output::Bool(*b),
            other => other.clone(),
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Output::Nil => Value::Null,
            Output::Str(s) => Value::String(s.clone()),
            Output::StrList(l) => Value::Array(l.iter().cloned().map(Value::String).collect()),
            Output::Bool(b) => Value::Bool(*b),
            Output::Value(v) => v.clone(),
        }
    }
}

/// Output format names accepted by `--format`.
pub const FORMATS: [&str; 3] = ["smart", "yaml", "json"];

/// Validator for the `--format` flag (`unknown format "xml"`).
pub fn validate_format(name: &str) -> Result<String, String> {
    if FORMATS.contains(&name) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "unknown format {}",
            crate::fakes::gnuflag::go_quote(name)
        ))
    }
}

/// Renders `value` with the named formatter, exactly as juju/cmd's `Output.Write` would
/// write it to stdout (including the trailing newline, or nothing at all).
pub fn render(format: &str, value: &Output) -> String {
    match format {
        "json" => {
            let mut s = go_json(&value.to_value());
            s.push('\n');
            s
        }
        "yaml" => format_yaml(value),
        _ => format_smart(value),
    }
}

fn format_yaml(value: &Output) -> String {
    if matches!(value, Output::Nil) {
        return String::new();
    }
    let v = value.to_value();
    let mut out = yaml_document(&v);
    while out.ends_with('\n') {
        out.pop();
    }
    if out.is_empty() {
        return out;
    }
    out.push('\n');
    out
}

fn format_smart(value: &Output) -> String {
    let text = match value.normalised() {
        Output::Nil => return String::new(),
        Output::Str(s) => s,
        Output::StrList(l) => l.join("\n"),
        Output::Bool(true) => "True".to_string(),
        Output::Bool(false) => "False".to_string(),
        v @ Output::Value(_) => return format_yaml(&v),
    };
    if text.is_empty() {
        String::new()
    } else {
        text + "\n"
    }
}

// ---------------------------------------------------------------------------------------
// encoding/json

/// The strings of a JSON array (a Go `[]string`; other items are skipped); empty when `v`
/// is missing or not an array.
pub fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `json.Marshal` of a value: compact, map keys sorted, `<`, `>`, `&`, U+2028 and U+2029
/// escaped, Go float formatting.
pub fn go_json(value: &Value) -> String {
    let mut out = String::new();
    write_json(value, &mut out);
    out
}

fn write_json(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&go_json_number(n)),
        Value::String(s) => out.push_str(&go_json_string(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in sorted(map).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&go_json_string(k));
                out.push(':');
                write_json(v, out);
            }
            out.push('}');
        }
    }
}

fn sorted(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// A JSON string literal as Go's `encoding/json` writes it.
pub fn go_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Number formatting of Go's `encoding/json` (float64: `'f'` format between 1e-6 and
/// 1e21, else `'e'` with a two-digit exponent).
pub fn go_json_number(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    let abs = f.abs();
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        format!("{f}")
    } else {
        go_exponent(&format!("{f:e}"))
    }
}

/// Turns Rust's `1.5e21` / `1e-7` into Go's `1.5e+21` / `1e-07`.
fn go_exponent(rust: &str) -> String {
    let Some((mantissa, exp)) = rust.split_once('e') else {
        return rust.to_string();
    };
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    let digits = if digits.len() < 2 {
        format!("0{digits}")
    } else {
        digits.to_string()
    };
    format!("{mantissa}e{sign}{digits}")
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)`, as gopkg.in/yaml.v2 uses for floats.
fn go_float_g(f: f64) -> String {
    if f.is_nan() {
        return ".nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+.inf" } else { "-.inf" }.to_string();
    }
    if f == 0.0 {
        return "0".to_string();
    }
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits = mantissa.replace('.', "");
    let nd = digits.len() as i32;
    let dp = exp + 1;
    let mut eprec = 6;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    let sign = if f < 0.0 { "-" } else { "" };
    if exp < -4 || exp >= eprec {
        format!("{sign}{}", go_exponent(&sci))
    } else {
        format!("{sign}{}", f.abs())
    }
}

// ---------------------------------------------------------------------------------------
// gopkg.in/yaml.v2

fn yaml_document(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => write_yaml_map(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => write_yaml_seq(a, 0, &mut out),
        other => {
            out.push_str(&yaml_inline(other, 0));
            out.push('\n');
        }
    }
    out
}

/// Renders a scalar or empty collection on one line (block scalars may span lines).
fn yaml_inline(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string(),
            (_, Some(u)) => u.to_string(),
            _ => go_float_g(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => yaml_string(s, indent),
        Value::Array(_) => "[]".to_string(),
        Value::Object(_) => "{}".to_string(),
    }
}

fn is_collection(v: &Value) -> bool {
    matches!(v, Value::Object(m) if !m.is_empty()) || matches!(v, Value::Array(a) if !a.is_empty())
}

fn write_yaml_map(m: &Map<String, Value>, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (k, v) in sorted(m) {
        out.push_str(&pad);
        out.push_str(&yaml_string(k, indent));
        match v {
            Value::Object(inner) if !inner.is_empty() => {
                out.push_str(":\n");
                write_yaml_map(inner, indent + 2, out);
            }
            Value::Array(items) if !items.is_empty() => {
                // yaml.v2 does not indent a sequence nested in a mapping.
                out.push_str(":\n");
                write_yaml_seq(items, indent, out);
            }
            other => {
                out.push_str(": ");
                out.push_str(&yaml_inline(other, indent + 2));
                out.push('\n');
            }
        }
    }
}

fn write_yaml_seq(items: &[Value], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for item in items {
        out.push_str(&pad);
        out.push_str("- ");
        if is_collection(item) {
            // The first line of the nested collection follows "- " directly.
            let mut nested = String::new();
            match item {
                Value::Object(m) => write_yaml_map(m, indent + 2, &mut nested),
                Value::Array(a) => write_yaml_seq(a, indent + 2, &mut nested),
                _ => {}
            }
            out.push_str(nested.trim_start_matches(' '));
        } else {
            out.push_str(&yaml_inline(item, indent + 2));
            out.push('\n');
        }
    }
}

/// True if a plain scalar with this text would be read back as something other than a
/// string (YAML 1.1 as resolved by yaml.v2).
fn resolves_to_non_string(s: &str) -> bool {
    const SPECIAL: [&str; 28] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~",
        ".inf", ".nan",
    ];
    if SPECIAL.contains(&s) || s == "<<" || s == "=" {
        return true;
    }
    let lower = s.to_ascii_lowercase();
    if matches!(lower.as_str(), "+.inf" | "-.inf" | ".inf" | ".nan") {
        return true;
    }
    let t = s.replace('_', "");
    let body = t.strip_prefix(['+', '-']).unwrap_or(&t);
    if body.is_empty() {
        return false;
    }
    if body.chars().all(|c| c.is_ascii_digit()) {
        return true;
    }
    if let Some(hex) = body.strip_prefix("0x") {
        return !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    if let Some(bin) = body.strip_prefix("0b") {
        return !bin.is_empty() && bin.chars().all(|c| c == '0' || c == '1');
    }
    // Floats: digits with one '.', optional exponent; or base-60 forms like 1:20.
    let (mant, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let mant_ok = mant.chars().filter(|&c| c == '.').count() <= 1
        && mant.chars().any(|c| c.is_ascii_digit())
        && mant.chars().all(|c| c.is_ascii_digit() || c == '.');
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    if mant_ok && exp_ok && (mant.contains('.') || exp.is_some()) {
        return true;
    }
    let parts: Vec<&str> = body.split(':').collect();
    parts.len() > 1
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

fn plain_allowed(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        // Indicators may start a plain scalar only if they are "-", "?" or ":" not
        // followed by a space.
        if !((first == '-' || first == '?' || first == ':')
            && s.len() > 1
            && !s[1..].starts_with(' '))
        {
            return false;
        }
    }
    if s.starts_with(' ') || s.ends_with(' ') || s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    s.chars().all(|c| !c.is_control() && c != '\u{feff}')
}

fn yaml_string(s: &str, indent: usize) -> String {
    if s.is_empty() {
        return "\"\"".to_string();
    }
    if s.contains('\n') && s.chars().all(|c| c == '\n' || !c.is_control()) {
        let chomp = if s.ends_with('\n') { "" } else { "-" };
        let pad = " ".repeat(indent.max(2));
        let mut out = format!("|{chomp}");
        if s.starts_with(' ') {
            out = format!("|2{chomp}");
        }
        for line in s.trim_end_matches('\n').split('\n') {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&pad);
                out.push_str(line);
            }
        }
        return out;
    }
    if resolves_to_non_string(s) {
        return yaml_double_quoted(s);
    }
    if plain_allowed(s) {
        return s.to_string();
    }
    if s.chars().all(|c| !c.is_control()) {
        return format!("'{}'", s.replace('\'', "''"));
    }
    yaml_double_quoted(s)
}

fn yaml_double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn smart() {
        assert_eq!(render("smart", &Output::Str("beta".into())), "beta\n");
        assert_eq!(render("smart", &Output::Str(String::new())), "");
        assert_eq!(render("smart", &Output::Nil), "");
        assert_eq!(render("smart", &Output::Bool(true)), "True\n");
        assert_eq!(
            render("smart", &Output::StrList(vec!["a".into(), "b".into()])),
            "a\nb\n"
        );
        assert_eq!(render("smart", &Output::StrList(vec![])), "");
        assert_eq!(render("smart", &Output::Value(json!(8080))), "8080\n");
        assert_eq!(
            render(
                "smart",
                &Output::Value(json!({"port": 8080, "channel": "edge"}))
            ),
            "channel: edge\nport: 8080\n"
        );
    }

    #[test]
    fn json_format() {
        assert_eq!(render("json", &Output::Nil), "null\n");
        assert_eq!(
            render("json", &Output::Value(json!({"b": 1, "a": "<&>"}))),
            "{\"a\":\"\\u003c\\u0026\\u003e\",\"b\":1}\n"
        );
        assert_eq!(render("json", &Output::StrList(vec![])), "[]\n");
        assert_eq!(go_json(&json!(1e21)), "1e+21");
        assert_eq!(go_json(&json!(0.5)), "0.5");
    }

    #[test]
    fn yaml_format() {
        assert_eq!(render("yaml", &Output::StrList(vec![])), "[]\n");
        assert_eq!(
            render("yaml", &Output::StrList(vec!["x:0".into(), "x:1".into()])),
            "- x:0\n- x:1\n"
        );
        assert_eq!(
            render(
                "yaml",
                &Output::Value(json!({"a": {"b": "1", "c": [1, 2]}}))
            ),
            "a:\n  b: \"1\"\n  c:\n  - 1\n  - 2\n"
        );
        assert_eq!(render("yaml", &Output::Value(json!(1e6))), "1e+06\n");
        assert_eq!(render("yaml", &Output::Value(json!("a: b"))), "'a: b'\n");
    }
}
