//! What evaluating a CEL expression can cost at most, estimated from its syntax tree and
//! bounds of its variables (`shape.rs`), before it runs. The interpreter (the `cel` crate)
//! counts nothing while it runs, so this estimate is the only guard: with the bounds of a
//! CRD's schema it refuses a rule kube's limits would refuse (StaticEstimatedCostLimit per
//! rule, StaticEstimatedCRDCostLimit per CRD); with the bounds of the object at hand it
//! refuses, before evaluation, what would pass kube's per-call limit or the budget of one
//! request. The units follow cel-go's: one per call, select and iteration; a tenth per
//! byte a string function reads. Where this interpreter copies (a list grown by `+`, as
//! `map` and `filter` grow theirs), the copy is counted: kube's interpreter appends in
//! place, this one does not. Every sum and product saturates. Pure.

use std::collections::BTreeMap;

use kube_cel::cel::common::ast::{operators, EntryExpr, Expr, IdedExpr, LiteralValue};

use super::shape::{Kind, Shape};

/// kube's limit on one evaluation (celconfig.PerCallLimit).
pub const PER_CALL_LIMIT: u64 = 1_000_000;
/// kube's budget of all rules of one request (celconfig.RuntimeCELCostBudget).
pub const RUNTIME_BUDGET: u64 = 10_000_000;
/// kube's limit on one rule's estimate at CRD creation, times the number of times it
/// can run in one object (StaticEstimatedCostLimit).
pub const STATIC_RULE_LIMIT: u64 = 10_000_000;
/// kube's limit on all rules of a CRD together (StaticEstimatedCRDCostLimit).
pub const STATIC_CRD_LIMIT: u64 = 100_000_000;

/// The variables in scope, innermost last.
#[derive(Default)]
pub struct Scope {
    vars: Vec<(String, Shape)>,
}

impl Scope {
    pub fn new() -> Scope {
        Scope::default()
    }

    pub fn with(mut self, name: &str, shape: Shape) -> Scope {
        self.vars.push((name.to_string(), shape));
        self
    }

    pub fn push(&mut self, name: &str, shape: Shape) {
        self.vars.push((name.to_string(), shape));
    }

    fn get(&self, name: &str) -> Option<&Shape> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }

    fn pop(&mut self, n: usize) {
        let keep = self.vars.len().saturating_sub(n);
        self.vars.truncate(keep);
    }
}

/// An evaluation's cost bound and its result's bound.
pub struct Estimate {
    pub cost: u64,
    pub shape: Shape,
}

/// The estimate of an expression with the variables of `scope`.
pub fn estimate(e: &IdedExpr, scope: &mut Scope) -> Estimate {
    match &e.expr {
        Expr::Literal(l) => Estimate {
            cost: 0,
            shape: literal(l),
        },
        Expr::Ident(name) => Estimate {
            cost: 1,
            shape: scope.get(name).cloned().unwrap_or_else(Shape::scalar),
        },
        Expr::Select(sel) => {
            let operand = estimate(&sel.operand, scope);
            Estimate {
                cost: operand.cost.saturating_add(1),
                shape: if sel.test {
                    Shape::scalar()
                } else {
                    operand.shape.field(&sel.field)
                },
            }
        }
        Expr::List(list) => {
            let mut cost = 1u64;
            let mut elem: Option<Shape> = None;
            for el in &list.elements {
                let est = estimate(el, scope);
                cost = cost.saturating_add(est.cost);
                elem = Some(match elem {
                    Some(acc) => acc.join(&est.shape),
                    None => est.shape,
                });
            }
            Estimate {
                cost,
                shape: Shape::list(
                    list.elements.len() as u64,
                    elem.unwrap_or_else(Shape::scalar),
                ),
            }
        }
        Expr::Map(map) => {
            let mut cost = 1u64;
            let mut fields = BTreeMap::new();
            let mut dynamic: Option<Shape> = None;
            for entry in &map.entries {
                match &entry.expr {
                    EntryExpr::MapEntry(m) => {
                        let key = estimate(&m.key, scope);
                        let value = estimate(&m.value, scope);
                        cost = cost.saturating_add(key.cost).saturating_add(value.cost);
                        match &m.key.expr {
                            Expr::Literal(LiteralValue::String(s)) => {
                                fields.insert(s.inner().to_string(), value.shape);
                            }
                            _ => {
                                let joined = match dynamic {
                                    Some(d) => d.join(&value.shape),
                                    None => value.shape,
                                };
                                let key_shape = Shape::any(key.shape.weight);
                                dynamic = Some(joined.join(&key_shape));
                            }
                        }
                    }
                    EntryExpr::StructField(_) => return unsupported(),
                }
            }
            let mut shape = Shape::map(fields);
            if let Some(d) = dynamic {
                shape = shape.join(&Shape::any(d.weight));
            }
            Estimate { cost, shape }
        }
        Expr::Comprehension(c) => {
            let range = estimate(&c.iter_range, scope);
            let init = estimate(&c.accu_init, scope);
            let n = range.shape.len;
            let (first, second) = if range.shape.kind == Kind::Map {
                (range.shape.key(), range.shape.elem())
            } else if c.iter_var2.is_some() {
                (Shape::int(n), range.shape.elem())
            } else {
                (range.shape.elem(), range.shape.elem())
            };
            let mut vars = 2;
            scope.push(&c.iter_var, first);
            if let Some(v2) = &c.iter_var2 {
                scope.push(v2, second);
                vars += 1;
            }
            // The accumulator after one step, then after all `n`: a list (or string) that
            // grows by the same each step.
            scope.push(&c.accu_var, init.shape.clone());
            let one = estimate(&c.loop_step, scope).shape;
            let growth = one.len.saturating_sub(init.shape.len);
            let mut last = init.shape.join(&one);
            last.len = init.shape.len.saturating_add(growth.saturating_mul(n));
            last.weight = init.shape.weight.saturating_add(
                one.weight
                    .saturating_sub(init.shape.weight)
                    .saturating_mul(n),
            );
            scope.pop(1);
            scope.push(&c.accu_var, last);
            let step = estimate(&c.loop_step, scope);
            let cond = estimate(&c.loop_cond, scope);
            let result = estimate(&c.result, scope);
            scope.pop(vars);
            let per_iteration = step.cost.saturating_add(cond.cost).saturating_add(1);
            Estimate {
                cost: range
                    .cost
                    .saturating_add(init.cost)
                    .saturating_add(n.saturating_mul(per_iteration))
                    .saturating_add(result.cost),
                shape: result.shape,
            }
        }
        Expr::Call(call) => {
            let target = call.target.as_ref().map(|t| estimate(t, scope));
            let args: Vec<Estimate> = call.args.iter().map(|a| estimate(a, scope)).collect();
            let mut cost = 1u64;
            for a in target.iter().chain(&args) {
                cost = cost.saturating_add(a.cost);
            }
            let name = qualified(call.func_name.as_str(), call.target.as_deref());
            let operands: Vec<&Shape> = target
                .iter()
                .filter(|_| !name.contains('.'))
                .chain(&args)
                .map(|a| &a.shape)
                .collect();
            let (extra, shape) = call_cost(&name, &operands);
            Estimate {
                cost: cost.saturating_add(extra),
                shape,
            }
        }
        Expr::Struct(_) | Expr::Unspecified => unsupported(),
    }
}

/// `lists.range(n)` parses as a call of `range` on the identifier `lists`.
fn qualified(func: &str, target: Option<&IdedExpr>) -> String {
    match target.map(|t| &t.expr) {
        Some(Expr::Ident(ns)) if NAMESPACES.contains(&ns.as_str()) => format!("{ns}.{func}"),
        _ => func.to_string(),
    }
}

const NAMESPACES: [&str; 5] = ["lists", "strings", "math", "sets", "base64"];

fn unsupported() -> Estimate {
    Estimate {
        cost: u64::MAX,
        shape: Shape::scalar(),
    }
}

fn literal(l: &LiteralValue) -> Shape {
    match l {
        LiteralValue::Int(i) => Shape::int(i.inner().unsigned_abs()),
        LiteralValue::UInt(u) => Shape::int(*u.inner()),
        LiteralValue::String(s) => Shape::string(s.inner().len() as u64),
        LiteralValue::Bytes(b) => Shape::string(b.inner().len() as u64),
        _ => Shape::scalar(),
    }
}

/// A tenth per byte read, at least one.
fn read(bytes: u64) -> u64 {
    bytes / 10 + 1
}

/// The cost of a call beyond its operands', and its result's bound.
fn call_cost(name: &str, ops: &[&Shape]) -> (u64, Shape) {
    let scalar = Shape::scalar;
    let a = ops.first().copied();
    let b = ops.get(1).copied();
    let len = |s: Option<&Shape>| s.map_or(0, |s| s.len);
    let weight_sum = ops.iter().fold(0u64, |w, s| w.saturating_add(s.weight));
    match name {
        operators::LOGICAL_AND
        | operators::LOGICAL_OR
        | operators::LOGICAL_NOT
        | operators::NOT_STRICTLY_FALSE
        | "has"
        | "type" => (0, scalar()),
        operators::CONDITIONAL => {
            let joined = match (ops.get(1), ops.get(2)) {
                (Some(x), Some(y)) => x.join(y),
                _ => Shape::any(weight_sum),
            };
            (0, joined)
        }
        operators::EQUALS | operators::NOT_EQUALS => {
            let smaller = ops.iter().map(|s| s.weight).min().unwrap_or(0);
            (read(smaller), scalar())
        }
        operators::LESS
        | operators::LESS_EQUALS
        | operators::GREATER
        | operators::GREATER_EQUALS => {
            let smaller = ops.iter().map(|s| s.len).min().unwrap_or(0);
            (read(smaller), scalar())
        }
        operators::ADD => match (a, b) {
            (Some(x), Some(y)) if x.kind == Kind::Int && y.kind == Kind::Int => {
                (0, Shape::int(x.len.saturating_add(y.len)))
            }
            (Some(x), Some(y)) if x.kind == Kind::Str && y.kind == Kind::Str => {
                let n = x.len.saturating_add(y.len);
                (read(n), Shape::string(n))
            }
            (Some(x), Some(y)) => {
                // Lists are copied; anything else of unknown kind is bounded as one.
                let mut joined = x.join(y);
                joined.len = x.len.saturating_add(y.len);
                joined.weight = x.weight.saturating_add(y.weight);
                (joined.len.saturating_add(read(joined.weight)), joined)
            }
            _ => (0, scalar()),
        },
        operators::SUBSTRACT => (0, Shape::int(len(a).saturating_add(len(b)))),
        operators::MULTIPLY => (0, Shape::int(len(a).saturating_mul(len(b).max(1)))),
        operators::DIVIDE | operators::MODULO | operators::NEGATE => (0, Shape::int(len(a))),
        operators::INDEX | operators::OPT_INDEX => (1, a.map_or_else(scalar, |x| x.elem())),
        operators::OPT_SELECT => (1, a.map_or_else(scalar, |x| x.elem())),
        operators::IN => match b {
            Some(coll) if coll.kind == Kind::Map => (1, scalar()),
            Some(coll) => {
                let each = read(a.map_or(0, |x| x.weight));
                (coll.len.saturating_mul(each), scalar())
            }
            None => (0, scalar()),
        },
        "size" => (1, Shape::int(len(a))),
        "lists.range" => {
            let n = a
                .filter(|x| x.kind == Kind::Int)
                .map_or(u64::MAX, |x| x.len);
            (n, Shape::list(n, Shape::int(n)))
        }
        "matches" | "find" | "contains" | "startsWith" | "endsWith" | "indexOf" | "lastIndexOf"
        | "charAt" | "isURL" | "isIP" | "isCIDR" | "isQuantity" | "isSemver" | "sets.contains"
        | "sets.equivalent" | "sets.intersects" => {
            if a.is_some_and(|x| x.kind == Kind::List) {
                // List operations compare every element with every other.
                (
                    len(a).saturating_mul(len(b).max(1)).saturating_add(1),
                    scalar_or_int(name, len(a)),
                )
            } else {
                (
                    read(len(a).saturating_add(len(b))),
                    scalar_or_int(name, len(a)),
                )
            }
        }
        "findAll" | "split" => {
            let s = len(a);
            (read(s), Shape::list(s.saturating_add(1), Shape::string(s)))
        }
        "replace" => {
            let s = len(a);
            let with = ops.get(2).map_or(0, |x| x.len);
            let out = s.saturating_mul(with.max(1)).saturating_add(with);
            (read(out), Shape::string(out))
        }
        "join" => {
            let el = a.map_or(0, |x| x.elem().len);
            let sep = len(b);
            let out = len(a).saturating_mul(el.saturating_add(sep));
            (read(out), Shape::string(out))
        }
        "lowerAscii" | "upperAscii" | "trim" | "substring" | "reverse" | "strings.quote"
        | "base64.encode" | "base64.decode" | "string" | "bytes" => {
            let n = a
                .map_or(0, |x| x.weight)
                .saturating_mul(2)
                .saturating_add(2);
            let shape = if a.is_some_and(|x| x.kind == Kind::List) {
                a.map_or_else(scalar, |x| x.clone())
            } else {
                Shape::string(n)
            };
            (read(n).saturating_add(len(a)), shape)
        }
        "sort" | "distinct" | "slice" | "first" | "last" | "sum" | "min" | "max" | "isSorted"
        | "math.greatest" | "math.least" => {
            let n = len(a);
            let shape = match name {
                "sort" | "distinct" | "slice" => a.map_or_else(scalar, |x| x.clone()),
                _ => a.map_or_else(scalar, |x| {
                    let e = x.elem();
                    let mut s = Shape::int(e.len.saturating_mul(n));
                    s.kind = Kind::Any;
                    s.join(&e)
                }),
            };
            (n.saturating_mul(n).saturating_add(1), shape)
        }
        "flatten" => {
            let e = a.map_or_else(scalar, |x| x.elem());
            let n = len(a).saturating_mul(e.len.max(1));
            (n.saturating_add(1), Shape::list(n, e.elem().join(&e)))
        }
        "int" | "uint" | "double" | "bool" | "dyn" | "duration" | "timestamp" | "quantity"
        | "url" | "ip" | "cidr" | "semver" | "format" => {
            let out = weight_sum.saturating_mul(2).saturating_add(2);
            let shape = if name == "int" || name == "uint" {
                Shape::int(i64::MAX as u64)
            } else if name == "dyn" {
                a.map_or_else(scalar, |x| x.clone())
            } else {
                Shape::any(out)
            };
            (read(out), shape)
        }
        _ => {
            // A function this estimate does not know: it reads its operands once and
            // returns at most twice what it was given.
            let out = weight_sum.saturating_mul(2).saturating_add(2);
            (read(out), Shape::any(out))
        }
    }
}

fn scalar_or_int(name: &str, n: u64) -> Shape {
    if name.ends_with("IndexOf") || name == "indexOf" {
        Shape::int(n)
    } else if name == "charAt" || name == "find" {
        Shape::string(n)
    } else {
        Shape::scalar()
    }
}

/// kube's words for an estimate over a limit: "more than 100x", "1.234567x" below 1.5x
/// (Go's %f), else one decimal.
pub fn exceeds_message(what: &str, cost: u64, limit: u64) -> String {
    let factor = cost as f64 / limit as f64;
    let factor = if factor > 100.0 {
        "more than 100x".to_string()
    } else if factor < 1.5 {
        format!("{factor:.6}x")
    } else {
        format!("{factor:.1}x")
    };
    format!(
        "{what} exceeds budget by factor of {factor} (try simplifying the rule, or adding \
         maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )
}

/// Expression nodes the interpreter cannot evaluate (it panics on a struct literal):
/// refused when the expression is compiled.
pub fn unsupported_syntax(e: &IdedExpr) -> Option<&'static str> {
    match &e.expr {
        Expr::Struct(_) => Some("message construction is not supported"),
        Expr::Unspecified => Some("an empty expression"),
        Expr::Literal(_) | Expr::Ident(_) => None,
        Expr::Select(s) => unsupported_syntax(&s.operand),
        Expr::List(l) => l.elements.iter().find_map(unsupported_syntax),
        Expr::Map(m) => m.entries.iter().find_map(|entry| match &entry.expr {
            EntryExpr::MapEntry(me) => {
                unsupported_syntax(&me.key).or_else(|| unsupported_syntax(&me.value))
            }
            EntryExpr::StructField(_) => Some("message construction is not supported"),
        }),
        Expr::Call(c) => c
            .target
            .as_deref()
            .and_then(unsupported_syntax)
            .or_else(|| c.args.iter().find_map(unsupported_syntax)),
        Expr::Comprehension(c) => [
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ]
        .into_iter()
        .find_map(unsupported_syntax),
    }
}

#[cfg(test)]
#[path = "cost_tests.rs"]
mod tests;
