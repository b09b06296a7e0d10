//! list: where each resourceVersion semantics is served from, selectors, and pagination
//! with continue tokens.
//!
//! | resourceVersion | limit | served from                                               |
//! |-----------------|-------|-----------------------------------------------------------|
//! | unset           | no    | cache once it caught up with a linearizable read; else kvstore |
//! | unset           | yes   | kvstore at its current revision                           |
//! | "0"             | any   | cache as it is (limit ignored, as Kubernetes does)        |
//! | N (NotOlderThan)| no    | cache once at N or newer; else kvstore                    |
//! | N, Exact / limit| any   | kvstore at revision N (410 if compacted)                  |
//! | continue token  | yes   | kvstore at the token's revision (410 if compacted)        |

use base64::Engine;
use bytes::Bytes;

use serde_json::Value;

use super::cache::{self, CachedObj};
use super::{decode_stored, parse_rv, Store, Target};
use crate::error::ApiError;
use crate::etcd::{prefix_end, EtcdError};
use crate::selector::{FieldSelector, LabelSelector};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RvMatch {
    NotOlderThan,
    Exact,
}

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<i64>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub rv_match: Option<RvMatch>,
}

pub struct ListResult {
    pub items: Vec<Bytes>,
    pub resource_version: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    v: String,
    rv: i64,
    start: String,
}

const TOKEN_VERSION: &str = "meta.k8s.io/v1";

fn encode_token(rv: i64, start: &str) -> String {
    let t = Token {
        v: TOKEN_VERSION.into(),
        rv,
        start: start.into(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_token(s: &str, prefix: &str) -> Result<Token, ApiError> {
    let bad = |why: &str| ApiError::BadRequest(format!("continue key is not valid: {why}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| bad("not base64"))?;
    let t: Token = serde_json::from_slice(&raw).map_err(|_| bad("not a continue token"))?;
    if t.v != TOKEN_VERSION {
        return Err(bad(
            "incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        ));
    }
    if !t.start.starts_with(prefix) || t.rv <= 0 {
        return Err(bad("the token does not belong to this list"));
    }
    Ok(t)
}

const TOKEN_TOO_OLD: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

impl ListOptions {
    /// Checks the combinations Kubernetes forbids.
    pub fn check(&self) -> Result<(), ApiError> {
        let rv = self.resource_version.as_deref().unwrap_or("");
        if self.rv_match.is_some() && rv.is_empty() {
            return Err(ApiError::BadRequest(
                "resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
            ));
        }
        if self.rv_match == Some(RvMatch::Exact) && rv == "0" {
            return Err(ApiError::BadRequest(
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"".into(),
            ));
        }
        if self.continue_token.is_some() && (!rv.is_empty() && rv != "0") {
            return Err(ApiError::BadRequest(
                "specifying resource version is not allowed when using continue".into(),
            ));
        }
        if self.limit.is_some_and(|l| l < 0) {
            return Err(ApiError::BadRequest("limit must be non-negative".into()));
        }
        Ok(())
    }

    fn selects(&self, o: &CachedObj) -> bool {
        self.labels.matches_with(|k| o.labels.get(k)) && self.fields.matches(&o.fields)
    }

    fn filtered(&self) -> bool {
        !self.labels.is_empty() || !self.fields.is_empty()
    }
}

impl Store {
    pub async fn list(&self, t: &Target, opts: &ListOptions) -> Result<ListResult, ApiError> {
        opts.check()?;
        let limit = opts.limit.filter(|l| *l > 0);
        if let Some(tok) = &opts.continue_token {
            let tok = decode_token(tok, &t.prefix())?;
            return self
                .list_etcd(t, opts, tok.rv, Some(tok.start), limit)
                .await
                .map_err(|e| match e {
                    ApiError::Expired(_) => ApiError::Expired(TOKEN_TOO_OLD.into()),
                    e => e,
                });
        }
        let rv = opts.resource_version.as_deref().filter(|r| !r.is_empty());
        match (rv, limit) {
            (None, None) => {
                if cache::catch_up(&self.cache, self.storage.as_ref(), self.cache_wait)
                    .await?
                    .is_some()
                {
                    if let Some(r) = self.list_cache(t, opts) {
                        return Ok(r);
                    }
                }
                self.list_etcd(t, opts, 0, None, None).await
            }
            (None, Some(l)) => self.list_etcd(t, opts, 0, None, Some(l)).await,
            (Some("0"), _) => match self.list_cache(t, opts) {
                Some(r) => Ok(r),
                None => self.list_etcd(t, opts, 0, None, None).await,
            },
            (Some(rv), l) => {
                let n = parse_rv(rv)?;
                if opts.rv_match == Some(RvMatch::Exact) || l.is_some() {
                    return self
                        .list_etcd(t, opts, n, None, l)
                        .await
                        .map_err(|e| match e {
                            ApiError::Expired(_) => ApiError::Expired(format!(
                                "The resourceVersion for the provided list is too old. ({n})"
                            )),
                            e => e,
                        });
                }
                if self.cache.wait_for(n, self.cache_wait).await {
                    if let Some(r) = self.list_cache(t, opts) {
                        return Ok(r);
                    }
                }
                let r = self.list_etcd(t, opts, 0, None, None).await?;
                if r.resource_version < n {
                    return Err(ApiError::Timeout(format!(
                        "Too large resource version: {n}, current: {}",
                        r.resource_version
                    )));
                }
                Ok(r)
            }
        }
    }

    fn list_cache(&self, t: &Target, opts: &ListOptions) -> Option<ListResult> {
        let (objs, rev) = self.cache.list(&t.prefix())?;
        let items = objs
            .into_iter()
            .filter(|o| opts.selects(o))
            .map(|o| o.json.clone())
            .collect();
        Some(ListResult {
            items,
            resource_version: rev,
            continue_token: None,
            remaining: None,
        })
    }

    /// Reads from the kvstore at `rev` (0: current), from `start` (a key inside the prefix),
    /// up to `limit` selected items.
    async fn list_etcd(
        &self,
        t: &Target,
        opts: &ListOptions,
        rev: i64,
        start: Option<String>,
        limit: Option<i64>,
    ) -> Result<ListResult, ApiError> {
        let prefix = t.prefix();
        let end = prefix_end(prefix.as_bytes());
        let mut from = start.unwrap_or_else(|| prefix.clone()).into_bytes();
        let mut rev = rev;
        let mut items = Vec::new();
        let page = match limit {
            Some(l) if !opts.filtered() => l,
            Some(l) => (l * 2).max(100),
            None => 5000,
        };
        loop {
            let r = self
                .storage
                .range(&from, &end, rev, page)
                .await
                .map_err(|e| match e {
                    EtcdError::Compacted(m) => ApiError::Expired(m),
                    e => e.into(),
                })?;
            if rev == 0 {
                rev = r.revision;
            }
            let n = r.kvs.len();
            for (i, kv) in r.kvs.iter().enumerate() {
                let Some(o) = CachedObj::from_kv(&self.kinds, &kv.key, &kv.value, kv.mod_revision)
                else {
                    continue;
                };
                if !opts.selects(&o) {
                    continue;
                }
                items.push(o.json.clone());
                if limit.is_some_and(|l| items.len() as i64 >= l) && (i + 1 < n || r.more) {
                    let mut next = kv.key.clone();
                    next.push(0);
                    let next = String::from_utf8_lossy(&next).into_owned();
                    let remaining = (!opts.filtered()).then(|| r.count - (i as i64 + 1));
                    return Ok(ListResult {
                        items,
                        resource_version: rev,
                        continue_token: Some(encode_token(rev, &next)),
                        remaining,
                    });
                }
            }
            match r.kvs.last() {
                Some(kv) if r.more => {
                    from = kv.key.clone();
                    from.push(0);
                }
                _ => {
                    return Ok(ListResult {
                        items,
                        resource_version: rev,
                        continue_token: None,
                        remaining: None,
                    })
                }
            }
        }
    }

    /// Every selected object, consistently, as values (for deletecollection).
    pub(crate) async fn list_values(
        &self,
        t: &Target,
        opts: &ListOptions,
    ) -> Result<Vec<Value>, ApiError> {
        let r = self.list_etcd(t, opts, 0, None, None).await?;
        r.items
            .iter()
            .map(|b| {
                decode_stored(b, 0).map(|mut v| {
                    strip(&mut v);
                    v
                })
            })
            .collect()
    }
}

fn strip(v: &mut Value) {
    // decode_stored set resourceVersion "0"; the caller does not need it.
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
}

impl ListResult {
    /// The list's metadata: resourceVersion, continue, remainingItemCount.
    pub fn meta(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut meta = serde_json::Map::new();
        meta.insert(
            "resourceVersion".into(),
            self.resource_version.to_string().into(),
        );
        if let Some(c) = &self.continue_token {
            meta.insert("continue".into(), c.clone().into());
        }
        if let Some(n) = self.remaining {
            meta.insert("remainingItemCount".into(), n.into());
        }
        meta
    }
}

/// The JSON of a list response.
pub fn list_json(api_version: &str, list_kind: &str, r: &ListResult) -> Vec<u8> {
    let meta = r.meta();
    let head =
        serde_json::json!({ "kind": list_kind, "apiVersion": api_version, "metadata": meta });
    let mut out = serde_json::to_vec(&head).unwrap_or_default();
    out.pop(); // the closing brace
    out.extend_from_slice(b",\"items\":[");
    for (i, it) in r.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(it);
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_other_lists() {
        let t = encode_token(42, "/registry/pods/default/b\0");
        let d = decode_token(&t, "/registry/pods/default/").unwrap();
        assert_eq!((d.rv, d.start.as_str()), (42, "/registry/pods/default/b\0"));
        assert!(decode_token(&t, "/registry/secrets/").is_err());
        assert!(decode_token("garbage!", "/registry/").is_err());
    }

    #[test]
    fn forbidden_combinations() {
        let o = ListOptions {
            rv_match: Some(RvMatch::Exact),
            ..Default::default()
        };
        assert!(o.check().is_err());
        let o = ListOptions {
            rv_match: Some(RvMatch::Exact),
            resource_version: Some("0".into()),
            ..Default::default()
        };
        assert!(o.check().is_err());
        let o = ListOptions {
            resource_version: Some("5".into()),
            ..Default::default()
        };
        assert!(o.check().is_ok());
    }

    #[test]
    fn list_json_has_items_after_metadata() {
        let r = ListResult {
            items: vec![Bytes::from_static(b"{\"a\":1}")],
            resource_version: 7,
            continue_token: None,
            remaining: None,
        };
        let v: Value = serde_json::from_slice(&list_json("v1", "PodList", &r)).unwrap();
        assert_eq!(v["metadata"]["resourceVersion"], "7");
        assert_eq!(v["items"][0]["a"], 1);
    }
}
