//! Request bodies: read with a size limit, and objects decoded from JSON or Kubernetes
//! protobuf into JSON.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::error::ApiError;

/// Requests with a larger body get 413, as kube-apiserver's limit.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Reads the body, refusing more than [`MAX_BODY`] bytes. A body over the limit is still
/// read (and discarded, up to [`DRAIN_LIMIT`] bytes or five seconds) before the 413 is
/// sent: a client cut off while still sending sees a broken connection, not the Status.
/// The audit record takes it as the request's object (a patch, as sent).
pub async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let audit = crate::audit::Recorder::of(&req);
    let body = read_raw(req).await?;
    if let Some(a) = audit {
        a.request_body(&body, false);
    }
    Ok(body)
}

async fn read_raw(req: Request<Incoming>) -> Result<Bytes, ApiError> {
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

/// Reads a body that must be an object: JSON as is, Kubernetes protobuf turned into JSON.
/// The audit record takes the object (its metadata completes the record's `objectRef`).
pub async fn read_object(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let audit = crate::audit::Recorder::of(&req);
    let mt = super::request::media_type(req.headers());
    let object = match mt.as_str() {
        "application/json" | "" | "*/*" => read_raw(req).await?,
        crate::protobuf::CONTENT_TYPE => {
            let body = read_raw(req).await?;
            crate::protobuf::to_json(&body)
                .map(Bytes::from)
                .map_err(|e| {
                    ApiError::BadRequest(format!("the protobuf body could not be decoded: {e}"))
                })?
        }
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "application/json, application/vnd.kubernetes.protobuf",
            ))
        }
    };
    if let Some(a) = audit {
        a.request_body(&object, true);
    }
    Ok(object)
}
