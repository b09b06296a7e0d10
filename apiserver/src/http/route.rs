//! Request paths and query strings parsed into typed routes and options. Pure.

use std::collections::HashMap;

/// Where a path leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/healthz`, `/livez`: the process serves and a kvstore quorum answers.
    Health,
    /// `/readyz`: as `/livez`, and the watch cache has its first full list.
    Ready,
    Version,
    /// `/metrics`: Prometheus text.
    Metrics,
    CoreVersions,
    Groups,
    Group(String),
    ResourceList {
        group: String,
        version: String,
    },
    OpenApiV2,
    OpenApiV3Root,
    OpenApiV3 {
        group: String,
        version: String,
    },
    Resource(ResourcePath),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

/// Percent-encodes a query value.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn percent_decode(s: &str) -> String {
    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a request path; None for paths nothing serves.
pub fn parse(path: &str) -> Option<Route> {
    let path = path.trim_end_matches('/');
    let segs: Vec<String> = path.split('/').skip(1).map(percent_decode).collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["readyz", ..] => Some(Route::Ready),
        ["healthz" | "livez", ..] => Some(Route::Health),
        ["version"] => Some(Route::Version),
        ["metrics"] => Some(Route::Metrics),
        ["api"] => Some(Route::CoreVersions),
        ["apis"] => Some(Route::Groups),
        ["apis", g] => Some(Route::Group(g.to_string())),
        ["openapi", "v2"] => Some(Route::OpenApiV2),
        ["openapi", "v3"] => Some(Route::OpenApiV3Root),
        ["openapi", "v3", "api", v] => Some(Route::OpenApiV3 {
            group: String::new(),
            version: v.to_string(),
        }),
        ["openapi", "v3", "apis", g, v] => Some(Route::OpenApiV3 {
            group: g.to_string(),
            version: v.to_string(),
        }),
        ["api", v] => Some(Route::ResourceList {
            group: String::new(),
            version: v.to_string(),
        }),
        ["apis", g, v] => Some(Route::ResourceList {
            group: g.to_string(),
            version: v.to_string(),
        }),
        ["api", v, rest @ ..] => resource("", v, rest),
        ["apis", g, v, rest @ ..] => resource(g, v, rest),
        _ => None,
    }
}

fn resource(group: &str, version: &str, rest: &[&str]) -> Option<Route> {
    let mk = |plural: &str, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        if plural.is_empty()
            || name.is_some_and(str::is_empty)
            || namespace.is_some_and(str::is_empty)
        {
            return None;
        }
        Some(Route::Resource(ResourcePath {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            namespace: namespace.map(Into::into),
            name: name.map(Into::into),
            sub: sub.map(Into::into),
        }))
    };
    match rest {
        ["namespaces", ns, sub @ ("status" | "finalize")] => {
            mk("namespaces", None, Some(ns), Some(sub))
        }
        ["namespaces", ns, plural] => mk(plural, Some(ns), None, None),
        ["namespaces", ns, plural, name] => mk(plural, Some(ns), Some(name), None),
        ["namespaces", ns, plural, name, sub] => mk(plural, Some(ns), Some(name), Some(sub)),
        [plural] => mk(plural, None, None, None),
        [plural, name] => mk(plural, None, Some(name), None),
        [plural, name, sub] => mk(plural, None, Some(name), Some(sub)),
        _ => None,
    }
}

/// Query parameters; a repeated key keeps its first value.
pub fn query(q: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(&k.replace('+', " "));
        let v = percent_decode(&v.replace('+', " "));
        out.entry(k).or_insert(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(
        g: &str,
        p: &str,
        ns: Option<&str>,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> Option<Route> {
        Some(Route::Resource(ResourcePath {
            group: g.into(),
            version: "v1".into(),
            plural: p.into(),
            namespace: ns.map(Into::into),
            name: name.map(Into::into),
            sub: sub.map(Into::into),
        }))
    }

    #[test]
    fn paths() {
        assert_eq!(parse("/api/v1/pods"), res("", "pods", None, None, None));
        assert_eq!(
            parse("/api/v1/namespaces/default/pods"),
            res("", "pods", Some("default"), None, None)
        );
        assert_eq!(
            parse("/api/v1/namespaces/default/pods/web/status"),
            res("", "pods", Some("default"), Some("web"), Some("status"))
        );
        assert_eq!(
            parse("/api/v1/namespaces/default"),
            res("", "namespaces", None, Some("default"), None)
        );
        assert_eq!(
            parse("/api/v1/namespaces/kube-system/finalize"),
            res(
                "",
                "namespaces",
                None,
                Some("kube-system"),
                Some("finalize")
            )
        );
        assert_eq!(
            parse("/api/v1/namespaces/kube-system/status"),
            res("", "namespaces", None, Some("kube-system"), Some("status"))
        );
        assert_eq!(
            parse("/apis/apps/v1/namespaces/x/deployments/d"),
            res("apps", "deployments", Some("x"), Some("d"), None)
        );
        assert_eq!(
            parse("/api/v1/nodes/n1"),
            res("", "nodes", None, Some("n1"), None)
        );
        assert_eq!(
            parse("/api/v1/"),
            Some(Route::ResourceList {
                group: "".into(),
                version: "v1".into()
            })
        );
        assert_eq!(parse("/apis"), Some(Route::Groups));
        assert_eq!(parse("/healthz/etcd"), Some(Route::Health));
        assert_eq!(parse("/nope"), None);
        assert_eq!(parse("/api/v1/namespaces/a/pods/b/c/d"), None);
    }

    #[test]
    fn queries() {
        let q = query(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&limit=5&limit=6",
        ));
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["watch"], "1");
        assert_eq!(q["limit"], "5");
        assert!(query(None).is_empty());
    }
}
