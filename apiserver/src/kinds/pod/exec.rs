//! `.../pods/<name>/exec` (PodExecOptions): checks the pod, the container and the
//! options as kube-apiserver does, then hands the upgrade to the pod's agent at the
//! kubelet's `/exec/<ns>/<pod>/<container>` with the kubelet's parameter names
//! (`command`, `input`, `output`, `error`, `tty`; `upgrade.rs`). Authorization happened
//! before: `create` (POST) or `get` (GET, WebSocket) on `pods/exec`.

use http::Response;

use super::{agent, upgrade};
use crate::error::ApiError;
use crate::http::ops::Call;
use crate::http::route::{percent_decode, percent_encode};
use crate::http::Body;

/// PodExecOptions from a query string (`command` repeats).
#[derive(Debug, Default, PartialEq)]
pub struct ExecOptions {
    pub command: Vec<String>,
    pub container: Option<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

fn flag(v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" | "True" | "TRUE" | "t" | "T" => Ok(true),
        "false" | "0" | "False" | "FALSE" | "f" | "F" | "" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {v:?}: invalid syntax")),
    }
}

impl ExecOptions {
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut o = ExecOptions::default();
        for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            // Form encoding (Go's url.Values): '+' is a space, a '+' itself is %2B.
            let v = percent_decode(&v.replace('+', " "));
            let bad = |e: String| ApiError::BadRequest(format!("{k}: {e}"));
            match k {
                "command" => o.command.push(v),
                "container" => o.container = Some(v),
                "stdin" => o.stdin = flag(&v).map_err(bad)?,
                "stdout" => o.stdout = flag(&v).map_err(bad)?,
                "stderr" => o.stderr = flag(&v).map_err(bad)?,
                "tty" => o.tty = flag(&v).map_err(bad)?,
                _ => {}
            }
        }
        if o.command.is_empty() {
            return Err(ApiError::BadRequest(
                "you must specify at least 1 command".into(),
            ));
        }
        if !(o.stdin || o.stdout || o.stderr) {
            return Err(ApiError::BadRequest(
                "you must specify at least 1 of stdin, stdout, stderr".into(),
            ));
        }
        Ok(o)
    }

    /// The kubelet's query for these options.
    pub fn kubelet_query(&self) -> String {
        let mut q: Vec<String> = self
            .command
            .iter()
            .map(|c| format!("command={}", percent_encode(c)))
            .collect();
        for (on, k) in [
            (self.stdin, "input"),
            (self.stdout, "output"),
            (self.stderr, "error"),
            (self.tty, "tty"),
        ] {
            if on {
                q.push(format!("{k}=1"));
            }
        }
        q.join("&")
    }
}

/// The subresource's operation.
pub(super) fn action<'a>(
    c: &'a Call<'_>,
    req: http::Request<hyper::body::Incoming>,
) -> futures::future::BoxFuture<'a, Result<Response<Body>, ApiError>> {
    Box::pin(async move {
        let opts = ExecOptions::parse(req.uri().query())?;
        let pod = agent::read_pod(c.shared, &c.target).await?;
        let name = c.target.name().to_string();
        let container = agent::container_name(&pod, &name, opts.container.as_deref())?;
        let node = agent::node_of(&pod, &name)?;
        if let Some(phase @ ("Succeeded" | "Failed")) =
            pod.pointer("/status/phase").and_then(|p| p.as_str())
        {
            return Err(ApiError::BadRequest(format!(
                "cannot exec into a container in a completed pod; current phase is {phase}"
            )));
        }
        let ns = c.target.namespace.clone().unwrap_or_default();
        let path = format!(
            "/exec/{}/{}/{}?{}",
            percent_encode(&ns),
            percent_encode(&name),
            percent_encode(&container),
            opts.kubelet_query()
        );
        upgrade::proxy(c.shared, &node, &name, req, &path).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_as_kubectl_sends_them() {
        let o = ExecOptions::parse(Some(
            "command=sh&command=-c&command=echo+hi%26bye%2B&container=c&stdin=true&stdout=true&tty=true",
        ))
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "echo hi&bye+"]);
        assert_eq!(o.container.as_deref(), Some("c"));
        assert!(o.stdin && o.stdout && !o.stderr && o.tty);
        assert_eq!(
            o.kubelet_query(),
            "command=sh&command=-c&command=echo%20hi%26bye%2B&input=1&output=1&tty=1"
        );
        let e = |q| ExecOptions::parse(Some(q)).unwrap_err().to_string();
        assert_eq!(e("stdout=true"), "you must specify at least 1 command");
        assert_eq!(
            e("command=ls"),
            "you must specify at least 1 of stdin, stdout, stderr"
        );
        assert!(e("command=ls&stdout=maybe").starts_with("stdout: "));
    }
}
