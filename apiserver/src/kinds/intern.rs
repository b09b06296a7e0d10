//! Names of kinds registered while the server runs (custom resources), as the
//! `&'static str`s the kind table and error types hold: each distinct string is leaked
//! once and shared after. The leak is bounded by the distinct names ever defined (CRD
//! names, groups, versions, JSON pointers of scale paths), not by requests.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

pub fn intern(s: &str) -> &'static str {
    static KEPT: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut kept = KEPT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(k) = kept.get(s) {
        return k;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    kept.insert(leaked);
    leaked
}

/// A list of names, interned as one slice (short names, categories).
pub fn intern_list(items: &[String]) -> &'static [&'static str] {
    if items.is_empty() {
        return &[];
    }
    let names: Vec<&'static str> = items.iter().map(|s| intern(s)).collect();
    // Interned by their joined form, so the same list is leaked once.
    static LISTS: OnceLock<Mutex<std::collections::HashMap<String, &'static [&'static str]>>> =
        OnceLock::new();
    let key = items.join("\u{0}");
    let mut lists = LISTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    lists
        .entry(key)
        .or_insert_with(|| Box::leak(names.into_boxed_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_string() {
        let a = intern(&"crontabs".to_string());
        let b = intern("crontabs");
        assert!(std::ptr::eq(a, b));
        let l1 = intern_list(&["ct".into(), "cts".into()]);
        let l2 = intern_list(&["ct".into(), "cts".into()]);
        assert!(std::ptr::eq(l1, l2));
        assert_eq!(l1, &["ct", "cts"]);
        assert!(intern_list(&[]).is_empty());
    }
}
