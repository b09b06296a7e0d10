//! A small HTTPS admission webhook server for tests and benchmarks, with a certificate
//! from a CA of its own (the caBundle a configuration gives): `/mutate` adds the label
//! `injected-by: webhook` and a warning, `/validate` refuses names starting with
//! `forbidden-` (403), `/slow` answers after 10 s, anything else allows. `/convert` is a
//! CRD conversion webhook between `v1` (`spec.cronSpec`) and `v2` (`spec.schedule`);
//! `/convert-fail` refuses every conversion.

use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// What the test's webhook server answers, by path.
async fn answer(path: &str, review: &Value, calls: &AtomicUsize) -> Value {
    calls.fetch_add(1, Ordering::SeqCst);
    let r = &review["request"];
    let uid = r["uid"].clone();
    let name = r["name"].as_str().unwrap_or("");
    match path {
        "/mutate" => {
            let ops = if r["object"]["metadata"]["labels"].is_object() {
                json!([{"op": "add", "path": "/metadata/labels/injected-by", "value": "webhook"}])
            } else {
                json!([{"op": "add", "path": "/metadata/labels", "value": {"injected-by": "webhook"}}])
            };
            let patch = k8s_openapi::ByteString(serde_json::to_vec(&ops).unwrap());
            json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": patch,
                   "warnings": ["mutated by the test webhook"]})
        }
        "/validate" if name.starts_with("forbidden-") => json!({"uid": uid, "allowed": false,
            "status": {"code": 403, "reason": "Forbidden", "message": "the name is forbidden"}}),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            json!({"uid": uid, "allowed": true})
        }
        _ => json!({"uid": uid, "allowed": true}),
    }
}

/// A ConversionReview's answer: `/convert` moves `spec.cronSpec` (v1) to `spec.schedule`
/// (v2) and back; `/convert-fail` fails.
fn convert(path: &str, review: &Value, calls: &AtomicUsize) -> Value {
    calls.fetch_add(1, Ordering::SeqCst);
    let r = &review["request"];
    let desired = r["desiredAPIVersion"].as_str().unwrap_or("");
    let response = if path == "/convert-fail" {
        json!({"uid": r["uid"], "result": {"status": "Failure", "message": "no conversion today"}})
    } else {
        let to_v2 = desired.ends_with("/v2");
        let converted: Vec<Value> = r["objects"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| {
                let mut o = o.clone();
                let spec = o["spec"]
                    .as_object_mut()
                    .map(std::mem::take)
                    .unwrap_or_default();
                let (from, to) = if to_v2 {
                    ("cronSpec", "schedule")
                } else {
                    ("schedule", "cronSpec")
                };
                let mut out = serde_json::Map::new();
                for (k, v) in spec {
                    out.insert(if k == from { to.to_string() } else { k }, v);
                }
                o["spec"] = Value::Object(out);
                o["apiVersion"] = json!(desired);
                o
            })
            .collect();
        json!({"uid": r["uid"], "convertedObjects": converted, "result": {"status": "Success"}})
    };
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview", "response": response})
}

/// Serves the webhooks on 127.0.0.1 until the test ends; returns the port, the CA's PEM
/// and the number of calls so far.
pub async fn webhook_server(dir: &Path) -> (u16, Vec<u8>, Arc<AtomicUsize>) {
    let issued = apiserver::tls::issue(
        dir,
        "webhook",
        "webhook",
        &["127.0.0.1".to_string()],
        apiserver::tls::Usage::Server,
    )
    .expect("a serving certificate");
    let material = apiserver::tls::from_files(&issued.cert, &issued.key).expect("the key pair");
    let acceptor =
        tokio_rustls::TlsAcceptor::from(apiserver::tls::server_config(&material).expect("TLS"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, calls) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let calls = calls.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let review: Value = body
                            .ok()
                            .and_then(|b| serde_json::from_slice(&b).ok())
                            .unwrap_or_default();
                        let resp = if path.starts_with("/convert") {
                            convert(&path, &review, &calls)
                        } else {
                            json!({"apiVersion": "admission.k8s.io/v1",
                                "kind": "AdmissionReview",
                                "response": answer(&path, &review, &calls).await})
                        };
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                            serde_json::to_vec(&resp).unwrap(),
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, std::fs::read(&issued.ca).unwrap(), calls)
}

/// A webhook of a configuration: `name` calls `url` (trusting `ca`, the caBundle as
/// JSON) on creates and updates of core/v1 `resource`, with the fields of `extra` added.
pub fn hook(name: &str, url: String, ca: &Value, resource: &str, extra: Value) -> Value {
    let mut h = json!({
        "name": name, "admissionReviewVersions": ["v1"], "sideEffects": "None",
        "clientConfig": {"url": url, "caBundle": ca},
        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""],
                   "apiVersions": ["v1"], "resources": [resource]}]
    });
    if let (Some(h), Some(x)) = (h.as_object_mut(), extra.as_object()) {
        h.extend(x.clone());
    }
    h
}
