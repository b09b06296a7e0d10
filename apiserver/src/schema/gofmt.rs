//! Values rendered as Go renders them in Kubernetes' messages: `%v` of a float64 (shortest
//! digits, an exponent from 1e+06 on), a bad value in a field error (`%q` for strings, `%v`
//! for numbers and booleans, `%#v` for maps and slices of an unstructured object).

use serde_json::Value;

/// `fmt.Sprintf("%v", f)` for a float64: the shortest digits that read back as `f`, in
/// exponent form when the exponent is below -4 or at least 6 ("1e+06", "1.5e-05").
pub fn float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e8", "-5e-5".
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.unsigned_abs());
    }
    // Plain decimal notation; Rust's Display is the shortest round-trip form too.
    format!("{f}")
}

/// A JSON number as Go holds it in an unstructured object: an int64 when it is an integer
/// that fits, else a float64.
pub fn number(n: &serde_json::Number) -> String {
    match n.as_i64() {
        Some(i) => i.to_string(),
        None => float(n.as_f64().unwrap_or(f64::NAN)),
    }
}

/// The bad value of a field error as `field.Error` prints it: strings quoted, numbers and
/// booleans bare, anything else (maps, slices, null) as Go's `%#v`.
pub fn bad_value(v: &Value) -> String {
    match v {
        Value::String(s) => quote(s),
        Value::Number(n) => number(n),
        Value::Bool(b) => b.to_string(),
        Value::Null => "<nil>".into(),
        _ => sharp_v(v),
    }
}

/// Go's `%q` of a string, close enough for messages: Rust's debug quoting.
pub fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// Go's `%#v` of an unstructured value: `map[string]interface {}{"a":1}`,
/// `[]interface {}{"x"}`, keys in order (Go's fmt sorts them).
pub fn sharp_v(v: &Value) -> String {
    match v {
        Value::Null => "interface {}(nil)".into(),
        Value::String(s) => quote(s),
        Value::Number(n) => number(n),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(sharp_v).collect();
            format!("[]interface {{}}{{{}}}", inner.join(", "))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", quote(k), sharp_v(&m[k])))
                .collect();
            format!("map[string]interface {{}}{{{}}}", inner.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_as_go_prints_them() {
        assert_eq!(float(10.0), "10");
        assert_eq!(float(1.5), "1.5");
        assert_eq!(float(100000.0), "100000");
        assert_eq!(float(1000000.0), "1e+06");
        assert_eq!(float(123456789.0), "1.23456789e+08");
        assert_eq!(float(0.0001), "0.0001");
        assert_eq!(float(0.00001), "1e-05");
        assert_eq!(float(-2.5e-7), "-2.5e-07");
        assert_eq!(float(1e21), "1e+21");
        assert_eq!(float(0.1), "0.1");
    }

    #[test]
    fn bad_values_as_field_errors_print_them() {
        assert_eq!(bad_value(&json!("a\"b")), r#""a\"b""#);
        assert_eq!(bad_value(&json!(-1)), "-1");
        assert_eq!(bad_value(&json!(2.5)), "2.5");
        assert_eq!(bad_value(&json!(true)), "true");
        assert_eq!(
            bad_value(&json!({"b": [1, "x"], "a": null})),
            r#"map[string]interface {}{"a":interface {}(nil), "b":[]interface {}{1, "x"}}"#
        );
    }
}
