//! The operations on resources, one file each, dispatched from a parsed
//! [`ResourceRequest`]: `get.rs` (an object or its status), `list.rs` (list and watch),
//! `create.rs`, `update.rs` (an object or its status), `patch.rs` (every patch type and
//! server-side apply), `delete.rs` (delete and deletecollection), `scale.rs` (the scale
//! subresource). A subresource that is an operation of its own (a pod's `binding`, a
//! namespace's `finalize`) is its kind's: it runs the kind's [`crate::kinds::Action`].
//! Which subresources exist is the kind's to say; which generic operation runs is
//! decided here alone.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::request::{Operation, ResourceRequest};
use super::{json_response, Body, Shared};
use crate::authz::ResourceAttributes;
use crate::error::ApiError;
use crate::kinds::ResourceInfo;
use crate::store::list::ListResult;
use crate::store::Target;
use crate::table;

mod create;
mod delete;
mod get;
mod list;
mod patch;
mod scale;
mod update;

/// Everything an operation gets: the shared state, the request parsed once, its target,
/// and the node whose agent asks (with what it asks), if one does.
pub struct Call<'a> {
    pub shared: &'a Shared,
    pub user: &'a crate::auth::User,
    pub req: &'a ResourceRequest,
    pub query: &'a std::collections::HashMap<String, String>,
    pub target: Target,
    pub node: Option<(String, ResourceAttributes)>,
}

impl Call<'_> {
    pub fn info(&self) -> &ResourceInfo {
        self.target.kind.info()
    }

    /// The request's write options, with what the writer may store (RBAC escalation).
    pub fn write_options(
        &self,
        req: &Request<Incoming>,
        apply: bool,
    ) -> Result<crate::store::Write, ApiError> {
        let mut w = crate::http::options::write_options(self.query, req, apply)?;
        w.check =
            crate::authz::escalation::check_for(&self.shared.authorizer, self.user, self.info());
        w.external = self.shared.webhooks.for_request(self.user);
        Ok(w)
    }
}

/// Runs the operation a resource request names.
pub async fn dispatch(
    shared: &Shared,
    user: &crate::auth::User,
    r: &ResourceRequest,
    query: &std::collections::HashMap<String, String>,
    req: Request<Incoming>,
    node: Option<(String, ResourceAttributes)>,
) -> Result<Response<Body>, ApiError> {
    let Some(target) = r.target() else {
        return collection(shared, user, r, query, req, node).await;
    };
    let info = target.kind.info();
    if !info.namespaced && target.namespace.is_some() {
        return Err(ApiError::NoRoute);
    }
    if info.namespaced && target.namespace.is_none() && target.name.is_some() {
        return Err(ApiError::NoRoute);
    }
    let sub = match r.sub() {
        Some(s) => Some(*info.subresource(s).ok_or(ApiError::NoRoute)?),
        None => None,
    };
    let named = target.name.is_some();
    let call = Call {
        shared,
        user,
        req: r,
        query,
        target,
        node,
    };
    if let Some(s) = sub {
        if let Some(action) = s.action {
            if !named || !s.verbs.contains(&r.op.verb()) {
                return Err(ApiError::MethodNotAllowed);
            }
            return action(&call, req).await;
        }
    }
    use Operation::*;
    match (r.op, named, sub.map(|s| s.name)) {
        (List, false, None) => list::list(&call, &req).await,
        (Watch, _, None) => list::watch(&call, &req).await,
        (Get, true, None | Some("status")) => get::get(&call, &req).await,
        (Create, false, None) => create::create(&call, req).await,
        (Update, true, None | Some("status")) => update::update(&call, req).await,
        (Patch | Apply, true, None | Some("status")) => patch::patch(&call, req).await,
        (Delete, true, None) => delete::delete(&call, req).await,
        (DeleteCollection, false, None) => delete::delete_collection(&call, req).await,
        (Get, true, Some("scale")) => scale::get(&call).await,
        (Update, true, Some("scale")) => scale::update(&call, req).await,
        (Patch, true, Some("scale")) => scale::patch(&call, req).await,
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// A create-only collection a kind's subresource serves (core/v1 `bindings`: a pod's
/// binding, with the pod named in the body).
async fn collection(
    shared: &Shared,
    user: &crate::auth::User,
    r: &ResourceRequest,
    query: &std::collections::HashMap<String, String>,
    req: Request<Incoming>,
    node: Option<(String, ResourceAttributes)>,
) -> Result<Response<Body>, ApiError> {
    let (kind, sub) = shared
        .kinds
        .collection(&r.path.group, &r.path.version, &r.path.plural)
        .ok_or(ApiError::NoRoute)?;
    let action = sub.action.ok_or(ApiError::NoRoute)?;
    let info = kind.info();
    if r.op != Operation::Create
        || r.path.name.is_some()
        || r.path.sub.is_some()
        || info.namespaced != r.path.namespace.is_some()
    {
        return Err(ApiError::MethodNotAllowed);
    }
    let call = Call {
        shared,
        user,
        req: r,
        query,
        target: Target {
            kind,
            namespace: r.path.namespace.clone(),
            name: None,
        },
        node,
    };
    action(&call, req).await
}

pub(super) fn ok_json(v: &serde_json::Value) -> Response<Body> {
    json_response(StatusCode::OK, serde_json::to_vec(v).unwrap_or_default())
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

pub(crate) fn success_status() -> Vec<u8> {
    crate::error::status_body(&crate::error::success_status(201))
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

/// The Table a GET asks for in its Accept header, if any.
fn table_of(
    req: &Request<Incoming>,
    q: &std::collections::HashMap<String, String>,
) -> Result<Option<table::TableRequest>, ApiError> {
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    table::negotiate(accept, q)
}
