//! A small aggregated API server for tests (the sample-apiserver's `wardle.example.com`
//! group): HTTPS for the Service name `api.wardle.svc`, from a CA of its own (the
//! APIService's caBundle), accepting only clients with a certificate from the front-proxy
//! CA it is given. It lists `flunders`, each answer naming who the front proxy said asks.

use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio_rustls::rustls;

pub const GROUP: &str = "wardle.example.com";
pub const VERSION: &str = "v1alpha1";

/// What the server saw of the last request for flunders.
#[derive(Default, Clone, Debug)]
pub struct Seen {
    pub user: Option<String>,
    pub groups: Vec<String>,
    pub authorization: bool,
}

fn answer(path: &str, seen: &Seen) -> (u16, Value) {
    let gv = format!("{GROUP}/{VERSION}");
    let flunder = |ns: &str, name: &str| {
        json!({"apiVersion": gv, "kind": "Flunder",
               "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-01-01T00:00:00Z"},
               "spec": {"askedBy": seen.user, "groups": seen.groups}})
    };
    let rest = path.strip_prefix(&format!("/apis/{gv}")).unwrap_or("");
    let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match parts.as_slice() {
        [] => (
            200,
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": [{"name": "flunders", "singularName": "flunder", "namespaced": true,
                           "kind": "Flunder", "verbs": ["get", "list"]}]}),
        ),
        ["namespaces", ns, "flunders"] => (
            200,
            json!({"apiVersion": gv, "kind": "FlunderList",
            "metadata": {"resourceVersion": "1"}, "items": [flunder(ns, "first")]}),
        ),
        ["namespaces", ns, "flunders", name] => (200, flunder(ns, name)),
        _ => (
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                          "reason": "NotFound", "code": 404, "message": "not found"}),
        ),
    }
}

/// Serves on 127.0.0.1 until the test ends: the port, the serving CA's PEM, and what
/// the last flunder request carried.
pub async fn extension_server(
    dir: &Path,
    front_proxy_ca: &Path,
) -> (u16, Vec<u8>, Arc<Mutex<Seen>>) {
    let issued = apiserver::tls::issue(
        dir,
        "wardle",
        "api.wardle.svc",
        &["api.wardle.svc".to_string()],
        apiserver::tls::Usage::Server,
    )
    .expect("a serving certificate");
    let material = apiserver::tls::from_files(&issued.cert, &issued.key).expect("the key pair");
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(front_proxy_ca).expect("the front-proxy CA");
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    use rustls::pki_types::pem::PemObject as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(material.chain.clone(), material.key.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let last = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, last) = (acceptor.clone(), last.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let last = last.clone();
                    async move {
                        let h = req.headers();
                        let now = Seen {
                            user: h
                                .get("x-remote-user")
                                .and_then(|v| v.to_str().ok())
                                .map(String::from),
                            groups: h
                                .get_all("x-remote-group")
                                .iter()
                                .filter_map(|v| v.to_str().ok().map(String::from))
                                .collect(),
                            authorization: h.contains_key(http::header::AUTHORIZATION),
                        };
                        let path = req.uri().path().to_string();
                        if path.contains("/flunders") {
                            *last.lock().unwrap() = now.clone();
                        }
                        let (code, body) = answer(&path, &now);
                        let mut r = http::Response::new(Full::new(Bytes::from(
                            serde_json::to_vec(&body).unwrap(),
                        )));
                        *r.status_mut() = http::StatusCode::from_u16(code).unwrap();
                        r.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, std::fs::read(&issued.ca).unwrap(), seen)
}
