//! From a request to an operation and back: the request parsed once
//! ([`ApiRequest`]), authentication, authorization (with the node restriction), in-flight
//! limits, `--request-timeout`, and the routes that are not kinds (discovery, OpenAPI,
//! health, metrics, the reviews of `crate::reviews`). Operations on resources are in `ops/`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::body::read_object;
use super::ops::ok_json;
use super::request::ApiRequest;
use super::route::{ResourcePath, Route};
use super::{error_response, full, json_response, Body, Shared};
use crate::discovery::aggregated;
use crate::error::ApiError;
use crate::{discovery, reviews};

fn accept(req: &Request<Incoming>) -> Option<&str> {
    req.headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
}

/// An aggregated discovery document, in its media type; it varies by Accept.
fn aggregated_response(v: &serde_json::Value) -> Response<Body> {
    let mut r = ok_json(v);
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(aggregated::MEDIA),
    );
    h.insert(http::header::VARY, http::HeaderValue::from_static("Accept"));
    r
}

pub async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let started = std::time::Instant::now();
    let parsed = ApiRequest::parse(req.method(), req.uri(), req.headers(), &shared.kinds);
    let (verb, resource) = parsed.metric_labels();
    let metrics = shared.metrics.clone();
    let gauge = if matches!(verb, "GET" | "LIST") {
        &metrics.inflight_readonly
    } else {
        &metrics.inflight_mutating
    };
    gauge.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let r = match handle_inner(shared, parsed, req).await {
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

async fn handle_inner(
    shared: Arc<Shared>,
    parsed: ApiRequest,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let health = |p| {
        let shared = shared.clone();
        let (path, q) = (parsed.path.clone(), parsed.query.clone());
        async move { Ok(super::health::serve(&shared, p, &path, &q).await) }
    };
    let attrs = parsed.attributes();
    let long_running = parsed.long_running();
    // The audit record (when auditing is on) hears who asks and what was decided.
    let audit = crate::audit::Recorder::of(&req);
    let version = parsed.resource.as_ref().map(|r| r.path.version.as_str());
    if let (Some(a), Some(Route::Health | Route::Ready | Route::Version)) = (&audit, &parsed.route)
    {
        a.begin(None, true, &attrs, version, long_running).await;
    }
    match parsed.route {
        Some(Route::Health) => return health(super::health::Probe::Live).await,
        Some(Route::Ready) => return health(super::health::Probe::Ready).await,
        Some(Route::Version) => return Ok(ok_json(&discovery::version())),
        _ => {}
    }
    let auth = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let authenticated = shared.auth.authenticate(auth, &shared.store).await;
    if let Some(a) = &audit {
        a.begin(authenticated.as_ref(), false, &attrs, version, long_running)
            .await;
    }
    let Some(user) = authenticated else {
        return Err(ApiError::Unauthorized);
    };
    let user = &user;
    tracing::Span::current().record("user", user.name.as_str());
    // Long-running requests and system:masters are not limited, as in kube-apiserver.
    let _slot = if long_running || user.groups.iter().any(|g| g == crate::authz::MASTERS) {
        None
    } else {
        shared.inflight.admit(req.method())?
    };
    match shared.authorizer.decide(user, &attrs) {
        crate::authz::Decision::Allow(why) => {
            if let Some(a) = &audit {
                a.decision(true, &why);
            }
        }
        crate::authz::Decision::Deny(why) => {
            if let Some(a) = &audit {
                a.decision(false, &why);
            }
            return Err(ApiError::Forbidden(crate::authz::forbidden_message(
                user, &attrs, &why,
            )));
        }
    }
    // What a node's agent writes is narrowed to its own objects.
    let node = match (crate::authz::node::node_of(user), &attrs) {
        (Some(n), crate::authz::Attributes::Resource(r)) => {
            if let Err(e) = crate::authz::node::check(n, r, &shared.store).await {
                // kube's node authorizer decides this: its refusal is a forbid.
                if let (Some(a), ApiError::Forbidden(why)) = (&audit, &e) {
                    a.decision(false, why);
                }
                return Err(e);
            }
            Some((n.to_string(), r.clone()))
        }
        _ => None,
    };
    // Requests that are not long-running end at --request-timeout (or the client's
    // shorter `timeout`) with 504.
    // `timeout=0` (or unset) means the server's default.
    let limit = match parsed.query.get("timeout").filter(|t| !t.is_empty()) {
        Some(t) => Some(
            crate::config::parse_duration(t)
                .map_err(|e| ApiError::BadRequest(format!("invalid timeout: {e}")))?,
        )
        .filter(|d| !d.is_zero())
        .map_or(shared.request_timeout, |d| d.min(shared.request_timeout)),
        None => shared.request_timeout,
    };
    // A leader's writes carry its lease's fence (`crate::store::fence`).
    let fence = crate::store::fence::Fence::of(req.headers())?;
    let served = crate::store::fence::scope(fence, serve_route(&shared, &parsed, req, user, node));
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

/// Brings the watch cache (and so the kinds CRDs define) up to the store's current
/// revision, within a bound, before a request for a group no kind serves is refused: a
/// CRD established through another replica is served here as soon as it is there.
/// None: not a group a CRD can define, or the cache did not catch up.
async fn caught_up(shared: &Shared, group: &str) -> Option<()> {
    if !group.contains('.') {
        return None;
    }
    let c = crate::store::cache::catch_up(
        &shared.store.cache,
        shared.store.storage.as_ref(),
        Duration::from_secs(3),
    )
    .await;
    matches!(c, Ok(Some(_))).then_some(())
}

async fn serve_route(
    shared: &Arc<Shared>,
    parsed: &ApiRequest,
    req: Request<Incoming>,
    user: &crate::auth::User,
    node: Option<(String, crate::authz::ResourceAttributes)>,
) -> Result<Response<Body>, ApiError> {
    let kinds = &shared.kinds;
    let q = &parsed.query;
    // A group version an APIService gives to a Service's backend is that backend's.
    if let Some(b) = shared.aggregator.for_path(&parsed.path) {
        return crate::aggregator::proxy::forward(&shared.aggregator, &b, req, user).await;
    }
    match &parsed.route {
        None => Err(ApiError::NoRoute),
        Some(Route::CoreVersions) if aggregated::wanted(accept(&req)) => {
            let core = discovery::resource_list(kinds, "", "v1").unwrap_or_default();
            let g = aggregated::group("", &[("v1".to_string(), core)]);
            Ok(aggregated_response(&aggregated::list(vec![g])))
        }
        Some(Route::CoreVersions) => Ok(ok_json(&discovery::core_versions(&shared.advertise))),
        Some(Route::Groups) => {
            let mut list = discovery::group_list(kinds);
            reviews::add_groups(&mut list);
            crate::http::resource_metrics::add_group(&mut list);
            let backed = shared.aggregator.groups();
            if let Some(groups) = list.get_mut("groups").and_then(|g| g.as_array_mut()) {
                for (name, versions) in &backed {
                    groups.retain(|g| g["name"] != name.as_str());
                    groups.push(crate::aggregator::group_json(name, versions));
                }
            }
            if !aggregated::wanted(accept(&req)) {
                return Ok(ok_json(&list));
            }
            let mut groups = Vec::new();
            for g in list["groups"].as_array().into_iter().flatten() {
                let name = g["name"].as_str().unwrap_or("");
                if let Some((_, backends)) = backed.iter().find(|(n, _)| n == name) {
                    let mut versions = Vec::new();
                    for b in backends {
                        let l = shared.aggregator.resources(b).await.unwrap_or_else(|| {
                            serde_json::json!({"groupVersion": format!("{name}/{}", b.version), "resources": []})
                        });
                        versions.push((b.version.clone(), l));
                    }
                    groups.push(aggregated::group(name, &versions));
                    continue;
                }
                let versions: Vec<(String, serde_json::Value)> = g["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| {
                        let v = v["version"].as_str()?;
                        let l = discovery::resource_list(kinds, name, v)
                            .or_else(|| reviews::resource_list(name, v))
                            .or_else(|| crate::http::resource_metrics::resource_list(name, v))?;
                        Some((v.to_string(), l))
                    })
                    .collect();
                groups.push(aggregated::group(name, &versions));
            }
            Ok(aggregated_response(&aggregated::list(groups)))
        }
        Some(Route::Group(g)) if shared.aggregator.groups().iter().any(|(n, _)| n == g) => {
            let groups = shared.aggregator.groups();
            let (name, versions) = groups
                .iter()
                .find(|(n, _)| n == g)
                .ok_or(ApiError::NoRoute)?;
            let mut doc = crate::aggregator::group_json(name, versions);
            doc["kind"] = "APIGroup".into();
            doc["apiVersion"] = "v1".into();
            Ok(ok_json(&doc))
        }
        Some(Route::Group(g)) => match discovery::group(kinds, g) {
            Some(v) => Some(v),
            None => caught_up(shared, g)
                .await
                .and_then(|()| discovery::group(kinds, g)),
        }
        .or_else(|| reviews::group(g))
        .or_else(|| crate::http::resource_metrics::group(g))
        .map(|v| ok_json(&v))
        .ok_or(ApiError::NoRoute),
        Some(Route::ResourceList { group, version }) => {
            match discovery::resource_list(kinds, group, version) {
                Some(v) => Some(v),
                None => caught_up(shared, group)
                    .await
                    .and_then(|()| discovery::resource_list(kinds, group, version)),
            }
            .or_else(|| reviews::resource_list(group, version))
            .or_else(|| crate::http::resource_metrics::resource_list(group, version))
            .map(|v| ok_json(&v))
            .ok_or(ApiError::NoRoute)
        }
        Some(Route::OpenApiV3Root) => Ok(shared.openapi.get().serve_index(req.headers())),
        Some(Route::OpenApiV3 { group, version }) => {
            let path = crate::openapi::paths::gv_path(group, version);
            shared
                .openapi
                .get()
                .serve_doc(&path, q.get("hash").map(String::as_str), req.headers())
                .ok_or(ApiError::NoRoute)
        }
        Some(Route::OpenApiV2) => shared.openapi.get().serve_v2(req.headers()),
        Some(Route::Metrics) => Ok(Response::builder()
            .status(StatusCode::OK)
            .header(
                http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .body(full(shared.metrics.render(&crate::metrics::Sources {
                cache: &shared.store.cache,
                etcd: &shared.etcd,
            })))
            .unwrap_or_else(|_| Response::new(full(Bytes::new())))),
        Some(Route::Resource(p)) if reviews::find(&p.group, &p.version, &p.plural).is_some() => {
            review(shared, user, p, req).await
        }
        Some(Route::Resource(p)) if crate::http::resource_metrics::serves(p) => {
            let v = crate::http::resource_metrics::serve(shared, req.method(), p, q).await?;
            Ok(ok_json(&v))
        }
        Some(Route::Resource(p)) => match &parsed.resource {
            Some(r)
                if r.kind.is_none()
                    && kinds.collection(&p.group, &p.version, &p.plural).is_none() =>
            {
                // Perhaps a custom resource whose definition this replica has not seen yet.
                let mut r = r.clone();
                if caught_up(shared, &p.group).await.is_some() {
                    r.kind = kinds.find(&p.group, &p.version, &p.plural);
                }
                super::ops::dispatch(shared, user, &r, q, req, node).await
            }
            Some(r) => super::ops::dispatch(shared, user, r, q, req, node).await,
            None => Err(ApiError::NoRoute),
        },
        Some(Route::Health | Route::Ready | Route::Version) => Err(ApiError::NoRoute),
    }
}

/// `POST` of a review (`crate::reviews`): `/apis/authorization.k8s.io/v1/`
/// `selfsubject{access,rules}reviews` and `subjectaccessreviews`,
/// `/apis/authentication.k8s.io/v1/selfsubjectreviews` (`kubectl auth whoami`) and
/// `tokenreviews`. RBAC has already allowed `create` on it.
async fn review(
    shared: &Shared,
    user: &crate::auth::User,
    p: &ResourcePath,
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
        "subjectaccessreviews" => crate::authz::review::subject_access_review(az, &body)?,
        "tokenreviews" => {
            crate::auth::review::token_review(&shared.auth, &shared.store, &body).await?
        }
        _ => return Err(ApiError::NoRoute),
    };
    Ok(json_response(
        StatusCode::CREATED,
        serde_json::to_vec(&out).unwrap_or_default(),
    ))
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
