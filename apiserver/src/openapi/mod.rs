//! OpenAPI v3 as kube-apiserver serves it: `/openapi/v3` lists one document per
//! group-version at a URL that names the document's hash; a document fetched by its
//! current hash may be cached for good (`Cache-Control: public, immutable`), one asked for
//! by an old hash is redirected to the current one, and the index answers `If-None-Match`.
//! The documents are built from the served kinds, and again (on the next request) after
//! the table changes, when a CustomResourceDefinition adds, changes or removes kinds
//! ([`Live`]).
//!
//! `paths.rs` builds the operations, `schemas.rs` the schemas (from `k8s-openapi`), `v2.rs`
//! the `/openapi/v2` document from them.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::kinds::Kinds;
use crate::response::{full, Body};

pub mod paths;
pub mod schemas;
pub mod v2;

/// One served document.
pub struct Doc {
    pub body: Bytes,
    /// A hash of the body (hex), which is also its ETag.
    pub hash: String,
}

impl Doc {
    fn new(v: &Value) -> Self {
        let body = serde_json::to_vec(v).unwrap_or_default();
        let hash = hash(&body);
        Doc {
            body: Bytes::from(body),
            hash,
        }
    }
}

/// The index and every group-version document, and the v2 document of them all.
pub struct OpenApi {
    index: Doc,
    /// Built on first request: few clients ask for it.
    v2: std::sync::OnceLock<Doc>,
    /// By path: `api/v1`, `apis/apps/v1`.
    docs: BTreeMap<String, Doc>,
}

/// The documents of the kinds served now: rebuilt when the table's generation moves.
pub struct Live {
    kinds: Kinds,
    current: std::sync::RwLock<(u64, std::sync::Arc<OpenApi>)>,
}

impl Live {
    pub fn new(kinds: &Kinds) -> Self {
        let g = kinds.generation();
        Live {
            kinds: kinds.clone(),
            current: std::sync::RwLock::new((g, std::sync::Arc::new(OpenApi::new(kinds)))),
        }
    }

    /// The documents as of the current table.
    pub fn get(&self) -> std::sync::Arc<OpenApi> {
        let g = self.kinds.generation();
        {
            let cur = self.current.read().unwrap_or_else(|p| p.into_inner());
            if cur.0 == g {
                return cur.1.clone();
            }
        }
        let next = std::sync::Arc::new(OpenApi::new(&self.kinds));
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        *cur = (g, next.clone());
        next
    }
}

/// FNV-1a, 64 bits, twice with different seeds: changes whenever the document does.
fn hash(b: &[u8]) -> String {
    let fnv = |seed: u64| {
        b.iter()
            .fold(seed, |h, &x| (h ^ x as u64).wrapping_mul(0x100000001b3))
    };
    format!(
        "{:016X}{:016X}",
        fnv(0xcbf29ce484222325),
        fnv(0x84222325cbf29ce4)
    )
}

impl OpenApi {
    pub fn new(kinds: &Kinds) -> Self {
        let mut docs = BTreeMap::new();
        for k in kinds.iter() {
            let i = k.info();
            let p = paths::gv_path(i.group, i.version);
            if docs.contains_key(&p) {
                continue;
            }
            if let Some(doc) = paths::group_version(kinds, i.group, i.version) {
                docs.insert(p, Doc::new(&doc));
            }
        }
        let index: Map<String, Value> = docs
            .iter()
            .map(|(p, d)| {
                let url = format!("/openapi/v3/{p}?hash={}", d.hash);
                (p.clone(), json!({ "serverRelativeURL": url }))
            })
            .collect();
        OpenApi {
            index: Doc::new(&json!({ "paths": index })),
            v2: std::sync::OnceLock::new(),
            docs,
        }
    }

    /// `GET /openapi/v2`, in JSON (the protobuf form is not served).
    pub fn serve_v2(&self, headers: &HeaderMap) -> Result<Response<Body>, crate::error::ApiError> {
        let accept = headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let json_ok = accept.is_empty()
            || accept.split(',').any(|t| {
                let t = t.split(';').next().unwrap_or("").trim();
                matches!(t, "application/json" | "application/*" | "*/*")
            });
        if !json_ok {
            return Err(crate::error::ApiError::NotAcceptable("application/json"));
        }
        let doc = self.v2.get_or_init(|| {
            let v3: Vec<Value> = self
                .docs
                .values()
                .filter_map(|d| serde_json::from_slice(&d.body).ok())
                .collect();
            let version = format!("v1.{}.0", crate::discovery::KUBE_MINOR);
            Doc::new(&v2::document(&v3, &version))
        });
        Ok(serve(doc, headers, false))
    }

    /// `GET /openapi/v3`.
    pub fn serve_index(&self, headers: &HeaderMap) -> Response<Body> {
        serve(&self.index, headers, false)
    }

    /// `GET /openapi/v3/<path>[?hash=H]`; `None` if no such group-version is served.
    pub fn serve_doc(
        &self,
        path: &str,
        hash: Option<&str>,
        headers: &HeaderMap,
    ) -> Option<Response<Body>> {
        let doc = self.docs.get(path)?;
        match hash {
            Some(h) if h != doc.hash => {
                let location = format!("/openapi/v3/{path}?hash={}", doc.hash);
                Some(
                    Response::builder()
                        .status(StatusCode::MOVED_PERMANENTLY)
                        .header(http::header::LOCATION, location)
                        .body(full(Bytes::new()))
                        .unwrap_or_else(|_| Response::new(full(Bytes::new()))),
                )
            }
            Some(_) => Some(serve(doc, headers, true)),
            None => Some(serve(doc, headers, false)),
        }
    }

    /// The document of one group-version, parsed (for tests and tools).
    pub fn document(&self, path: &str) -> Option<Value> {
        serde_json::from_slice(&self.docs.get(path)?.body).ok()
    }
}

fn serve(doc: &Doc, headers: &HeaderMap, immutable: bool) -> Response<Body> {
    let etag = format!("\"{}\"", doc.hash);
    let not_modified = headers
        .get(http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut b = Response::builder()
        .header(http::header::ETAG, &etag)
        .header(http::header::VARY, "Accept");
    if immutable {
        let expires = std::time::SystemTime::now() + std::time::Duration::from_secs(365 * 86400);
        b = b
            .header(http::header::CACHE_CONTROL, "public, immutable")
            .header(http::header::EXPIRES, httpdate(expires));
    }
    let r = if not_modified {
        b.status(StatusCode::NOT_MODIFIED).body(full(Bytes::new()))
    } else {
        b.status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(full(doc.body.clone()))
    };
    r.unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

/// An HTTP date (RFC 7231 IMF-fixdate).
fn httpdate(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let ts = k8s_openapi::jiff::Timestamp::from_second(secs)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    ts.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_each_document_by_its_hash() {
        let api = OpenApi::new(&Kinds::all());
        let idx: Value = serde_json::from_slice(&api.index.body).unwrap_or_default();
        let url = idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap_or("");
        let hash = url.split("hash=").nth(1).unwrap_or("");
        let headers = HeaderMap::new();
        let ok = api.serve_doc("apis/apps/v1", Some(hash), &headers);
        let ok = ok.expect("apps/v1 is served");
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(
            ok.headers()[http::header::CACHE_CONTROL],
            "public, immutable"
        );
        let old = api.serve_doc("apis/apps/v1", Some("0"), &headers);
        assert_eq!(old.map(|r| r.status()), Some(StatusCode::MOVED_PERMANENTLY));
        let mut cond = HeaderMap::new();
        cond.insert(
            http::header::IF_NONE_MATCH,
            format!("\"{}\"", api.index.hash).parse().expect("header"),
        );
        assert_eq!(api.serve_index(&cond).status(), StatusCode::NOT_MODIFIED);
        assert!(api.serve_doc("apis/nope/v1", None, &headers).is_none());
    }
}
