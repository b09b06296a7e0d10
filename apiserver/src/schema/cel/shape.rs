//! Upper bounds of CEL values' sizes, for the cost estimate (`cost.rs`): from an object at
//! hand (tight: its real lengths) or from a CRD schema (its maxItems/maxLength/
//! maxProperties, else what fits in the largest request, as kube estimates). Pure.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

use crate::schema::Props;

/// The largest request body kube sizes unbounded values by (3 MiB): no string, list or
/// map of a stored object can be longer.
pub const MAX_REQUEST_BYTES: u64 = 3 * 1024 * 1024;

/// What a value is, as far as its cost goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Str,
    List,
    Map,
    /// Booleans, doubles, null, durations...: constant-size scalars.
    Scalar,
    /// Anything (a dynamic value, a join of different kinds).
    Any,
}

/// An upper bound of one value.
#[derive(Clone, Debug)]
pub struct Shape {
    pub kind: Kind,
    /// Elements of a list, entries of a map, bytes of a string, the magnitude of an int.
    pub len: u64,
    /// Total size (nodes and bytes): what copying, comparing or converting it costs.
    pub weight: u64,
    /// The longest key of a map.
    pub key_len: u64,
    /// A list's elements (or a map's values, when it has no named fields).
    elem: Option<Box<Shape>>,
    /// A map's named fields.
    fields: BTreeMap<String, Shape>,
    /// Whether unnamed fields and elements may be anything up to `weight`.
    open: bool,
}

impl Shape {
    pub fn scalar() -> Shape {
        Shape::of(Kind::Scalar, 0, 1)
    }

    pub fn int(magnitude: u64) -> Shape {
        Shape::of(Kind::Int, magnitude, 1)
    }

    pub fn string(len: u64) -> Shape {
        Shape::of(Kind::Str, len, len.saturating_add(1))
    }

    pub fn list(len: u64, elem: Shape) -> Shape {
        let weight = len.saturating_mul(elem.weight).saturating_add(1);
        Shape {
            elem: Some(Box::new(elem)),
            ..Shape::of(Kind::List, len, weight)
        }
    }

    /// A map with named fields (an object literal).
    pub fn map(fields: BTreeMap<String, Shape>) -> Shape {
        let mut weight = 1u64;
        let mut key_len = 0;
        for (k, v) in &fields {
            weight = weight
                .saturating_add(v.weight)
                .saturating_add(k.len() as u64);
            key_len = key_len.max(k.len() as u64);
        }
        Shape {
            key_len,
            fields,
            ..Shape::of(Kind::Map, 0, weight)
        }
        .with_len_of_fields()
    }

    /// Anything of at most `weight` in size.
    pub fn any(weight: u64) -> Shape {
        Shape {
            key_len: weight,
            open: true,
            ..Shape::of(Kind::Any, weight, weight)
        }
    }

    fn of(kind: Kind, len: u64, weight: u64) -> Shape {
        Shape {
            kind,
            len,
            weight,
            key_len: 0,
            elem: None,
            fields: BTreeMap::new(),
            open: false,
        }
    }

    fn with_len_of_fields(mut self) -> Shape {
        self.len = self.len.max(self.fields.len() as u64);
        self
    }

    /// Whether it is (or may be) a list or map, whose traversal costs per element.
    pub fn is_collection(&self) -> bool {
        matches!(self.kind, Kind::List | Kind::Map | Kind::Any)
    }

    /// The bound of any element (list) or value (map).
    pub fn elem(&self) -> Shape {
        if let Some(e) = &self.elem {
            return (**e).clone();
        }
        let mut fields = self.fields.values();
        let joined = fields
            .next()
            .map(|first| fields.fold(first.clone(), |acc, f| acc.join(f)));
        match (joined, self.open) {
            (Some(j), true) => j.join(&Shape::any(self.weight)),
            (Some(j), false) => j,
            (None, true) => Shape::any(self.weight),
            (None, false) => Shape::scalar(),
        }
    }

    /// The bound of a map's field `name`.
    pub fn field(&self, name: &str) -> Shape {
        match self.fields.get(name) {
            Some(f) => f.clone(),
            None if self.elem.is_some() || self.open => self.elem(),
            // A field the value does not have: selecting it is an error, at no cost.
            None => Shape::scalar(),
        }
    }

    /// A map's keys, as the elements a comprehension over it sees.
    pub fn key(&self) -> Shape {
        Shape::string(self.key_len)
    }

    /// A bound of both.
    pub fn join(&self, other: &Shape) -> Shape {
        let elem = match (&self.elem, &other.elem) {
            (Some(a), Some(b)) => Some(Box::new(a.join(b))),
            (Some(a), None) | (None, Some(a)) => Some(a.clone()),
            (None, None) => None,
        };
        let mut fields = self.fields.clone();
        for (k, v) in &other.fields {
            let joined = match fields.get(k) {
                Some(mine) => mine.join(v),
                None => v.clone(),
            };
            fields.insert(k.clone(), joined);
        }
        Shape {
            kind: if self.kind == other.kind {
                self.kind
            } else {
                Kind::Any
            },
            len: self.len.max(other.len),
            weight: self.weight.max(other.weight),
            key_len: self.key_len.max(other.key_len),
            elem,
            fields,
            open: self.open || other.open,
        }
    }

    /// The bound of an object at hand: its real lengths.
    pub fn of_value(v: &Value) -> Shape {
        match v {
            Value::Null | Value::Bool(_) => Shape::scalar(),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Shape::int(i.unsigned_abs()),
                (None, Some(u)) => Shape::int(u),
                _ => Shape::scalar(),
            },
            Value::String(s) => Shape::string(s.len() as u64),
            Value::Array(items) => {
                let mut weight = 1u64;
                let mut elem: Option<Shape> = None;
                for i in items {
                    let s = Shape::of_value(i);
                    weight = weight.saturating_add(s.weight);
                    elem = Some(match elem {
                        Some(acc) => acc.join(&s),
                        None => s,
                    });
                }
                Shape {
                    elem: Some(Box::new(elem.unwrap_or_else(Shape::scalar))),
                    ..Shape::of(Kind::List, items.len() as u64, weight)
                }
            }
            Value::Object(m) => Shape::map(
                m.iter()
                    .map(|(k, v)| (k.clone(), Shape::of_value(v)))
                    .collect(),
            ),
        }
    }

    /// The bound of any value a schema admits, within the largest request.
    pub fn of_schema(s: &Props) -> Shape {
        if s.x_kubernetes_preserve_unknown_fields == Some(true)
            || s.x_kubernetes_int_or_string == Some(true)
        {
            return Shape::any(MAX_REQUEST_BYTES);
        }
        let bounded = |max: Option<i64>, min_elem: u64| {
            max.map_or(unbounded_items(min_elem), |m| m.max(0) as u64)
        };
        let shape = match s.type_.as_deref() {
            Some("string") => Shape::string(
                s.max_length
                    .map_or(MAX_REQUEST_BYTES, |m| m.max(0) as u64)
                    .min(MAX_REQUEST_BYTES),
            ),
            Some("integer") => Shape::int(match (s.minimum, s.maximum) {
                (Some(lo), Some(hi)) => lo.abs().max(hi.abs()) as u64,
                _ => i64::MAX as u64,
            }),
            Some("array") => {
                let elem = match &s.items {
                    Some(JSONSchemaPropsOrArray::Schema(p)) => Shape::of_schema(p),
                    Some(JSONSchemaPropsOrArray::Schemas(v)) => v
                        .first()
                        .map_or_else(|| Shape::any(MAX_REQUEST_BYTES), Shape::of_schema),
                    None => Shape::any(MAX_REQUEST_BYTES),
                };
                let len = bounded(s.max_items, min_size(&elem)).min(MAX_REQUEST_BYTES);
                Shape::list(len, elem)
            }
            Some("object") | None => {
                let fields: BTreeMap<String, Shape> = s
                    .properties
                    .iter()
                    .flatten()
                    .map(|(k, p)| (k.clone(), Shape::of_schema(p)))
                    .collect();
                let mut map = Shape::map(fields);
                match &s.additional_properties {
                    Some(JSONSchemaPropsOrBool::Schema(p)) => {
                        let elem = Shape::of_schema(p);
                        let len = bounded(s.max_properties, min_size(&elem).saturating_add(3));
                        map.len = len.min(MAX_REQUEST_BYTES);
                        map.key_len = MAX_REQUEST_BYTES;
                        map.weight = len.saturating_mul(elem.weight.saturating_add(3));
                        map.elem = Some(Box::new(elem));
                    }
                    Some(JSONSchemaPropsOrBool::Bool(true)) => map.open = true,
                    _ => {}
                }
                if s.x_kubernetes_embedded_resource == Some(true) {
                    map.open = true;
                }
                if s.type_.is_none() && s.properties.is_none() {
                    return Shape::any(MAX_REQUEST_BYTES);
                }
                map
            }
            _ => Shape::scalar(),
        };
        shape.capped()
    }

    /// No value weighs more than the largest request.
    fn capped(mut self) -> Shape {
        self.weight = self.weight.min(MAX_REQUEST_BYTES);
        self
    }
}

/// How many elements of `min_elem` bytes fit in the largest request (kube's estimate for
/// a list or map without maxItems/maxProperties).
pub fn unbounded_items(min_elem: u64) -> u64 {
    (MAX_REQUEST_BYTES - 2) / min_elem.saturating_add(1).max(1)
}

/// The fewest bytes a value of the shape takes in JSON.
fn min_size(s: &Shape) -> u64 {
    match s.kind {
        Kind::Str | Kind::List | Kind::Map => 2,
        Kind::Int => 1,
        Kind::Scalar | Kind::Any => 1,
    }
}
