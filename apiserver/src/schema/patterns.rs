//! The `pattern` keyword: regular expressions compiled once and kept (a schema's patterns
//! are few and checked on every write). The `regex` crate has RE2's syntax and guarantees
//! as Go's `regexp` (linear time, no backreferences), so a pattern means what it means in
//! kube; it matches anywhere in the string unless anchored, as `regexp.MatchString`.

use regex::Regex;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Patterns kept at most; past it the cache starts again (patterns come from CRDs, so a
/// cluster has few, but a stream of CRD updates must not grow memory without bound).
const MAX_KEPT: usize = 4096;

type Compiled = Result<Arc<Regex>, String>;

fn cache() -> &'static Mutex<HashMap<String, Compiled>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Compiled>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The pattern compiled, or why it does not compile.
pub fn compile(pattern: &str) -> Compiled {
    let mut kept = cache().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = kept.get(pattern) {
        return c.clone();
    }
    if kept.len() >= MAX_KEPT {
        kept.clear();
    }
    let c = Regex::new(pattern).map(Arc::new).map_err(|e| match e {
        regex::Error::Syntax(s) => s.lines().last().unwrap_or_default().trim().to_string(),
        other => other.to_string(),
    });
    kept.insert(pattern.to_string(), c.clone());
    c
}

/// Whether `text` matches `pattern`; Err when the pattern does not compile.
pub fn is_match(pattern: &str, text: &str) -> Result<bool, String> {
    compile(pattern).map(|r| r.is_match(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unanchored_as_go_and_bad_patterns_say_why() {
        assert_eq!(is_match("b+", "abbc"), Ok(true));
        assert_eq!(is_match("^b+$", "abbc"), Ok(false));
        assert_eq!(
            is_match(r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$", "every minute"),
            Ok(false)
        );
        assert_eq!(
            is_match(r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$", "* * * * */5"),
            Ok(true)
        );
        assert!(is_match("a(", "a").is_err());
        // Compiled once: the same Arc comes back.
        let (a, b) = (compile("x+").unwrap(), compile("x+").unwrap());
        assert!(Arc::ptr_eq(&a, &b));
    }
}
