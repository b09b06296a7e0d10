//! From a request to a registry call and back: authentication, the route, the verb, the
//! body (size and media type), the options in the query, and the response.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;

use super::route::{self, ResourcePath, Route};
use super::{error_response, full, json_response, Body, Shared};
use crate::discovery;
use crate::error::ApiError;
use crate::error::FieldError;
use crate::kinds::ResourceInfo;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::list::{list_json, ListResult};
use crate::store::{DeleteOptions, ListOptions, RvMatch, Target, Write};
use crate::table;

/// Requests with a larger body get 413, as kube-apiserver's limit.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let started = std::time::Instant::now();
    let (verb, resource) = metric_labels(&req, &shared.kinds);
    let metrics = shared.metrics.clone();
    let gauge = if matches!(verb, "GET" | "LIST") {
        &metrics.inflight_readonly
    } else {
        &metrics.inflight_mutating
    };
    gauge.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let r = match handle_inner(shared, req).await {
        Ok(r) => r,
        Err(e) => {
            if e.code() >= 500 {
                tracing::warn!(code = e.code(), error = %e, "request failed");
            }
            if matches!(e, ApiError::TooManyRequests(_)) {
                metrics
                    .rejected
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            error_response(&e)
        }
    };
    gauge.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    metrics.observe(verb, &resource, r.status().as_u16(), started.elapsed());
    r
}

/// kube-apiserver's metric labels of a request: its verb (GET, LIST, WATCH, POST, PUT,
/// PATCH, APPLY, DELETE) and its resource (with the subresource). Only served resources
/// and subresources are named (empty otherwise), so bad paths cannot grow the series.
fn metric_labels(req: &Request<Incoming>, kinds: &crate::kinds::Kinds) -> (&'static str, String) {
    let q = route::query(req.uri().query());
    let Some(Route::Resource(p)) = route::parse(req.uri().path()) else {
        return (verb_label(req.method(), false, false), String::new());
    };
    let watch = parse_bool(&q, "watch");
    let mut verb = verb_label(req.method(), p.name.is_some(), watch);
    if verb == "PATCH" && media_type(req) == "application/apply-patch+yaml" {
        verb = "APPLY";
    }
    if kinds.find(&p.group, &p.version, &p.plural).is_none() {
        return (verb, String::new());
    }
    let resource = match p.sub.as_deref() {
        Some(s @ ("status" | "binding" | "log" | "finalize" | "scale" | "token")) => {
            format!("{}/{s}", p.plural)
        }
        Some(_) => String::new(),
        None => p.plural.clone(),
    };
    (verb, resource)
}

fn verb_label(m: &Method, named: bool, watch: bool) -> &'static str {
    match *m {
        Method::GET | Method::HEAD if watch => "WATCH",
        Method::GET | Method::HEAD if named => "GET",
        Method::GET | Method::HEAD => "LIST",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

fn ok_json(v: &serde_json::Value) -> Response<Body> {
    json_response(StatusCode::OK, serde_json::to_vec(v).unwrap_or_default())
}

async fn handle_inner(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let route = route::parse(req.uri().path());
    let health = |p| {
        let q = route::query(req.uri().query());
        let path = req.uri().path().to_string();
        let shared = shared.clone();
        async move { Ok(super::health::serve(&shared, p, &path, &q).await) }
    };
    match route {
        Some(Route::Health) => return health(super::health::Probe::Live).await,
        Some(Route::Ready) => return health(super::health::Probe::Ready).await,
        Some(Route::Version) => return Ok(ok_json(&discovery::version())),
        _ => {}
    }
    let auth = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(user) = shared.auth.authenticate(auth, &shared.store).await else {
        return Err(ApiError::Unauthorized);
    };
    let user = &user;
    tracing::Span::current().record("user", user.name.as_str());
    let q = route::query(req.uri().query());
    let attrs = match &route {
        Some(Route::Resource(p)) => crate::authz::attributes::of_resource(req.method(), p, &q),
        _ => crate::authz::attributes::of_path(req.method(), req.uri().path()),
    };
    // Long-running requests and system:masters are not limited, as in kube-apiserver.
    let long_running = match &attrs {
        crate::authz::Attributes::Resource(r) => {
            r.verb == "watch"
                || parse_bool(&q, "watch")
                || (r.subresource == "log" && parse_bool(&q, "follow"))
        }
        crate::authz::Attributes::NonResource { .. } => false,
    };
    let _slot = if long_running || user.groups.iter().any(|g| g == crate::authz::MASTERS) {
        None
    } else {
        shared.inflight.admit(req.method())?
    };
    shared.authorizer.authorize(user, &attrs)?;
    // What a node's agent writes is narrowed to its own objects.
    let node = match (crate::authz::node::node_of(user), &attrs) {
        (Some(n), crate::authz::Attributes::Resource(r)) => {
            crate::authz::node::check(n, r, &shared.store).await?;
            Some((n.to_string(), r.clone()))
        }
        _ => None,
    };
    // Requests that are not long-running end at --request-timeout (or the client's
    // shorter `timeout`) with 504.
    let limit = match q.get("timeout").filter(|t| !t.is_empty()) {
        Some(t) => crate::config::parse_duration(t)
            .map_err(|e| ApiError::BadRequest(format!("invalid timeout: {e}")))?
            .min(shared.request_timeout),
        None => shared.request_timeout,
    };
    let served = serve_route(&shared, route, req, user, node);
    if long_running || limit.is_zero() {
        return served.await;
    }
    match tokio::time::timeout(limit, served).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::Timeout(format!(
            "request did not complete within {}",
            humantime(limit)
        ))),
    }
}

/// A duration as Go prints one ("1m0s", "30s", "250ms").
fn humantime(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

async fn serve_route(
    shared: &Arc<Shared>,
    route: Option<Route>,
    req: Request<Incoming>,
    user: &crate::auth::User,
    node: Option<(String, crate::authz::ResourceAttributes)>,
) -> Result<Response<Body>, ApiError> {
    let kinds = &shared.kinds;
    match route {
        None => Err(ApiError::NoRoute),
        Some(Route::CoreVersions) => Ok(ok_json(&discovery::core_versions(&shared.advertise))),
        Some(Route::Groups) => Ok(ok_json(&discovery::group_list(kinds))),
        Some(Route::Group(g)) => discovery::group(kinds, &g)
            .map(|v| ok_json(&v))
            .ok_or(ApiError::NoRoute),
        Some(Route::ResourceList { group, version }) => {
            discovery::resource_list(kinds, &group, &version)
                .map(|v| ok_json(&v))
                .ok_or(ApiError::NoRoute)
        }
        Some(Route::OpenApiV3Root) => Ok(shared.openapi.serve_index(req.headers())),
        Some(Route::OpenApiV3 { group, version }) => {
            let q = route::query(req.uri().query());
            let path = crate::openapi::paths::gv_path(&group, &version);
            shared
                .openapi
                .serve_doc(&path, q.get("hash").map(String::as_str), req.headers())
                .ok_or(ApiError::NoRoute)
        }
        Some(Route::OpenApiV2) => shared.openapi.serve_v2(req.headers()),
        Some(Route::Metrics) => Ok(Response::builder()
            .status(StatusCode::OK)
            .header(
                http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .body(full(shared.metrics.render(&crate::metrics::Sources {
                cache: &shared.store.cache,
                etcd: &shared.store.etcd,
            })))
            .unwrap_or_else(|_| Response::new(full(Bytes::new())))),
        Some(Route::Resource(p))
            if p.version == "v1"
                && (p.group == "authorization.k8s.io"
                    || (p.group == "authentication.k8s.io"
                        && p.plural == "selfsubjectreviews")) =>
        {
            review(shared, user, p, req).await
        }
        Some(Route::Resource(p)) => resource(shared, p, req, node).await,
        Some(Route::Health | Route::Ready | Route::Version) => Err(ApiError::NoRoute),
    }
}

/// `POST /apis/authorization.k8s.io/v1/selfsubject{access,rules}reviews` and
/// `/apis/authentication.k8s.io/v1/selfsubjectreviews` (`kubectl auth whoami`).
async fn review(
    shared: &Shared,
    user: &crate::auth::User,
    p: ResourcePath,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::POST || p.name.is_some() || p.namespace.is_some() {
        return Err(ApiError::MethodNotAllowed);
    }
    let body = read_object(req).await?;
    let az = &shared.authorizer;
    let out = match p.plural.as_str() {
        "selfsubjectaccessreviews" => crate::authz::review::access_review(az, user, &body)?,
        "selfsubjectrulesreviews" => crate::authz::review::rules_review(az, user, &body)?,
        "selfsubjectreviews" => crate::auth::self_review(user),
        _ => return Err(ApiError::NoRoute),
    };
    Ok(json_response(
        StatusCode::CREATED,
        serde_json::to_vec(&out).unwrap_or_default(),
    ))
}

/// Reads the body, refusing more than [`MAX_BODY`] bytes. A body over the limit is still
/// read (and discarded, up to [`DRAIN_LIMIT`] bytes or five seconds) before the 413 is
/// sent: a client cut off while still sending sees a broken connection, not the Status.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let mut body = req.into_body();
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(f))) => f,
            Ok(Some(Err(e))) => {
                return Err(ApiError::BadRequest(format!(
                    "reading the request body: {e}"
                )))
            }
            Ok(None) => break,
            Err(_) if total > MAX_BODY => break,
            Err(_) => {
                return Err(ApiError::Timeout(
                    "reading the request body took too long".into(),
                ))
            }
        };
        if let Ok(data) = frame.into_data() {
            total += data.len();
            if total <= MAX_BODY {
                buf.extend_from_slice(&data);
            } else if total > DRAIN_LIMIT {
                break;
            }
        }
    }
    if total > MAX_BODY {
        return Err(ApiError::TooLarge(MAX_BODY));
    }
    Ok(buf.freeze())
}

/// How much of an oversized body is read and discarded before answering 413.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

fn media_type(req: &Request<Incoming>) -> String {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Reads a body that must be an object: JSON as is, Kubernetes protobuf turned into JSON.
async fn read_object(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let mt = media_type(&req);
    match mt.as_str() {
        "application/json" | "" | "*/*" => read_body(req).await,
        crate::protobuf::CONTENT_TYPE => {
            let body = read_body(req).await?;
            crate::protobuf::to_json(&body)
                .map(Bytes::from)
                .map_err(|e| {
                    ApiError::BadRequest(format!("the protobuf body could not be decoded: {e}"))
                })
        }
        _ => Err(ApiError::UnsupportedMediaType(
            "application/json, application/vnd.kubernetes.protobuf",
        )),
    }
}

pub(super) fn parse_bool(q: &HashMap<String, String>, k: &str) -> bool {
    matches!(q.get(k).map(String::as_str), Some("true" | "1"))
}

fn list_options(
    q: &HashMap<String, String>,
    fields_allowed: &[&str],
) -> Result<ListOptions, ApiError> {
    let labels = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("unable to parse requirement: {e}")))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))
        .map_err(ApiError::BadRequest)?;
    fields
        .check_fields(fields_allowed)
        .map_err(ApiError::BadRequest)?;
    let limit = match q.get("limit").filter(|l| !l.is_empty()) {
        Some(l) => Some(
            l.parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid limit: {l:?}")))?,
        ),
        None => None,
    };
    let rv_match = match q.get("resourceVersionMatch").map(String::as_str) {
        None | Some("") => None,
        Some("NotOlderThan") => Some(RvMatch::NotOlderThan),
        Some("Exact") => Some(RvMatch::Exact),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
            )))
        }
    };
    Ok(ListOptions {
        labels,
        fields,
        limit,
        continue_token: q.get("continue").filter(|c| !c.is_empty()).cloned(),
        resource_version: q.get("resourceVersion").cloned(),
        rv_match,
    })
}

fn delete_options(q: &HashMap<String, String>, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut opts: DeleteOptions = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("DeleteOptions: {e}")))?
    };
    if let Some(g) = q.get("gracePeriodSeconds") {
        opts.grace_period_seconds = Some(
            g.parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid gracePeriodSeconds: {g:?}")))?,
        );
    }
    if let Some(p) = q.get("propagationPolicy") {
        opts.propagation_policy = Some(p.clone());
    }
    if let Some(d) = q.get("dryRun") {
        opts.dry_run.push(d.clone());
    }
    Ok(opts)
}

/// The options of a write: its field manager (the `fieldManager` parameter, else from the
/// User-Agent; an apply must name one) and dry run. `force` is for applies only.
fn write_options(
    q: &HashMap<String, String>,
    req: &Request<Incoming>,
    apply: bool,
) -> Result<Write, ApiError> {
    let invalid = |e: FieldError| ApiError::Invalid {
        kind: "PatchOptions",
        group: "meta.k8s.io",
        name: String::new(),
        causes: vec![e],
    };
    let manager = match q.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(m) if m.len() > 128 => return Err(invalid(FieldError::too_long("fieldManager", 128))),
        Some(m) if m.chars().any(char::is_control) => {
            return Err(invalid(FieldError::invalid(
                "fieldManager",
                m,
                "must contain only printable characters",
            )))
        }
        Some(m) => m.clone(),
        None if apply => {
            return Err(invalid(FieldError::required(
                "fieldManager",
                "is required for apply patch",
            )))
        }
        None => crate::patch::managed::manager_from_user_agent(
            req.headers()
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
        ),
    };
    if !apply && q.contains_key("force") {
        return Err(invalid(FieldError::forbidden(
            "force",
            "may not be specified for non-apply patch",
        )));
    }
    Ok(Write::new(manager, dry_run(q)?))
}

fn dry_run(q: &HashMap<String, String>) -> Result<bool, ApiError> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "dryRun: Unsupported value: {other:?}: supported values: \"All\""
        ))),
    }
}

/// `node`: the node whose agent asks, and what it asks (its creates are checked on the body).
async fn resource(
    shared: &Shared,
    p: ResourcePath,
    req: Request<Incoming>,
    node: Option<(String, crate::authz::ResourceAttributes)>,
) -> Result<Response<Body>, ApiError> {
    let q = route::query(req.uri().query());
    let store = &shared.store;
    // `POST /api/v1/namespaces/<ns>/bindings`: a binding named in its body.
    if p.plural == "bindings" && p.group.is_empty() && p.version == "v1" {
        if req.method() != Method::POST || p.name.is_some() || p.namespace.is_none() {
            return Err(ApiError::MethodNotAllowed);
        }
        let kind = shared
            .kinds
            .find("", "v1", "pods")
            .ok_or(ApiError::NoRoute)?;
        let body = read_object(req).await?;
        let t = Target {
            kind,
            namespace: p.namespace,
            name: None,
        };
        store.bind(&t, &body, dry_run(&q)?).await?;
        return Ok(json_response(StatusCode::CREATED, success_status()));
    }
    let kind = shared
        .kinds
        .find(&p.group, &p.version, &p.plural)
        .ok_or(ApiError::NoRoute)?;
    let info = kind.info().clone();
    if !info.namespaced && p.namespace.is_some() {
        return Err(ApiError::NoRoute);
    }
    if info.namespaced && p.namespace.is_none() && p.name.is_some() {
        return Err(ApiError::NoRoute);
    }
    let sub = p.sub.as_deref();
    let sub_ok = match sub {
        None => true,
        Some("status") => info.status,
        Some("binding" | "log") => info.plural == "pods" && info.group.is_empty(),
        Some("finalize") => info.plural == "namespaces" && info.group.is_empty(),
        Some("token") => info.plural == "serviceaccounts" && info.group.is_empty(),
        Some("scale") => {
            info.group == "apps" && matches!(info.plural, "deployments" | "replicasets")
        }
        Some(_) => false,
    };
    if !sub_ok {
        return Err(ApiError::NoRoute);
    }
    let t = Target {
        kind: kind.clone(),
        namespace: p.namespace.clone(),
        name: p.name.clone(),
    };
    let mut allowed_fields = vec!["metadata.name", "metadata.namespace"];
    allowed_fields.extend_from_slice(info.fields);
    let method = req.method().clone();
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let table = if method == Method::GET {
        table::negotiate(accept, &q)?
    } else {
        None
    };
    match (method, p.name.is_some(), sub) {
        (Method::GET, false, None) => {
            let opts = list_options(&q, &allowed_fields)?;
            if parse_bool(&q, "watch") {
                return super::watch::watch(shared, &t, opts, &q, table).await;
            }
            let r = store.list(&t, &opts).await?;
            if let Some(tr) = table {
                return Ok(ok_json(&list_table(&tr, &info, &r)));
            }
            Ok(json_response(
                StatusCode::OK,
                list_json(&info.api_version(), info.list_kind, &r),
            ))
        }
        (Method::GET, true, None) if parse_bool(&q, "watch") => {
            // The legacy watch of one object by its path: a watch of the collection
            // narrowed to that name.
            let mut opts = list_options(&q, &allowed_fields)?;
            opts.fields.0.push(crate::selector::FieldRequirement {
                field: "metadata.name".into(),
                value: t.name().to_string(),
                equal: true,
            });
            let coll = Target {
                name: None,
                ..t.clone()
            };
            super::watch::watch(shared, &coll, opts, &q, table).await
        }
        (Method::GET, true, Some("log")) => super::podlog::proxy(shared, &t, &q).await,
        (Method::GET, true, Some("scale")) => {
            Ok(json_response(StatusCode::OK, store.get_scale(&t).await?))
        }
        (Method::PUT, true, Some("scale")) => {
            let w = write_options(&q, &req, false)?;
            let body = read_object(req).await?;
            let out = store.update_scale(&t, &body, &w).await?;
            Ok(json_response(StatusCode::OK, out))
        }
        (Method::PATCH, true, Some("scale")) => {
            let mt = media_type(&req);
            let kind = crate::patch::PatchType::from_media_type(&mt).ok_or(
                ApiError::UnsupportedMediaType(
                    "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json",
                ),
            )?;
            let w = write_options(&q, &req, false)?;
            let body = read_body(req).await?;
            let out = store.patch_scale(&t, kind, &body, &w).await?;
            Ok(json_response(StatusCode::OK, out))
        }
        (Method::GET, true, None | Some("status")) => {
            let obj = store
                .get(&t, q.get("resourceVersion").map(String::as_str))
                .await?;
            if let Some(tr) = table {
                let v: serde_json::Value = serde_json::from_slice(&obj)
                    .map_err(|e| ApiError::Internal(format!("stored object: {e}")))?;
                return Ok(ok_json(&table::of_object(&tr, &info, v, true)));
            }
            Ok(json_response(StatusCode::OK, obj))
        }
        (Method::POST, false, None) => {
            let w = write_options(&q, &req, false)?;
            let body = read_object(req).await?;
            if let Some((n, a)) = &node {
                let v = serde_json::from_slice(&body).unwrap_or_default();
                crate::authz::node::check_create(n, a, &v)?;
            }
            let warnings = field_validation(kind.as_ref(), &q, &body)?;
            let obj = store.create(&t, &body, &w).await?;
            Ok(with_warnings(
                json_response(StatusCode::CREATED, obj),
                &warnings,
            ))
        }
        (Method::POST, true, Some("token")) => {
            let body = read_object(req).await?;
            let ns = t.namespace.as_deref().unwrap_or_default();
            let out = crate::auth::tokenrequest::issue(
                store,
                &shared.auth.service_accounts,
                ns,
                t.name(),
                &body,
            )
            .await?;
            Ok(json_response(
                StatusCode::CREATED,
                serde_json::to_vec(&out).unwrap_or_default(),
            ))
        }
        (Method::POST, true, Some("binding")) => {
            let body = read_object(req).await?;
            store.bind(&t, &body, dry_run(&q)?).await?;
            Ok(json_response(StatusCode::CREATED, success_status()))
        }
        (Method::PUT, true, None | Some("status")) => {
            let w = write_options(&q, &req, false)?;
            let body = read_object(req).await?;
            let warnings = field_validation(kind.as_ref(), &q, &body)?;
            let obj = store.update(&t, &body, sub, &w).await?;
            Ok(with_warnings(json_response(StatusCode::OK, obj), &warnings))
        }
        (Method::PUT, true, Some("finalize")) => {
            let body = read_object(req).await?;
            Ok(json_response(
                StatusCode::OK,
                store.finalize(&t, &body).await?,
            ))
        }
        (Method::PATCH, true, None | Some("status")) => {
            let mt = media_type(&req);
            let Some(pt) = crate::patch::PatchType::from_media_type(&mt) else {
                return Err(ApiError::UnsupportedMediaType(
                    "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml",
                ));
            };
            let apply = pt == crate::patch::PatchType::Apply;
            let mut w = write_options(&q, &req, apply)?;
            w.validation =
                crate::fieldcheck::Directive::parse(q.get("fieldValidation").map(String::as_str))
                    .map_err(ApiError::BadRequest)?;
            let force = parse_bool(&q, "force");
            let mut body = read_body(req).await?;
            if apply {
                body = crate::patch::apply_config_json(body)?;
            }
            let p = store.patch(&t, pt, &body, sub, &w, force).await?;
            let code = if p.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(with_warnings(json_response(code, p.object), &p.warnings))
        }
        (Method::DELETE, true, None) => {
            let body = read_object(req).await?;
            let opts = delete_options(&q, &body)?;
            let d = store.delete(&t, &opts).await?;
            let code = if d.finished {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            Ok(json_response(
                code,
                serde_json::to_vec(&d.object).unwrap_or_default(),
            ))
        }
        (Method::DELETE, false, None) => {
            let lopts = list_options(&q, &allowed_fields)?;
            let body = read_object(req).await?;
            let dopts = delete_options(&q, &body)?;
            let items = store.delete_collection(&t, &lopts, &dopts).await?;
            let v = json!({ "kind": info.list_kind, "apiVersion": info.api_version(), "metadata": {}, "items": items });
            Ok(ok_json(&v))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// Applies `fieldValidation` to a create or update body: an error under Strict, the
/// warnings to send under Warn.
fn field_validation(
    kind: &dyn crate::kinds::Strategy,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<Vec<String>, ApiError> {
    let d = crate::fieldcheck::Directive::parse(q.get("fieldValidation").map(String::as_str))
        .map_err(ApiError::BadRequest)?;
    crate::fieldcheck::check(kind, d, body)
}

fn with_warnings(mut r: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = http::HeaderValue::from_str(&text) {
            r.headers_mut().append(http::header::WARNING, v);
        }
    }
    r
}

fn success_status() -> Vec<u8> {
    serde_json::to_vec(&json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 })).unwrap_or_default()
}

/// A list as a table: the list's metadata carries over, so kubectl can watch from it.
fn list_table(tr: &table::TableRequest, info: &ResourceInfo, r: &ListResult) -> serde_json::Value {
    let items = r
        .items
        .iter()
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect();
    table::of_list(tr, info, items, r.meta().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_print_as_go_durations() {
        assert_eq!(humantime(Duration::from_secs(60)), "1m0s");
        assert_eq!(humantime(Duration::from_secs(30)), "30s");
        assert_eq!(humantime(Duration::from_millis(250)), "250ms");
        assert_eq!(humantime(Duration::from_secs(3723)), "1h2m3s");
    }
}
