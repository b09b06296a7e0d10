//! Audit logging as kube-apiserver does it: `--audit-policy-file` says how much of which
//! requests is recorded (`policy.rs`), each recorded request gives `audit.k8s.io/v1`
//! `Event`s (`event.rs`), one JSON line each, to `--audit-log-path` (`log.rs`).
//!
//! Contract, as kube's `WithAudit` and `WithFailedAuthenticationAudit` filters:
//! - The policy is evaluated once per request, after authentication (with the
//!   authenticated user; a request that failed it has none), on the request's
//!   authorization attributes. Level `None` records nothing.
//! - An authenticated request gives `RequestReceived` (before authorization and the
//!   in-flight limits), then `ResponseComplete`; a long-running one (watch, logs) gives
//!   `ResponseStarted` when its headers go out and `ResponseComplete` when its body ends or
//!   the client goes. A request that failed authentication gives one `ResponseStarted`
//!   with the 401. A handler that panics gives `Panic` (500) and the panic goes on as
//!   before. Stages the policy omits are not written.
//! - Every event carries the request's Audit-ID (the `Audit-Id` response header), URI,
//!   verb, user, source IPs (`X-Forwarded-For`, `X-Real-Ip`, then the peer, as kube's
//!   `SourceIPs`), user agent (cut at 1024 bytes + `...TRUNCATED`) and `objectRef`
//!   (completed from a written object's metadata); the events after authorization carry
//!   `authorization.k8s.io/decision` (`allow`/`forbid`) and `authorization.k8s.io/reason`.
//!   `responseStatus` is the code, and for a `Status` answer (every error) its status,
//!   message, reason and details.
//! - `requestObject` (the body as decoded; a patch as sent, YAML turned into JSON) only at
//!   `Request` and above, `responseObject` (a JSON answer that is not streamed) only at
//!   `RequestResponse`, both without `managedFields` under `omitManagedFields`. As kube,
//!   nothing is redacted: Secrets, ConfigMaps and TokenReviews are recorded at whatever
//!   level the policy gives them (kube's example policies give Secrets `Metadata`).
//! - Not here: impersonation (Flotilla does not serve `Impersonate-*`, so there is no
//!   `impersonatedUser`), webhook backends, `--audit-log-format=legacy`,
//!   `--audit-log-compress`. `/livez`, `/readyz` and `/version` are served without
//!   authentication here, so they are audited as kube audits an anonymous request
//!   (`system:anonymous`, group `system:unauthenticated`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, SizeHint};
use serde_json::Value;

use crate::auth::User;
use crate::authz::Attributes;
use crate::response::{full, Body};

pub mod event;
pub mod log;
pub mod policy;

use event::{Event, MicroTime, ObjectRef, ResponseStatus, UserInfo};
pub use policy::{Level, Policy, Stage};

const DECISION: &str = "authorization.k8s.io/decision";
const REASON: &str = "authorization.k8s.io/reason";
/// A response body larger than this is not parsed for `responseObject`.
const MAX_RESPONSE_OBJECT: usize = 16 * 1024 * 1024;

/// The audit flags, checked (`--audit-policy-file` read and validated).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub policy: Policy,
    pub log: log::LogOptions,
}

/// The policy and the log, shared by every request.
pub struct Auditor {
    policy: Policy,
    sink: log::Sink,
}

impl Auditor {
    /// Opens the log and starts its writer; an unusable path refuses the start.
    pub fn start(cfg: AuditConfig) -> Result<Arc<Auditor>, log::LogError> {
        let sink = log::Sink::start(&cfg.log)?;
        Ok(Arc::new(Auditor {
            policy: cfg.policy,
            sink,
        }))
    }
}

/// kube's `SourceIPs`: the `X-Forwarded-For` chain, `X-Real-Ip` if not in it, and the
/// peer unless it is already last.
pub fn source_ips(headers: &HeaderMap, peer: Option<SocketAddr>) -> Vec<String> {
    let mut ips: Vec<std::net::IpAddr> = Vec::new();
    if let Some(xff) = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        ips.extend(
            xff.split(',')
                .filter_map(|p| p.trim().parse::<std::net::IpAddr>().ok()),
        );
    }
    if let Some(ip) = headers
        .get("x-real-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
    {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    if let Some(p) = peer {
        if ips.last() != Some(&p.ip()) {
            ips.push(p.ip());
        }
    }
    ips.iter().map(ToString::to_string).collect()
}

fn user_agent(headers: &HeaderMap) -> String {
    const MAX: usize = 1024;
    let ua = headers
        .get(http::header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if ua.len() <= MAX {
        return ua;
    }
    let mut cut = MAX;
    while !ua.is_char_boundary(cut) {
        cut = cut.saturating_sub(1);
    }
    format!("{}...TRUNCATED", &ua[..cut])
}

/// One request's audit record, kept in the request's extensions from the moment it is
/// received; the request path reports to it what happens.
#[derive(Clone)]
pub struct Recorder {
    auditor: Arc<Auditor>,
    state: Arc<Mutex<Recording>>,
}

struct Recording {
    audit_id: String,
    received: MicroTime,
    request_uri: String,
    user_agent: String,
    source_ips: Vec<String>,
    /// Set once the policy gave a level above None.
    event: Option<Event>,
    omit: std::collections::BTreeSet<Stage>,
    omit_managed_fields: bool,
    long_running: bool,
    /// Authentication failed: one ResponseStarted event with the answer.
    failed_authentication: bool,
    /// ResponseComplete (or Panic) was written.
    done: bool,
}

impl Recording {
    /// The line for `stage`, or None when nothing is recorded or the stage is omitted.
    fn line(&mut self, stage: Stage) -> Option<Vec<u8>> {
        let ev = self.event.as_mut()?;
        if self.omit.contains(&stage) {
            return None;
        }
        ev.stage = stage;
        ev.stage_timestamp = if stage == Stage::RequestReceived {
            ev.request_received_timestamp
        } else {
            MicroTime::now()
        };
        Some(ev.line())
    }
}

/// The user kube gives a request without credentials.
fn anonymous() -> User {
    User {
        name: "system:anonymous".into(),
        uid: String::new(),
        groups: vec!["system:unauthenticated".into()],
    }
}

/// What a request body's metadata names.
#[derive(serde::Deserialize, Default)]
struct BodyMeta {
    #[serde(default)]
    metadata: Meta,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    resource_version: String,
}

impl Recorder {
    /// A request just received (before anything else looks at it).
    pub fn new(
        auditor: Arc<Auditor>,
        audit_id: &str,
        uri: &http::Uri,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Recorder {
        Recorder {
            auditor,
            state: Arc::new(Mutex::new(Recording {
                audit_id: audit_id.to_string(),
                received: MicroTime::now(),
                request_uri: uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| uri.path().to_string()),
                user_agent: user_agent(headers),
                source_ips: source_ips(headers, peer),
                event: None,
                omit: Default::default(),
                omit_managed_fields: false,
                long_running: false,
                failed_authentication: false,
                done: false,
            })),
        }
    }

    /// The recorder a request carries, if auditing is on.
    pub fn of<B>(req: &http::Request<B>) -> Option<Recorder> {
        req.extensions().get::<Recorder>().cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recording> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn send(&self, line: Option<Vec<u8>>) {
        if let Some(l) = line {
            self.auditor.sink.send(l).await;
        }
    }

    /// Evaluates the policy for the request `user` makes (None: authentication failed;
    /// `anonymous`: a path served without it) and writes `RequestReceived`.
    pub async fn begin(
        &self,
        user: Option<&User>,
        anonymous_request: bool,
        a: &Attributes,
        api_version: Option<&str>,
        long_running: bool,
    ) {
        let anon = anonymous();
        let user = if anonymous_request { Some(&anon) } else { user };
        let cfg = self.auditor.policy.evaluate(user, a);
        let line = {
            let mut r = self.lock();
            if cfg.level == Level::None || r.event.is_some() {
                return;
            }
            let mut ev = Event::new(cfg.level, r.audit_id.clone(), r.received);
            ev.request_uri = r.request_uri.clone();
            ev.user_agent = r.user_agent.clone();
            ev.source_ips = r.source_ips.clone();
            if let Some(u) = user {
                ev.user = UserInfo {
                    username: u.name.clone(),
                    uid: u.uid.clone(),
                    groups: u.groups.clone(),
                };
            }
            match a {
                Attributes::Resource(res) => {
                    ev.verb = res.verb.clone();
                    ev.object_ref = Some(ObjectRef {
                        resource: res.resource.clone(),
                        namespace: res.namespace.clone(),
                        name: res.name.clone(),
                        api_group: res.group.clone(),
                        api_version: api_version.unwrap_or_default().to_string(),
                        subresource: res.subresource.clone(),
                        ..Default::default()
                    });
                }
                Attributes::NonResource { verb, .. } => ev.verb = verb.clone(),
            }
            r.event = Some(ev);
            r.omit = cfg.omit_stages;
            r.omit_managed_fields = cfg.omit_managed_fields;
            r.long_running = long_running;
            if user.is_none() {
                r.failed_authentication = true;
                None
            } else {
                r.line(Stage::RequestReceived)
            }
        };
        self.send(line).await;
    }

    /// The authorizer's decision, as kube's annotations.
    pub fn decision(&self, allowed: bool, reason: &str) {
        let mut r = self.lock();
        if let Some(ev) = r.event.as_mut() {
            let d = if allowed { "allow" } else { "forbid" };
            ev.annotations.insert(DECISION.into(), d.into());
            ev.annotations.insert(REASON.into(), reason.into());
        }
    }

    /// The request body as read: an object (`object`: its metadata completes
    /// `objectRef`) or a patch. Recorded as `requestObject` at `Request` and above.
    pub fn request_body(&self, body: &[u8], object: bool) {
        let (level, omit_managed) = {
            let r = self.lock();
            match &r.event {
                Some(ev) => (ev.level, r.omit_managed_fields),
                None => return,
            }
        };
        let meta = if object {
            serde_json::from_slice::<BodyMeta>(body).ok()
        } else {
            None
        };
        let value = (level >= Level::Request).then(|| {
            serde_json::from_slice::<Value>(body)
                .ok()
                .or_else(|| serde_yaml::from_slice::<Value>(body).ok())
                .map(|mut v| {
                    if omit_managed {
                        event::strip_managed_fields(&mut v);
                    }
                    v
                })
        });
        let mut r = self.lock();
        let Some(ev) = r.event.as_mut() else {
            return;
        };
        if let (Some(m), Some(or)) = (meta, ev.object_ref.as_mut()) {
            let fill = |have: &mut String, from: String| {
                if have.is_empty() {
                    *have = from;
                }
            };
            fill(&mut or.namespace, m.metadata.namespace);
            fill(&mut or.name, m.metadata.name);
            fill(&mut or.uid, m.metadata.uid);
            fill(&mut or.resource_version, m.metadata.resource_version);
        }
        if let Some(v) = value.flatten() {
            ev.request_object = Some(v);
        }
    }

    /// The answer: records its status (and object), writes `ResponseStarted` and
    /// `ResponseComplete` as the request's kind wants, and returns it (a long-running
    /// body now writes `ResponseComplete` when it ends).
    pub async fn respond(&self, resp: Response<Body>) -> Response<Body> {
        let (level, long_running, failed, omit_managed) = {
            let r = self.lock();
            match &r.event {
                Some(ev) => (
                    ev.level,
                    r.long_running,
                    r.failed_authentication,
                    r.omit_managed_fields,
                ),
                None => return resp,
            }
        };
        let (parts, body) = resp.into_parts();
        let code = parts.status.as_u16();
        let mut status = ResponseStatus {
            code,
            ..Default::default()
        };
        let mut object = None;
        // Bodies already in memory (every answer but streams) are looked at.
        let body = if body.size_hint().exact().is_some() {
            let bytes = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let json = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            // Errors are Status objects; a success is one only when it says so first (as
            // every Status this server writes does).
            if json && (code >= 400 || bytes.starts_with(br#"{"kind":"Status""#)) {
                if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                    if v.get("kind").and_then(Value::as_str) == Some("Status") {
                        status = ResponseStatus::from_status(&v);
                        status.code = code;
                    }
                }
            }
            if level >= Level::RequestResponse && json && bytes.len() <= MAX_RESPONSE_OBJECT {
                object = serde_json::from_slice::<Value>(&bytes).ok().map(|mut v| {
                    if omit_managed {
                        event::strip_managed_fields(&mut v);
                    }
                    v
                });
            }
            full(bytes)
        } else {
            body
        };
        let (line, complete) = {
            let mut r = self.lock();
            if let Some(ev) = r.event.as_mut() {
                ev.response_status = Some(status);
                if object.is_some() {
                    ev.response_object = object;
                }
            }
            if failed {
                r.done = true;
                (r.line(Stage::ResponseStarted), None)
            } else if long_running {
                (r.line(Stage::ResponseStarted), Some(()))
            } else {
                r.done = true;
                (r.line(Stage::ResponseComplete), None)
            }
        };
        self.send(line).await;
        let body = match complete {
            Some(()) => Completing {
                inner: body,
                recorder: Some(self.clone()),
            }
            .boxed(),
            None => body,
        };
        Response::from_parts(parts, body)
    }

    /// The handler panicked: `Panic` with kube's 500 status.
    pub async fn panicked(&self, message: &str) {
        let line = {
            let mut r = self.lock();
            if r.done {
                return;
            }
            r.done = true;
            if let Some(ev) = r.event.as_mut() {
                ev.response_status = Some(ResponseStatus {
                    metadata: BTreeMap::new(),
                    status: "Failure".into(),
                    message: format!("APIServer panic'd: {message}"),
                    reason: "InternalError".into(),
                    details: None,
                    code: 500,
                });
            }
            r.line(Stage::Panic)
        };
        self.send(line).await;
    }

    /// `ResponseComplete` of a long-running request, from a `Drop`.
    fn complete_now(&self) {
        let line = {
            let mut r = self.lock();
            if r.done {
                return;
            }
            r.done = true;
            r.line(Stage::ResponseComplete)
        };
        let Some(line) = line else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                let auditor = self.auditor.clone();
                h.spawn(async move { auditor.sink.send(line).await });
            }
            Err(_) => self.auditor.sink.try_send(line),
        }
    }
}

/// A streamed body that writes its request's `ResponseComplete` when it is dropped (its
/// end, or the client leaving).
struct Completing {
    inner: Body,
    recorder: Option<Recorder>,
}

impl hyper::body::Body for Completing {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Completing {
    fn drop(&mut self) {
        if let Some(r) = self.recorder.take() {
            r.complete_now();
        }
    }
}

#[cfg(test)]
mod tests;
