//! The operations on resources, one file each, dispatched from a parsed
//! [`ResourceRequest`]: `get.rs` (an object or its status), `list.rs` (list and watch),
//! `create.rs`, `update.rs` (an object or its status), `patch.rs` (every patch type and
//! server-side apply), `delete.rs` (delete and deletecollection), `scale.rs` (the scale
//! subresource), and `subresources.rs` (binding, log, token, finalize; the `bindings`
//! collection). Which subresources exist is the kind's to say; which operation runs is
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
mod subresources;
mod update;

/// Everything an operation gets: the shared state, the request parsed once, its target,
/// and the node whose agent asks (with what it asks), if one does.
pub struct Call<'a> {
    pub shared: &'a Shared,
    pub req: &'a ResourceRequest,
    pub query: &'a std::collections::HashMap<String, String>,
    pub target: Target,
    pub node: Option<(String, ResourceAttributes)>,
}

impl Call<'_> {
    pub fn info(&self) -> &ResourceInfo {
        self.target.kind.info()
    }
}

/// Runs the operation a resource request names.
pub async fn dispatch(
    shared: &Shared,
    r: &ResourceRequest,
    query: &std::collections::HashMap<String, String>,
    req: Request<Incoming>,
    node: Option<(String, ResourceAttributes)>,
) -> Result<Response<Body>, ApiError> {
    // `POST /api/v1/namespaces/<ns>/bindings`: a binding named in its body.
    if r.path.plural == "bindings" && r.path.group.is_empty() && r.path.version == "v1" {
        return subresources::bindings(shared, r, query, req).await;
    }
    let target = r.target().ok_or(ApiError::NoRoute)?;
    let info = target.kind.info();
    if !info.namespaced && target.namespace.is_some() {
        return Err(ApiError::NoRoute);
    }
    if info.namespaced && target.namespace.is_none() && target.name.is_some() {
        return Err(ApiError::NoRoute);
    }
    let sub = r.sub().map(str::to_string);
    if sub
        .as_deref()
        .is_some_and(|s| info.subresource(s).is_none())
    {
        return Err(ApiError::NoRoute);
    }
    let named = target.name.is_some();
    let call = Call {
        shared,
        req: r,
        query,
        target,
        node,
    };
    use Operation::*;
    match (r.op, named, sub.as_deref()) {
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
        (Get, true, Some("log")) => subresources::log(&call).await,
        (Create, true, Some("binding")) => subresources::binding(&call, req).await,
        (Create, true, Some("token")) => subresources::token(&call, req).await,
        (Update, true, Some("finalize")) => subresources::finalize(&call, req).await,
        _ => Err(ApiError::MethodNotAllowed),
    }
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

fn success_status() -> Vec<u8> {
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
