//! Field selectors (`k8s.io/apimachinery/pkg/fields`): `a=b,c!=d`, with `\` escaping `,`,
//! `=` and `\` in values.
//!
//! Contract: parsing fails, with kube's message, on a term that is not an equality or an
//! inequality; a field an object does not have compares as the empty string.

/// A parsed field selector; empty matches everything.
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
        if s.get(i..).is_some_and(|rest| rest.starts_with(pat)) {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn multibyte_values_do_not_split_a_character() {
        let s = FieldSelector::parse("metadata.name=é\\é").unwrap();
        assert_eq!(s.0[0].value, "éé");
        assert!(FieldSelector::parse("é").is_err());
    }
}
