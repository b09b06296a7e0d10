//! The options of a request, from its query (and, for deletes, its body): list and
//! watch selectors and paging, delete options, a write's field manager and dry run, and
//! field validation. Each is checked once, with kube-apiserver's messages.

use std::collections::HashMap;

use http::Request;
use hyper::body::Incoming;

use crate::error::{ApiError, FieldError};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{DeleteOptions, ListOptions, RvMatch, Write};

pub fn list_options(
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

pub fn delete_options(q: &HashMap<String, String>, body: &[u8]) -> Result<DeleteOptions, ApiError> {
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
pub fn write_options(
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

pub fn dry_run(q: &HashMap<String, String>) -> Result<bool, ApiError> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "dryRun: Unsupported value: {other:?}: supported values: \"All\""
        ))),
    }
}

/// Applies `fieldValidation` to a create or update body: an error under Strict, the
/// warnings to send under Warn.
pub fn field_validation(
    kind: &dyn crate::kinds::Strategy,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<Vec<String>, ApiError> {
    let d = crate::fieldcheck::Directive::parse(q.get("fieldValidation").map(String::as_str))
        .map_err(ApiError::BadRequest)?;
    let i = kind.info();
    crate::fieldcheck::check(d, i.kind, i.version, || kind.unknown_fields(body))
}
