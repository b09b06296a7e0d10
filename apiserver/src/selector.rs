//! Label and field selectors: parsing (the syntax of `k8s.io/apimachinery/pkg/labels` and
//! `.../fields`) and matching. Pure functions.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelOp {
    Exists,
    NotExists,
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    pub key: String,
    pub op: LabelOp,
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<LabelRequirement>);

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut p = Lexer {
            s: s.as_bytes(),
            i: 0,
        };
        let mut reqs = Vec::new();
        p.ws();
        if p.eof() {
            return Ok(Self(reqs));
        }
        loop {
            reqs.push(p.requirement()?);
            p.ws();
            if p.eof() {
                break;
            }
            p.expect(b',')?;
        }
        Ok(Self(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }

    /// Whether labels read through `get` (a key's value, if set) match.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0.iter().all(|r| {
            let v = get(&r.key);
            match &r.op {
                LabelOp::Exists => v.is_some(),
                LabelOp::NotExists => v.is_none(),
                LabelOp::Equals(x) => v == Some(x.as_str()),
                LabelOp::NotEquals(x) => v != Some(x.as_str()),
                LabelOp::In(xs) => v.is_some_and(|v| xs.iter().any(|x| x == v)),
                LabelOp::NotIn(xs) => v.is_none_or(|v| !xs.iter().any(|x| x == v)),
                LabelOp::Gt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v > *n),
                LabelOp::Lt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < *n),
            }
        })
    }
}

impl LabelSelector {
    /// The requirements of a `metav1.LabelSelector` (matchLabels and matchExpressions).
    pub fn from_api(
        s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    ) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for (k, v) in s.match_labels.iter().flatten() {
            reqs.push(LabelRequirement {
                key: k.clone(),
                op: LabelOp::Equals(v.clone()),
            });
        }
        for e in s.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            let op = match e.operator.as_str() {
                "In" if !values.is_empty() => LabelOp::In(values),
                "NotIn" if !values.is_empty() => LabelOp::NotIn(values),
                "Exists" if values.is_empty() => LabelOp::Exists,
                "DoesNotExist" if values.is_empty() => LabelOp::NotExists,
                "In" | "NotIn" => {
                    return Err("for 'in', 'notin' operators, values set can't be empty".into())
                }
                "Exists" | "DoesNotExist" => {
                    return Err(
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'".into(),
                    )
                }
                op => return Err(format!("{op:?} is not a valid label selector operator")),
            };
            reqs.push(LabelRequirement {
                key: e.key.clone(),
                op,
            });
        }
        Ok(Self(reqs))
    }
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn eof(&self) -> bool {
        self.i >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    fn expect(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!(
                "found '{}', expected: '{}'",
                self.rest(),
                c as char
            ))
        }
    }
    fn rest(&self) -> String {
        String::from_utf8_lossy(&self.s[self.i.min(self.s.len())..]).into_owned()
    }
    /// A key or value: everything up to whitespace or an operator character.
    fn word(&mut self) -> String {
        self.ws();
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_whitespace() || b"=!,()<>".contains(&c) {
                break;
            }
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }
    fn starts_with(&self, w: &str) -> bool {
        self.s[self.i..].starts_with(w.as_bytes())
    }
    fn requirement(&mut self) -> Result<LabelRequirement, String> {
        self.ws();
        if self.peek() == Some(b'!') {
            self.i += 1;
            let key = self.word();
            check_key(&key)?;
            return Ok(LabelRequirement {
                key,
                op: LabelOp::NotExists,
            });
        }
        let key = self.word();
        check_key(&key)?;
        self.ws();
        let op = if self.eof() || self.peek() == Some(b',') {
            LabelOp::Exists
        } else if self.starts_with("==") {
            self.i += 2;
            LabelOp::Equals(self.value()?)
        } else if self.starts_with("!=") {
            self.i += 2;
            LabelOp::NotEquals(self.value()?)
        } else if self.starts_with("=") {
            self.i += 1;
            LabelOp::Equals(self.value()?)
        } else if self.starts_with(">") || self.starts_with("<") {
            let gt = self.peek() == Some(b'>');
            self.i += 1;
            let v = self.word();
            let n: i64 = v
                .parse()
                .map_err(|_| format!("invalid integer value: {v:?}"))?;
            if gt {
                LabelOp::Gt(n)
            } else {
                LabelOp::Lt(n)
            }
        } else {
            let w = self.word();
            match w.as_str() {
                "in" => LabelOp::In(self.set()?),
                "notin" => LabelOp::NotIn(self.set()?),
                _ => {
                    return Err(format!(
                        "found '{w}', expected: in, notin, =, ==, !=, gt, lt"
                    ))
                }
            }
        };
        Ok(LabelRequirement { key, op })
    }
    fn value(&mut self) -> Result<String, String> {
        let v = self.word();
        check_value(&v)?;
        Ok(v)
    }
    fn set(&mut self) -> Result<Vec<String>, String> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        loop {
            self.ws();
            if self.peek() == Some(b')') {
                self.i += 1;
                break;
            }
            out.push(self.value()?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b')') => {}
                _ => return Err(format!("found '{}', expected: ',' or ')'", self.rest())),
            }
        }
        Ok(out)
    }
}

fn check_key(k: &str) -> Result<(), String> {
    if k.is_empty() {
        return Err("found '', expected: identifier".into());
    }
    let errs = crate::validation::label_key(k);
    if let Some(e) = errs.first() {
        return Err(format!("invalid label key {k:?}: {e}"));
    }
    Ok(())
}

fn check_value(v: &str) -> Result<(), String> {
    if let Some(e) = crate::validation::label_value(v).first() {
        return Err(format!("invalid label value: {v:?}: {e}"));
    }
    Ok(())
}

/// A parsed field selector: `a=b,c!=d` with `\` escaping `,`, `=` and `\` in values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub equal: bool,
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self(out));
        }
        for term in split_unescaped(s, ',') {
            let (field, value, equal) = if let Some(i) = find_unescaped(&term, "!=") {
                (&term[..i], &term[i + 2..], false)
            } else if let Some(i) = find_unescaped(&term, "==") {
                (&term[..i], &term[i + 2..], true)
            } else if let Some(i) = find_unescaped(&term, "=") {
                (&term[..i], &term[i + 1..], true)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                ));
            };
            out.push(FieldRequirement {
                field: field.trim().to_string(),
                value: unescape(value),
                equal,
            });
        }
        Ok(Self(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every field named is one the kind supports (`allowed`).
    pub fn check_fields(&self, allowed: &[&str]) -> Result<(), String> {
        for r in &self.0 {
            if !allowed.contains(&r.field.as_str()) {
                return Err(format!("field label not supported: {}", r.field));
            }
        }
        Ok(())
    }

    pub fn matches(&self, fields: &[(&'static str, String)]) -> bool {
        self.0.iter().all(|r| {
            let v = fields
                .iter()
                .find(|(k, _)| *k == r.field)
                .map(|(_, v)| v.as_str());
            (v.unwrap_or("") == r.value) == r.equal
        })
    }

    /// The value an equality requirement pins `field` to, if any.
    pub fn pinned(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|r| r.equal && r.field == field)
            .map(|r| r.value.as_str())
    }
}

/// Splits on `sep` where it is not escaped; escapes are kept for `unescape`.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut esc = false;
    for c in s.chars() {
        let cur = out.len() - 1;
        if esc {
            out[cur].push('\\');
            out[cur].push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == sep {
            out.push(String::new());
        } else {
            out[cur].push(c);
        }
    }
    out
}

fn find_unescaped(s: &str, pat: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if s[i..].starts_with(pat) {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        if !esc && c == '\\' {
            esc = true;
            continue;
        }
        esc = false;
        out.push(c);
    }
    out
}

/// A metav1.LabelSelector as a selector string: requirements sorted by key, `k=v`,
/// `k in (a,b)`, `k notin (a,b)`, `k`, `!k`. Empty selector: "".
pub fn format_label_selector(sel: Option<&serde_json::Value>) -> String {
    let Some(sel) = sel else {
        return String::new();
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel
        .get("matchLabels")
        .and_then(serde_json::Value::as_object)
    {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        let k = e
            .get("key")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut values: Vec<&str> = e
            .get("values")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .collect();
        values.sort_unstable();
        let text = match e
            .get("operator")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
        {
            "In" => format!("{k} in ({})", values.join(",")),
            "NotIn" => format!("{k} notin ({})", values.join(",")),
            "Exists" => k.clone(),
            "DoesNotExist" => format!("!{k}"),
            _ => continue,
        };
        reqs.push((k, text));
    }
    reqs.sort();
    reqs.into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_operators() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        for (sel, want) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("missing notin (web)", true),
            ("missing!=x", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier=back", false),
            ("app=web, tier in (front)", true),
            ("n>4,n<6", true),
            ("example.com/role=x", false),
        ] {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&l), want, "{sel}");
        }
    }

    #[test]
    fn label_selector_rejects_garbage() {
        for bad in [
            "app=",
            "=x",
            "app in web",
            "app in (a",
            "a b",
            "app=we b",
            "Bad Key=x",
        ] {
            let r = LabelSelector::parse(bad);
            // "app=" is valid (empty value) in Kubernetes.
            if bad == "app=" {
                assert!(r.is_ok());
            } else {
                assert!(r.is_err(), "{bad} parsed as {r:?}");
            }
        }
    }

    #[test]
    fn field_selector_equality_and_escapes() {
        let s = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed").unwrap();
        let f = vec![
            ("spec.nodeName", "n1".to_string()),
            ("status.phase", "Running".to_string()),
        ];
        assert!(s.matches(&f));
        assert_eq!(s.pinned("spec.nodeName"), Some("n1"));
        let s = FieldSelector::parse(r"metadata.name=a\,b").unwrap();
        assert_eq!(s.0[0].value, "a,b");
        assert!(FieldSelector::parse("metadata.name").is_err());
        let s = FieldSelector::parse("spec.nodeName=").unwrap();
        assert!(s.matches(&[("spec.nodeName", String::new())]));
        assert!(s.check_fields(&["metadata.name"]).is_err());
    }
}
