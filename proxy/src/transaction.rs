//! One `nft -f -` transaction that takes the proxy's table from what is there to a wanted
//! [`Ruleset`] (pure). The kernel applies a file atomically: every packet sees the old
//! rules or the new ones, never a mixture, and a failing command changes nothing.
//!
//! - [`full`] rewrites everything: declares every object (`add` is idempotent), flushes
//!   every chain, map and (non-dynamic) set, fills them again, and deletes what is in the
//!   kernel but no longer wanted. Used at start, after an error, and periodically, so
//!   whatever someone did to the table is repaired. Affinity sets are never flushed, so
//!   clients keep their endpoint across a restart of the proxy; established flows keep
//!   their NAT in conntrack whatever the rules become.
//! - [`incremental`] writes only the difference from the ruleset last applied: new and
//!   changed chains, map and set elements added or removed, objects deleted; its size is
//!   proportional to what changed, not to the number of Services (kube's partial sync).
//!
//! Order inside a transaction: declarations, flushes and element deletions (so nothing
//! references what is about to go), rules and elements, then deletions of objects.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::ruleset::{Chain, Ruleset};

/// The names of the objects found in the kernel's table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    pub chains: BTreeSet<String>,
    pub sets: BTreeSet<String>,
    pub maps: BTreeSet<String>,
}

fn declare_chain(out: &mut String, table: &str, name: &str, c: &Chain) {
    match c.hook {
        Some(h) => writeln!(out, "add chain ip {table} {name} {{ {h} }}"),
        None => writeln!(out, "add chain ip {table} {name}"),
    }
    .ok();
}

fn add_rules(out: &mut String, table: &str, name: &str, c: &Chain) {
    for r in &c.rules {
        writeln!(out, "add rule ip {table} {name} {r}").ok();
    }
}

fn add_elements<'a>(out: &mut String, table: &str, name: &str, els: impl Iterator<Item = String>) {
    // Bounded lines: a set of 10,000 Services is many short commands, not one huge one.
    let els: Vec<String> = els.collect();
    for chunk in els.chunks(500) {
        writeln!(
            out,
            "add element ip {table} {name} {{ {} }}",
            chunk.join(", ")
        )
        .ok();
    }
}

fn delete_elements(out: &mut String, table: &str, name: &str, keys: Vec<&String>) {
    for chunk in keys.chunks(500) {
        let keys: Vec<&str> = chunk.iter().map(|k| k.as_str()).collect();
        writeln!(
            out,
            "delete element ip {table} {name} {{ {} }}",
            keys.join(", ")
        )
        .ok();
    }
}

/// Rewrites the table to `want`, deleting the objects of `existing` that `want` lacks.
pub fn full(table: &str, want: &Ruleset, existing: &Existing) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "add table ip {table} {{ comment \"flotilla proxy\"; }}"
    )
    .ok();
    for (name, c) in &want.chains {
        declare_chain(&mut out, table, name, c);
    }
    for (name, m) in &want.maps {
        writeln!(out, "add map ip {table} {name} {{ {} }}", m.decl).ok();
    }
    for (name, s) in &want.sets {
        writeln!(out, "add set ip {table} {name} {{ {} }}", s.decl).ok();
    }
    for name in want.chains.keys().chain(existing.chains.iter()) {
        writeln!(out, "flush chain ip {table} {name}").ok();
    }
    let stale_maps: Vec<&String> = existing
        .maps
        .iter()
        .filter(|m| !want.maps.contains_key(*m))
        .collect();
    for name in want.maps.keys().chain(stale_maps.iter().copied()) {
        writeln!(out, "flush map ip {table} {name}").ok();
    }
    for (name, s) in &want.sets {
        if !s.dynamic {
            writeln!(out, "flush set ip {table} {name}").ok();
        }
    }
    for (name, c) in &want.chains {
        add_rules(&mut out, table, name, c);
    }
    for (name, m) in &want.maps {
        add_elements(
            &mut out,
            table,
            name,
            m.elements.iter().map(|(k, v)| format!("{k} : {v}")),
        );
    }
    for (name, s) in &want.sets {
        if !s.dynamic {
            add_elements(&mut out, table, name, s.elements.iter().cloned());
        }
    }
    for name in existing
        .chains
        .iter()
        .filter(|c| !want.chains.contains_key(*c))
    {
        writeln!(out, "delete chain ip {table} {name}").ok();
    }
    for name in stale_maps {
        writeln!(out, "delete map ip {table} {name}").ok();
    }
    for name in existing.sets.iter().filter(|s| !want.sets.contains_key(*s)) {
        writeln!(out, "delete set ip {table} {name}").ok();
    }
    out
}

/// The commands that take the table from `have` (the ruleset last applied with
/// success) to `want`; empty when they are equal.
pub fn incremental(table: &str, have: &Ruleset, want: &Ruleset) -> String {
    let mut out = String::new();
    let new_chains: Vec<(&String, &Chain)> = want
        .chains
        .iter()
        .filter(|(n, _)| !have.chains.contains_key(*n))
        .collect();
    let changed: Vec<(&String, &Chain)> = want
        .chains
        .iter()
        .filter(|(n, c)| have.chains.get(*n).is_some_and(|h| h != *c))
        .collect();
    let gone: Vec<&String> = have
        .chains
        .keys()
        .filter(|n| !want.chains.contains_key(*n))
        .collect();
    for (name, c) in &new_chains {
        declare_chain(&mut out, table, name, c);
    }
    for (name, m) in &want.maps {
        if !have.maps.contains_key(name) {
            writeln!(out, "add map ip {table} {name} {{ {} }}", m.decl).ok();
        }
    }
    for (name, s) in &want.sets {
        if !have.sets.contains_key(name) {
            writeln!(out, "add set ip {table} {name} {{ {} }}", s.decl).ok();
        }
    }
    for name in changed.iter().map(|(n, _)| *n).chain(gone.iter().copied()) {
        writeln!(out, "flush chain ip {table} {name}").ok();
    }
    // Elements removed or given another verdict go first.
    for (name, m) in &have.maps {
        if let Some(w) = want.maps.get(name) {
            let stale: Vec<&String> = m
                .elements
                .iter()
                .filter(|(k, v)| w.elements.get(*k) != Some(*v))
                .map(|(k, _)| k)
                .collect();
            delete_elements(&mut out, table, name, stale);
        }
    }
    for (name, s) in &have.sets {
        if let Some(w) = want.sets.get(name) {
            if !s.dynamic {
                let stale: Vec<&String> = s.elements.difference(&w.elements).collect();
                delete_elements(&mut out, table, name, stale);
            }
        }
    }
    for (name, c) in new_chains.iter().chain(changed.iter()) {
        add_rules(&mut out, table, name, c);
    }
    for (name, w) in &want.maps {
        let h = have.maps.get(name);
        add_elements(
            &mut out,
            table,
            name,
            w.elements
                .iter()
                .filter(|(k, v)| h.and_then(|h| h.elements.get(*k)) != Some(*v))
                .map(|(k, v)| format!("{k} : {v}")),
        );
    }
    for (name, w) in &want.sets {
        if w.dynamic {
            continue;
        }
        let h = have.sets.get(name);
        add_elements(
            &mut out,
            table,
            name,
            w.elements
                .iter()
                .filter(|e| !h.is_some_and(|h| h.elements.contains(*e)))
                .cloned(),
        );
    }
    for name in gone {
        writeln!(out, "delete chain ip {table} {name}").ok();
    }
    for name in have.maps.keys().filter(|n| !want.maps.contains_key(*n)) {
        writeln!(out, "delete map ip {table} {name}").ok();
    }
    for name in have.sets.keys().filter(|n| !want.sets.contains_key(*n)) {
        writeln!(out, "delete set ip {table} {name}").ok();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::{Map, Set};
    use std::collections::BTreeMap;

    fn rs(chains: &[(&str, &[&str])], map: &[(&str, &str)], set: &[&str]) -> Ruleset {
        let mut r = Ruleset::default();
        for (n, rules) in chains {
            r.chains.insert(
                n.to_string(),
                Chain {
                    hook: None,
                    rules: rules.iter().map(|s| s.to_string()).collect(),
                },
            );
        }
        r.maps.insert(
            "m".into(),
            Map {
                decl: "type inet_proto . inet_service : verdict;",
                elements: map
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            },
        );
        r.sets.insert(
            "s".into(),
            Set {
                decl: "type ipv4_addr;".into(),
                elements: set.iter().map(|s| s.to_string()).collect(),
                dynamic: false,
            },
        );
        r
    }

    #[test]
    fn nothing_changed_is_an_empty_transaction() {
        let a = rs(
            &[("c", &["accept"])],
            &[("tcp . 80", "goto c")],
            &["10.0.0.1"],
        );
        assert_eq!(incremental("t", &a, &a), "");
    }

    #[test]
    fn incremental_writes_only_the_difference_in_a_safe_order() {
        let have = rs(
            &[
                ("a", &["dnat to 1.1.1.1"]),
                ("b", &["dnat to 2.2.2.2"]),
                ("keep", &["accept"]),
            ],
            &[("tcp . 80", "goto a"), ("tcp . 81", "goto b")],
            &["10.0.0.1", "10.0.0.2"],
        );
        let want = rs(
            &[
                ("a", &["dnat to 1.1.1.9"]),
                ("c", &["dnat to 3.3.3.3"]),
                ("keep", &["accept"]),
            ],
            &[("tcp . 80", "goto a"), ("tcp . 82", "goto c")],
            &["10.0.0.1", "10.0.0.3"],
        );
        let t = incremental("t", &have, &want);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines,
            vec![
                "add chain ip t c",
                "flush chain ip t a",
                "flush chain ip t b",
                "delete element ip t m { tcp . 81 }",
                "delete element ip t s { 10.0.0.2 }",
                "add rule ip t c dnat to 3.3.3.3",
                "add rule ip t a dnat to 1.1.1.9",
                "add element ip t m { tcp . 82 : goto c }",
                "add element ip t s { 10.0.0.3 }",
                "delete chain ip t b",
            ]
        );
        assert!(!t.contains("keep"), "unchanged chains are not touched");
    }

    #[test]
    fn a_changed_verdict_is_deleted_then_added() {
        let have = rs(&[], &[("tcp . 80", "goto reject-chain")], &[]);
        let want = rs(&[], &[("tcp . 80", "goto svc")], &[]);
        let t = incremental("t", &have, &want);
        assert_eq!(
            t,
            "delete element ip t m { tcp . 80 }\nadd element ip t m { tcp . 80 : goto svc }\n"
        );
    }

    #[test]
    fn full_flushes_refills_and_deletes_strays() {
        let want = rs(
            &[("a", &["accept"])],
            &[("tcp . 80", "goto a")],
            &["10.0.0.1"],
        );
        let existing = Existing {
            chains: ["a", "old"].iter().map(|s| s.to_string()).collect(),
            sets: ["s", "affinity-old"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            maps: ["m", "oldmap"].iter().map(|s| s.to_string()).collect(),
        };
        let t = full("t", &want, &existing);
        let pos = |s: &str| t.find(s).unwrap_or_else(|| panic!("{s} missing in\n{t}"));
        assert!(pos("add table ip t") < pos("add chain ip t a"));
        assert!(pos("flush chain ip t old") < pos("delete chain ip t old"));
        assert!(pos("flush map ip t oldmap") < pos("delete map ip t oldmap"));
        assert!(pos("flush map ip t m") < pos("add element ip t m { tcp . 80 : goto a }"));
        assert!(pos("add rule ip t a accept") < pos("delete chain ip t old"));
        pos("delete set ip t affinity-old");
        assert!(!t.contains("delete chain ip t a\n"));
    }

    #[test]
    fn dynamic_sets_keep_their_elements() {
        let mut want = rs(&[], &[], &[]);
        want.sets.insert(
            "affinity-x".into(),
            Set {
                decl: "type ipv4_addr; flags dynamic,timeout; timeout 10s;".into(),
                elements: Default::default(),
                dynamic: true,
            },
        );
        let t = full("t", &want, &Existing::default());
        assert!(t.contains("add set ip t affinity-x"));
        assert!(!t.contains("flush set ip t affinity-x"));
    }

    #[test]
    fn many_elements_are_split_into_bounded_commands() {
        let ips: Vec<String> = (0..1200)
            .map(|i| format!("10.0.{}.{}", i / 250, i % 250))
            .collect();
        let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
        let want = rs(&[], &[], &refs);
        let t = incremental("t", &rs(&[], &[], &[]), &want);
        assert_eq!(
            t.lines()
                .filter(|l| l.starts_with("add element ip t s"))
                .count(),
            3
        );
    }
}
