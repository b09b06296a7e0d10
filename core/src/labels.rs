//! Label selectors: the string form (`a=b,c!=d,e in (x,y),!f,g`, the syntax of
//! `k8s.io/apimachinery/pkg/labels`), `metav1.LabelSelector` (matchLabels and
//! matchExpressions) and node selector terms.
//!
//! Contract: parsing accepts exactly what kube accepts and fails with kube's messages;
//! every form is matched by one evaluation ([`LabelOp`]'s), so a selector means the same
//! whether it came as a string, as a `metav1.LabelSelector` or as a node selector term.
//! An empty selector matches everything; a node selector term with no requirements
//! matches nothing.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiSelector;

use crate::names;

pub type Labels = BTreeMap<String, String>;

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

/// An operator over borrowed values: what every form of selector is evaluated and printed
/// through, without copying the values of an API object on each match.
#[derive(Debug, Clone, Copy)]
enum Op<'a> {
    Exists,
    NotExists,
    Equals(&'a str),
    NotEquals(&'a str),
    In(&'a [String]),
    NotIn(&'a [String]),
    Gt(i64),
    Lt(i64),
}

impl Op<'_> {
    /// Whether a label whose value is `v` (`None`: not set) satisfies the operator.
    fn matches(self, v: Option<&str>) -> bool {
        let in_set = |xs: &[String]| v.is_some_and(|v| xs.iter().any(|x| x == v));
        let int = || v.and_then(|v| v.parse::<i64>().ok());
        match self {
            Op::Exists => v.is_some(),
            Op::NotExists => v.is_none(),
            Op::Equals(x) => v == Some(x),
            Op::NotEquals(x) => v != Some(x),
            Op::In(xs) => in_set(xs),
            Op::NotIn(xs) => !in_set(xs),
            Op::Gt(n) => int().is_some_and(|v| v > n),
            Op::Lt(n) => int().is_some_and(|v| v < n),
        }
    }

    /// The requirement on `key` as kube prints it (`Requirement.String()`).
    fn write(self, key: &str, out: &mut impl fmt::Write) -> fmt::Result {
        match self {
            Op::Exists => write!(out, "{key}"),
            Op::NotExists => write!(out, "!{key}"),
            Op::Equals(v) => write!(out, "{key}={v}"),
            Op::NotEquals(v) => write!(out, "{key}!={v}"),
            Op::In(xs) => write!(out, "{key} in ({})", xs.join(",")),
            Op::NotIn(xs) => write!(out, "{key} notin ({})", xs.join(",")),
            Op::Gt(n) => write!(out, "{key}>{n}"),
            Op::Lt(n) => write!(out, "{key}<{n}"),
        }
    }

    /// A matchExpressions operator (`In`, `NotIn`, `Exists`, `DoesNotExist`) with its
    /// values as given; `None` for any other operator.
    fn of_expression<'a>(operator: &str, values: &'a [String]) -> Option<Op<'a>> {
        Some(match operator {
            "In" => Op::In(values),
            "NotIn" => Op::NotIn(values),
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::NotExists,
            _ => return None,
        })
    }
}

impl LabelOp {
    fn as_op(&self) -> Op<'_> {
        match self {
            LabelOp::Exists => Op::Exists,
            LabelOp::NotExists => Op::NotExists,
            LabelOp::Equals(x) => Op::Equals(x),
            LabelOp::NotEquals(x) => Op::NotEquals(x),
            LabelOp::In(xs) => Op::In(xs),
            LabelOp::NotIn(xs) => Op::NotIn(xs),
            LabelOp::Gt(n) => Op::Gt(*n),
            LabelOp::Lt(n) => Op::Lt(*n),
        }
    }

    /// Whether a label whose value is `v` (`None`: not set) satisfies the operator.
    pub fn matches(&self, v: Option<&str>) -> bool {
        self.as_op().matches(v)
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.op.as_op().write(&self.key, f)
    }
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
        self.0.iter().all(|r| r.op.matches(get(&r.key)))
    }

    /// The requirements of a `metav1.LabelSelector` (matchLabels and matchExpressions),
    /// refusing what kube's `LabelSelectorAsSelector` refuses.
    pub fn from_api(s: &ApiSelector) -> Result<Self, String> {
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

/// The string form, requirements in their order, joined with `,`.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
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
    if let Some(e) = names::label_key(k).first() {
        return Err(format!("invalid label key {k:?}: {e}"));
    }
    Ok(())
}

fn check_value(v: &str) -> Result<(), String> {
    if let Some(e) = names::label_value(v).first() {
        return Err(format!("invalid label value: {v:?}: {e}"));
    }
    Ok(())
}

/// Whether `labels` match `sel`. An empty selector matches everything (as
/// `metav1.LabelSelectorAsSelector` does); an unknown operator matches nothing.
pub fn matches(sel: &ApiSelector, labels: &Labels) -> bool {
    sel.match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().flatten().all(|e| {
            let vals = e.values.as_deref().unwrap_or(&[]);
            Op::of_expression(&e.operator, vals)
                .is_some_and(|op| op.matches(labels.get(&e.key).map(String::as_str)))
        })
}

/// Whether `sel` is empty (matches everything).
pub fn is_empty(sel: &ApiSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty())
}

/// The selector in the string form list and watch take (`labelSelector=`): matchLabels,
/// then matchExpressions, in their order; unknown operators are left out.
pub fn to_query(sel: &ApiSelector) -> String {
    let labels = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), Op::Equals(v)));
    let exprs = sel.match_expressions.iter().flatten().filter_map(|e| {
        let vals = e.values.as_deref().unwrap_or(&[]);
        Some((e.key.as_str(), Op::of_expression(&e.operator, vals)?))
    });
    join(labels.chain(exprs))
}

fn join<'a>(reqs: impl Iterator<Item = (&'a str, Op<'a>)>) -> String {
    let mut out = String::new();
    for (i, (k, op)) in reqs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Writing to a String does not fail.
        let _ = op.write(k, &mut out);
    }
    out
}

/// A metav1.LabelSelector in JSON as a selector string, as kubectl shows it: requirements
/// sorted by key, values sorted, `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`. No
/// selector, or an empty one: "".
pub fn format_label_selector(sel: Option<&serde_json::Value>) -> String {
    use serde_json::Value;
    let Some(sel) = sel else {
        return String::new();
    };
    let labels = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")));
    let exprs: Vec<(&str, &str, Vec<String>)> = sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let s = |f: &str| e.get(f).and_then(Value::as_str).unwrap_or("");
            let mut values: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            values.sort_unstable();
            (s("key"), s("operator"), values)
        })
        .collect();
    let mut reqs: Vec<(&str, String)> = labels
        .map(|(k, v)| (k, join(std::iter::once((k, Op::Equals(v))))))
        .collect();
    for (k, operator, values) in &exprs {
        if let Some(op) = Op::of_expression(operator, values) {
            reqs.push((k, join(std::iter::once((*k, op)))));
        }
    }
    reqs.sort();
    reqs.into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// A node selector requirement against a node's labels (`matchExpressions`); `Gt` and `Lt`
/// compare the label and the first value as integers.
pub fn node_requirement(r: &NodeSelectorRequirement, labels: &Labels) -> bool {
    let vals = r.values.as_deref().unwrap_or(&[]);
    let first_int = || vals.first().and_then(|v| v.parse::<i64>().ok());
    let op = match r.operator.as_str() {
        "Gt" => first_int().map(Op::Gt),
        "Lt" => first_int().map(Op::Lt),
        other => Op::of_expression(other, vals),
    };
    op.is_some_and(|op| op.matches(labels.get(&r.key).map(String::as_str)))
}

/// A node selector term: all its expressions and field requirements hold. A term with
/// neither matches nothing (as Kubernetes has it).
pub fn node_term(t: &NodeSelectorTerm, node_name: &str, labels: &Labels) -> bool {
    let exprs = t.match_expressions.as_deref().unwrap_or(&[]);
    let fields = t.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let mut name_labels = Labels::new();
    name_labels.insert("metadata.name".into(), node_name.into());
    exprs.iter().all(|r| node_requirement(r, labels))
        && fields.iter().all(|r| node_requirement(r, &name_labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_operators() {
        let l = l(&[("app", "web"), ("tier", "front"), ("n", "5")]);
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
        assert_eq!(
            LabelSelector::parse("a b").unwrap_err(),
            "found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(
            LabelSelector::parse("a in (x").unwrap_err(),
            "found '', expected: ',' or ')'"
        );
    }

    #[test]
    fn parsed_selectors_print_as_kube_prints_them() {
        let s = "a=b,c!=d,e in (x,y),!f,g,n>3";
        assert_eq!(LabelSelector::parse(s).unwrap().to_string(), s);
        assert_eq!(LabelSelector::parse("").unwrap().to_string(), "");
    }

    #[test]
    fn label_selectors() {
        let sel = ApiSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        assert!(matches(&sel, &l(&[("app", "web")])));
        assert!(matches(&sel, &l(&[("app", "web"), ("tier", "fe")])));
        assert!(!matches(&sel, &l(&[("app", "web"), ("tier", "db")])));
        assert!(!matches(&sel, &l(&[("app", "api")])));
        assert!(matches(&ApiSelector::default(), &l(&[])));
        assert_eq!(to_query(&sel), "app=web,tier notin (db)");
        // The parsed form means the same.
        let parsed = LabelSelector::from_api(&sel).unwrap();
        assert!(parsed.matches(&l(&[("app", "web"), ("tier", "fe")])));
        assert!(!parsed.matches(&l(&[("app", "web"), ("tier", "db")])));
        assert_eq!(parsed.to_string(), to_query(&sel));
    }

    #[test]
    fn api_selectors_with_odd_operators() {
        let expr = |op: &str, values: Option<Vec<String>>| ApiSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: op.into(),
                values,
            }]),
        };
        // Unknown operators match nothing and are left out of the query.
        assert!(!matches(
            &expr("Gt", Some(vec!["1".into()])),
            &l(&[("k", "5")])
        ));
        assert_eq!(to_query(&expr("Gt", None)), "");
        assert!(LabelSelector::from_api(&expr("Gt", None)).is_err());
        // An empty `In` matches nothing, an empty `NotIn` everything; kube refuses both.
        assert!(!matches(&expr("In", None), &l(&[("k", "v")])));
        assert!(matches(&expr("NotIn", None), &l(&[("k", "v")])));
        assert!(LabelSelector::from_api(&expr("In", None)).is_err());
        assert_eq!(to_query(&expr("DoesNotExist", None)), "!k");
    }

    #[test]
    fn json_selectors_print_sorted() {
        let sel = serde_json::json!({
            "matchLabels": {"tier": "fe", "app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                {"key": "gone", "operator": "DoesNotExist"},
                {"key": "odd", "operator": "Gt", "values": ["1"]},
            ],
        });
        assert_eq!(
            format_label_selector(Some(&sel)),
            "app=web,env in (dev,prod),!gone,tier=fe"
        );
        assert_eq!(format_label_selector(None), "");
        assert_eq!(format_label_selector(Some(&serde_json::json!({}))), "");
    }

    #[test]
    fn node_terms() {
        let term = NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: "cores".into(),
                operator: "Gt".into(),
                values: Some(vec!["4".into()]),
            }]),
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec!["n1".into()]),
            }]),
        };
        assert!(node_term(&term, "n1", &l(&[("cores", "8")])));
        assert!(!node_term(&term, "n2", &l(&[("cores", "8")])));
        assert!(!node_term(&term, "n1", &l(&[("cores", "4")])));
        assert!(!node_term(&NodeSelectorTerm::default(), "n1", &l(&[])));
    }
}
