//! Admission webhooks (admissionregistration.k8s.io/v1), as kube-apiserver's
//! MutatingAdmissionWebhook and ValidatingAdmissionWebhook plugins call them, and
//! ValidatingAdmissionPolicy (`policy.rs`), which runs just before the validating
//! webhooks.
//!
//! Contract:
//! - The configurations are read from this apiserver's watch cache, like kube's
//!   informers: a configuration written through any replica applies here once the cache
//!   has it (milliseconds), with no restart.
//! - Mutating webhooks run one after another, ordered by configuration name and then as
//!   listed; each sees the object as the ones before left it, and its JSON patch is
//!   applied. A webhook with `reinvocationPolicy: IfNeeded` is called once more if a later
//!   one changed the object. Validating webhooks run at once, in parallel; the first
//!   refusal in their order is the answer.
//! - A webhook is called when one of its rules matches the request (operation, group,
//!   version, resource/subresource, scope), its namespace and object selectors match, and
//!   every matchCondition (CEL over `object`, `oldObject` and `request`) is true.
//! - A call that fails (cannot connect, TLS not trusted by the caBundle, no answer within
//!   timeoutSeconds, an answer that is not an AdmissionReview for this request) refuses
//!   the write under failurePolicy Fail (500, `failed calling webhook`), and is passed
//!   over under Ignore. So is a matchCondition that cannot be evaluated.
//! - A dry-run request reaches only webhooks whose sideEffects are None or NoneOnDryRun;
//!   any other matching webhook refuses it, as kube does.
//! - Warnings a webhook returns reach the client as `Warning` headers.
//!
//! Files: `rules.rs` (which webhooks and policies a request reaches, pure), `review.rs`
//! (AdmissionReview request and answer, pure), `call.rs` (HTTPS), `expr.rs` (CEL
//! expressions and their variables, pure), `policy.rs` (policies and bindings, pure),
//! `conversion.rs` (the caller of CRDs' conversion webhooks).

pub mod call;
pub mod conversion;
pub mod expr;
pub mod policy;
pub mod review;
pub mod rules;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingWebhook, ValidatingWebhookConfiguration,
};
use kube_cel::cel::Program;
use serde_json::Value;

use crate::auth::User;
use crate::error::ApiError;
use crate::store::cache::Cache;
use crate::store::{Attributes, External};

const MUTATING: &str = "/registry/mutatingwebhookconfigurations/";
const VALIDATING: &str = "/registry/validatingwebhookconfigurations/";
const POLICIES: &str = "/registry/validatingadmissionpolicies/";
const BINDINGS: &str = "/registry/validatingadmissionpolicybindings/";

/// One webhook of a configuration, ready to call.
struct Hook {
    spec: ValidatingWebhook,
    /// `reinvocationPolicy: IfNeeded` (mutating webhooks only).
    reinvoke: bool,
    ca_bundle: Vec<u8>,
    /// matchConditions compiled (a name, and the program or why it does not compile).
    conditions: Vec<(String, Result<Program, String>)>,
}

impl Hook {
    fn new(spec: ValidatingWebhook, reinvoke: bool) -> Hook {
        let conditions = spec
            .match_conditions
            .iter()
            .flatten()
            .map(|c| (c.name.clone(), expr::compile(&c.expression)))
            .collect();
        let ca_bundle = spec
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| b.0.clone())
            .unwrap_or_default();
        Hook {
            spec,
            reinvoke,
            ca_bundle,
            conditions,
        }
    }

    fn name(&self) -> &str {
        &self.spec.name
    }

    fn ignores_failures(&self) -> bool {
        self.spec.failure_policy.as_deref() == Some("Ignore")
    }

    fn timeout(&self) -> Duration {
        let s = self.spec.timeout_seconds.unwrap_or(10).clamp(1, 30);
        Duration::from_secs(u64::try_from(s).unwrap_or(10))
    }
}

/// Every configured webhook, by kind, in the order they run, and every policy binding.
#[derive(Default)]
struct Snapshot {
    mutating: Vec<Hook>,
    validating: Vec<Hook>,
    policies: Vec<policy::Bound>,
}

impl Snapshot {
    fn is_empty(&self) -> bool {
        self.mutating.is_empty() && self.validating.is_empty() && self.policies.is_empty()
    }
}

/// The objects of one prefix that decode as `T`.
fn decoded<T: serde::de::DeserializeOwned>(objs: &[Arc<crate::store::cache::CachedObj>]) -> Vec<T> {
    objs.iter()
        .filter_map(|o| match serde_json::from_slice::<T>(&o.json) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(key = %o.key, error = %e, "admission configuration does not decode");
                None
            }
        })
        .collect()
}

/// Which configuration objects (key and revision) a snapshot was built from.
type Signature = Vec<(String, i64)>;

/// The webhooks this apiserver knows of, rebuilt when the cache's configurations change.
pub struct Webhooks {
    cache: Arc<Cache>,
    kinds: crate::kinds::Kinds,
    current: Mutex<(Signature, Arc<Snapshot>)>,
}

impl Webhooks {
    pub fn new(cache: Arc<Cache>, kinds: crate::kinds::Kinds) -> Arc<Webhooks> {
        Arc::new(Webhooks {
            cache,
            kinds,
            current: Mutex::new((Vec::new(), Arc::new(Snapshot::default()))),
        })
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        let listed = |prefix: &str| self.cache.list(prefix).map(|(v, _)| v).unwrap_or_default();
        let (m, v) = (listed(MUTATING), listed(VALIDATING));
        let (p, b) = (listed(POLICIES), listed(BINDINGS));
        let sig: Signature = m
            .iter()
            .chain(&v)
            .chain(&p)
            .chain(&b)
            .map(|o| (o.key.clone(), o.rev))
            .collect();
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.0 == sig {
            return cur.1.clone();
        }
        // The cache lists keys in order, so configurations come sorted by name.
        let mut snap = Snapshot::default();
        for c in decoded::<MutatingWebhookConfiguration>(&m) {
            snap.mutating.extend(c.webhooks.iter().flatten().map(|w| {
                let reinvoke = w.reinvocation_policy.as_deref() == Some("IfNeeded");
                Hook::new(
                    crate::kinds::admissionregistration::webhook::view(w),
                    reinvoke,
                )
            }));
        }
        for c in decoded::<ValidatingWebhookConfiguration>(&v) {
            snap.validating.extend(
                c.webhooks
                    .into_iter()
                    .flatten()
                    .map(|w| Hook::new(w, false)),
            );
        }
        snap.policies = policy::bind(
            &decoded::<ValidatingAdmissionPolicy>(&p),
            &decoded::<ValidatingAdmissionPolicyBinding>(&b),
        );
        let snap = Arc::new(snap);
        *cur = (sig, snap.clone());
        snap
    }

    /// External admission of one request by `user`; None when no webhook is configured,
    /// so a write pays nothing for webhooks until one is.
    pub fn for_request(self: &Arc<Self>, user: &User) -> Option<Arc<dyn External>> {
        let snap = self.snapshot();
        if snap.is_empty() {
            return None;
        }
        Some(Arc::new(Admission {
            cache: self.cache.clone(),
            kinds: self.kinds.clone(),
            snap,
            user: user.clone(),
        }))
    }
}

/// The webhooks of one request.
struct Admission {
    cache: Arc<Cache>,
    kinds: crate::kinds::Kinds,
    snap: Arc<Snapshot>,
    user: User,
}

/// One request as the webhooks see it.
struct Seen<'a> {
    a: Attributes<'a>,
    rule: rules::Request<'a>,
    ns_labels: Option<flotilla_core::labels::Labels>,
    /// The request's namespace, for policies' `namespaceObject`.
    namespace: Option<Value>,
}

impl Admission {
    fn seen<'a>(&self, a: Attributes<'a>, obj: Option<&Value>) -> Seen<'a> {
        let info = a.target.kind.info();
        let namespace_object = info.group.is_empty() && info.plural == "namespaces";
        let namespace = a.target.namespace.as_deref().and_then(|ns| {
            let key = crate::store::object_key("namespaces", None, ns);
            let o = self.cache.get(&key)?;
            serde_json::from_slice::<Value>(&o.json).ok()
        });
        let ns_labels = if namespace_object {
            Some(rules::labels_of(obj.or(a.old)))
        } else {
            namespace.as_ref().map(|v| rules::labels_of(Some(v)))
        };
        Seen {
            rule: rules::Request {
                operation: a.operation,
                group: info.group,
                version: info.version,
                resource: info.plural,
                subresource: a.sub.unwrap_or(""),
                namespaced: info.namespaced,
                namespace_object,
            },
            a,
            ns_labels,
            namespace,
        }
    }

    /// The review request for `obj` (a fresh uid each call, as kube sends).
    fn request(&self, s: &Seen, uid: &str, obj: Option<&Value>) -> Value {
        let info = s.a.target.kind.info();
        // The scale subresource's object is an autoscaling/v1 Scale.
        let (group, version, kind) = match s.rule.subresource {
            "scale" => ("autoscaling", "v1", "Scale"),
            _ => (info.group, info.version, info.kind),
        };
        let meta = review::Meta {
            uid,
            group,
            version,
            kind,
            resource: info.plural,
            subresource: s.rule.subresource,
            name: s.a.name,
            namespace: s.a.target.namespace.as_deref(),
            operation: s.a.operation,
            username: &self.user.name,
            user_uid: &self.user.uid,
            groups: &self.user.groups,
            dry_run: s.a.dry_run,
        };
        review::request(&meta, obj, s.a.old)
    }

    /// Whether `h` is to be called for this request and object; Err: it cannot be told
    /// (a matchCondition failed to evaluate under failurePolicy Fail).
    fn applies(&self, h: &Hook, s: &Seen, obj: Option<&Value>) -> Result<bool, ApiError> {
        if !rules::rules_match(&h.spec, &s.rule)
            || !rules::namespace_matches(
                h.spec.namespace_selector.as_ref(),
                &s.rule,
                s.ns_labels.as_ref(),
            )
            || !rules::object_matches(h.spec.object_selector.as_ref(), obj, s.a.old)
        {
            return Ok(false);
        }
        if h.conditions.is_empty() {
            return Ok(true);
        }
        let request = self.request(s, "", obj);
        match conditions_hold(h, obj, s.a.old, &request) {
            Ok(b) => Ok(b),
            Err(e) if h.ignores_failures() => {
                tracing::warn!(webhook = h.name(), error = %e, "matchCondition failed; failurePolicy Ignore");
                Ok(false)
            }
            Err(e) => Err(ApiError::Internal(format!(
                "Internal error occurred: failed calling webhook {:?}: {e}",
                h.name()
            ))),
        }
    }

    /// Calls `h`: Ok(patch, if any) when it allowed (or failed under Ignore), Err when it
    /// refused or failed under Fail.
    async fn call(
        &self,
        h: &Hook,
        s: &Seen<'_>,
        obj: Option<&Value>,
        mutating: bool,
    ) -> Result<Option<Value>, ApiError> {
        if s.a.dry_run && !matches!(h.spec.side_effects.as_str(), "None" | "NoneOnDryRun") {
            return Err(ApiError::BadRequest(format!(
                "admission webhook {:?} does not support dry run",
                h.name()
            )));
        }
        let uid = uuid::Uuid::new_v4().to_string();
        let body =
            serde_json::to_vec(&review::review(self.request(s, &uid, obj))).unwrap_or_default();
        let started = std::time::Instant::now();
        let outcome = match self.endpoint(h) {
            Ok(ep) => call::post(&ep, &h.ca_bundle, body, h.timeout())
                .await
                .map_err(|e| format!("failed to call webhook: {e}"))
                .and_then(|b| review::answer(&b, &uid, h.name(), mutating)),
            Err(e) => Err(e),
        };
        tracing::debug!(
            webhook = h.name(),
            mutating,
            ms = started.elapsed().as_millis() as u64,
            ok = outcome.is_ok(),
            "admission webhook called"
        );
        match outcome {
            Ok(answer) => {
                for w in answer.warnings {
                    s.a.warnings.push(w);
                }
                answer.verdict
            }
            Err(e) if h.ignores_failures() => {
                tracing::warn!(webhook = h.name(), error = %e, "admission webhook failed; failurePolicy Ignore");
                Ok(None)
            }
            Err(e) => Err(ApiError::Internal(format!(
                "Internal error occurred: failed calling webhook {:?}: {e}",
                h.name()
            ))),
        }
    }

    /// Where `h` is called: its URL, or a ready endpoint of its Service.
    fn endpoint(&self, h: &Hook) -> Result<call::Endpoint, String> {
        call::resolve(&self.cache, &h.spec.client_config, h.timeout())
    }

    async fn mutate_all(&self, a: Attributes<'_>, obj: &mut Value) -> Result<(), ApiError> {
        let s = self.seen(a, Some(&*obj));
        // (webhook index, the object's version when it was called)
        let mut called: Vec<(usize, u32)> = Vec::new();
        let mut version = 0u32;
        for (i, h) in self.snap.mutating.iter().enumerate() {
            if !self.applies(h, &s, Some(&*obj))? {
                continue;
            }
            called.push((i, version));
            if self.patch(h, &s, obj).await? {
                version = version.saturating_add(1);
            }
        }
        // IfNeeded: once more for those that ran before a later webhook changed the object.
        for (i, at) in called {
            let h = &self.snap.mutating[i];
            if h.reinvoke && at < version && self.applies(h, &s, Some(&*obj))? {
                self.patch(h, &s, obj).await?;
            }
        }
        Ok(())
    }

    /// Calls mutating webhook `h` and applies its patch; whether the object changed.
    async fn patch(&self, h: &Hook, s: &Seen<'_>, obj: &mut Value) -> Result<bool, ApiError> {
        let Some(patch) = self.call(h, s, Some(&*obj), true).await? else {
            return Ok(false);
        };
        let before = obj.clone();
        crate::patch::json_patch(obj, &patch).map_err(|e| {
            ApiError::Internal(format!(
                "Internal error occurred: the patch of admission webhook {:?} does not apply: {e}",
                h.name()
            ))
        })?;
        Ok(*obj != before)
    }

    /// The params a binding names: the object it names, or each object its selector
    /// picks, of the policy's paramKind (in the request's namespace when the binding
    /// names none and the kind is namespaced).
    fn params(&self, b: &policy::Bound, req_ns: Option<&str>) -> Vec<Value> {
        let (Some((av, kind)), Some(r)) = (b.param_kind(), b.param_ref()) else {
            return vec![];
        };
        let (group, version) = av.split_once('/').unwrap_or(("", av.as_str()));
        let Some(k) = self.kinds.iter().find(|k| {
            let i = k.info();
            i.group == group && i.version == version && i.kind == kind
        }) else {
            return vec![];
        };
        let info = k.info();
        let ns = if info.namespaced {
            r.namespace.as_deref().filter(|n| !n.is_empty()).or(req_ns)
        } else {
            None
        };
        let decode =
            |o: &crate::store::cache::CachedObj| serde_json::from_slice::<Value>(&o.json).ok();
        if let Some(name) = r.name.as_deref().filter(|n| !n.is_empty()) {
            let key = crate::store::object_key(info.storage, ns, name);
            return self
                .cache
                .get(&key)
                .as_deref()
                .and_then(decode)
                .into_iter()
                .collect();
        }
        let Some(sel) = &r.selector else {
            return vec![];
        };
        let prefix = match ns {
            Some(ns) => format!("/registry/{}/{ns}/", info.storage),
            None => format!("/registry/{}/", info.storage),
        };
        let listed = self.cache.list(&prefix).map(|(v, _)| v).unwrap_or_default();
        listed
            .iter()
            .filter_map(|o| decode(o))
            .filter(|v| flotilla_core::labels::matches(sel, &rules::labels_of(Some(v))))
            .collect()
    }

    /// Every policy binding that matches, evaluated (before the validating webhooks, as
    /// kube orders its plugins).
    fn policies(&self, s: &Seen, obj: Option<&Value>) -> Result<(), ApiError> {
        for b in &self.snap.policies {
            let (constraints, narrowing) = b.constraints();
            let matches = |m, all| {
                rules::resources_match(
                    m,
                    all,
                    &s.rule,
                    s.a.name,
                    obj,
                    s.a.old,
                    s.ns_labels.as_ref(),
                )
            };
            if !matches(constraints, false) || narrowing.is_some_and(|n| !matches(n, true)) {
                continue;
            }
            let request = self.request(s, "", obj);
            let params = self.params(b, s.a.target.namespace.as_deref());
            if b.param_kind().is_some() && params.is_empty() {
                b.missing_params()?;
                continue;
            }
            let sets: Vec<Option<&Value>> = if params.is_empty() {
                vec![None]
            } else {
                params.iter().map(Some).collect()
            };
            for p in sets {
                let outcome = b.evaluate(obj, s.a.old, &request, p, s.namespace.as_ref());
                b.judge(outcome, s.a.warnings)?;
            }
        }
        Ok(())
    }

    async fn validate_all(&self, a: Attributes<'_>, obj: Option<&Value>) -> Result<(), ApiError> {
        let s = self.seen(a, obj);
        self.policies(&s, obj)?;
        let mut calls = Vec::new();
        for h in &self.snap.validating {
            if self.applies(h, &s, obj)? {
                calls.push(self.call(h, &s, obj, false));
            }
        }
        for r in futures::future::join_all(calls).await {
            r?;
        }
        Ok(())
    }
}

/// Whether every matchCondition of `h` holds.
fn conditions_hold(
    h: &Hook,
    obj: Option<&Value>,
    old: Option<&Value>,
    request: &Value,
) -> Result<bool, String> {
    let env = expr::Env::new(obj, old, request);
    for (name, program) in &h.conditions {
        let p = program
            .as_ref()
            .map_err(|e| format!("matchCondition {name:?} does not compile: {e}"))?;
        match env.test(p) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) => return Err(format!("matchCondition {name:?}: {e}")),
        }
    }
    Ok(true)
}

impl External for Admission {
    fn mutate<'a>(
        &'a self,
        a: Attributes<'a>,
        obj: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.mutate_all(a, obj))
    }

    fn validate<'a>(
        &'a self,
        a: Attributes<'a>,
        obj: &'a Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        // A delete's review has no object, only the old one.
        let obj = (a.operation != "DELETE").then_some(obj);
        Box::pin(self.validate_all(a, obj))
    }
}
