//! list and watch of a collection (and the legacy watch of one object by its path).

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{list_table, ok_json, table_of, Call};
use crate::error::ApiError;
use crate::http::options::list_options;
use crate::http::{json_response, Body};
use crate::kinds::served_items;
use crate::store::list::list_json;
use crate::store::Target;

pub async fn list(c: &Call<'_>, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let info = c.info();
    let table = table_of(req, c.query)?;
    let opts = list_options(c.query, &info.selectable_fields())?;
    let mut r = c.shared.store.list(&c.target, &opts).await?;
    // A CRD version's columns are its own, so they read the served objects; a built-in
    // kind's printer reads the stored ones.
    if table.is_none() || info.columns.is_some() {
        r.items = served_items(c.target.kind.as_ref(), std::mem::take(&mut r.items))?;
    }
    if let Some(tr) = table {
        return Ok(ok_json(&list_table(&tr, info, &r)));
    }
    Ok(json_response(
        StatusCode::OK,
        list_json(&info.api_version(), info.list_kind, &r),
    ))
}

pub async fn watch(c: &Call<'_>, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let table = table_of(req, c.query)?;
    let mut opts = list_options(c.query, &c.info().selectable_fields())?;
    let coll = match &c.target.name {
        None => c.target.clone(),
        // The legacy watch of one object by its path: a watch of the collection narrowed
        // to that name.
        Some(name) => {
            opts.fields.0.push(crate::selector::FieldRequirement {
                field: "metadata.name".into(),
                value: name.clone(),
                equal: true,
            });
            Target {
                name: None,
                ..c.target.clone()
            }
        }
    };
    crate::http::watch::watch(c.shared, &coll, opts, c.query, table).await
}
