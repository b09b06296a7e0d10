//! Authorization on the agent's port, as the kubelet's: a request is an action on this
//! node's Node (`attributes`, the kubelet's `NewNodeAuthorizerAttributesGetter`), which
//! the apiserver decides (`component_base::secure::authz`), and refusals in the kubelet's
//! words.

use component_base::secure::{Attributes, User};
use hyper::Method;

/// Whether `path` is `prefix` or below it.
fn is_subpath(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The kubelet's attributes of a request: the verb from the method, resource `nodes`, this
/// node's name, and subresource `stats`, `metrics` or `log` under those paths, `proxy` for
/// everything else (`/containerLogs/...` included).
pub fn attributes(method: &Method, path: &str, node: &str) -> Attributes {
    let verb = match *method {
        Method::POST => "create",
        Method::GET => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    };
    let subresource = if is_subpath(path, "/stats") {
        "stats"
    } else if is_subpath(path, "/metrics") {
        "metrics"
    } else if is_subpath(path, "/logs") {
        "log"
    } else {
        "proxy"
    };
    Attributes::Resource {
        verb: verb.to_string(),
        resource: "nodes".to_string(),
        subresource: subresource.to_string(),
        name: node.to_string(),
    }
}

/// `(verb, resource, subresource)` of the kubelet's messages.
fn parts(a: &Attributes) -> (&str, &str, &str) {
    match a {
        Attributes::Resource {
            verb,
            resource,
            subresource,
            ..
        } => (verb, resource, subresource),
        Attributes::NonResource { verb, path } => (verb, path, ""),
    }
}

/// The kubelet's 403 body.
pub fn forbidden(user: &User, a: &Attributes) -> String {
    let (verb, resource, sub) = parts(a);
    format!(
        "Forbidden (user={}, verb={verb}, resource={resource}, subresource(s)=[{sub}])",
        user.name
    )
}

/// The kubelet's 500 body when the apiserver could not be asked.
pub fn error(user: &User, a: &Attributes) -> String {
    let (verb, resource, sub) = parts(a);
    format!(
        "Authorization error (user={}, verb={verb}, resource={resource}, subresource(s)=[{sub}])",
        user.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> User {
        User {
            name: name.into(),
            uid: String::new(),
            groups: vec!["system:authenticated".into()],
        }
    }

    #[test]
    fn requests_map_to_the_kubelets_attributes() {
        let a = attributes(&Method::GET, "/containerLogs/default/web/c", "n1");
        assert_eq!(
            a,
            Attributes::Resource {
                verb: "get".into(),
                resource: "nodes".into(),
                subresource: "proxy".into(),
                name: "n1".into(),
            }
        );
        assert_eq!(
            attributes(&Method::POST, "/exec/a/b/c", "n1").verb(),
            "create"
        );
        assert_eq!(attributes(&Method::DELETE, "/x", "n1").verb(), "delete");
        assert_eq!(attributes(&Method::HEAD, "/x", "n1").verb(), "");
        for (path, sub) in [
            ("/stats", "stats"),
            ("/stats/summary", "stats"),
            ("/statsz", "proxy"),
            ("/metrics/cadvisor", "metrics"),
            ("/logs/", "log"),
            ("/logs/syslog", "log"),
            ("/logsx", "proxy"),
            ("/", "proxy"),
        ] {
            assert_eq!(
                parts(&attributes(&Method::GET, path, "n1")).2,
                sub,
                "{path}"
            );
        }
        assert_eq!(
            forbidden(&user("system:serviceaccount:default:nosy"), &a),
            "Forbidden (user=system:serviceaccount:default:nosy, verb=get, resource=nodes, subresource(s)=[proxy])"
        );
        assert_eq!(
            error(&user("u"), &a),
            "Authorization error (user=u, verb=get, resource=nodes, subresource(s)=[proxy])"
        );
    }
}
