//! A stand-in for Grafana Loki's HTTP API, for the logging tests: Loki itself is not in
//! Debian's archive (its package named `loki` is a genetics tool) and no other registry is
//! reachable, so the tests run this instead. It keeps to the parts of Loki's contract the
//! agent relies on: `POST /loki/api/v1/push` takes the JSON push body (400 for a malformed
//! one, 204 when taken) and drops exact duplicates of an entry in a stream, as Loki does;
//! `GET /loki/api/v1/query_range?query={k="v",...}` answers the streams whose labels match
//! every equality matcher, in Loki's response shape. It can be stopped (connections
//! refused, open ones cut) and started again on the same port, keeping what it stored.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

type Streams = BTreeMap<BTreeMap<String, String>, BTreeSet<(i128, String)>>;

pub struct Loki {
    pub port: u16,
    store: Arc<Mutex<Streams>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Loki {
    pub async fn start(port: u16) -> Loki {
        let mut l = Loki {
            port,
            store: Arc::default(),
            server: None,
        };
        l.resume().await;
        l
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Serves again on the same port.
    pub async fn resume(&mut self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("the Loki port");
        let store = self.store.clone();
        self.server = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let store = store.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let store = store.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(req, &store).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        }));
    }

    /// Stops serving: new connections are refused and open ones cut (dropping the accept
    /// task drops every connection task with it).
    pub fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }

    /// Every line stored under labels that include `matchers`, oldest first.
    pub fn lines(&self, matchers: &[(&str, &str)]) -> Vec<String> {
        let store = self.store.lock().unwrap();
        let mut out: Vec<(i128, String)> = store
            .iter()
            .filter(|(labels, _)| {
                matchers
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            })
            .flat_map(|(_, entries)| entries.iter().cloned())
            .collect();
        out.sort();
        out.into_iter().map(|(_, l)| l).collect()
    }
}

impl Drop for Loki {
    fn drop(&mut self) {
        self.stop();
    }
}

fn reply(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    store: &Mutex<Streams>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    match (req.method().as_str(), path.as_str()) {
        ("POST", "/loki/api/v1/push") => {
            let Ok(body) = req.into_body().collect().await else {
                return reply(StatusCode::BAD_REQUEST, "unreadable body".into());
            };
            match push(&body.to_bytes(), store) {
                Ok(()) => reply(StatusCode::NO_CONTENT, String::new()),
                Err(e) => reply(StatusCode::BAD_REQUEST, e),
            }
        }
        ("GET", "/loki/api/v1/query_range") | ("GET", "/loki/api/v1/query") => {
            let q = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("query="))
                .map(|q| agent::server::logs::percent_decode(&q.replace('+', " ")))
                .unwrap_or_default();
            match selector(&q) {
                Some(m) => reply(StatusCode::OK, query_range(&m, store)),
                None => reply(StatusCode::BAD_REQUEST, format!("parse error: {q}")),
            }
        }
        ("GET", "/ready") => reply(StatusCode::OK, "ready\n".into()),
        _ => reply(StatusCode::NOT_FOUND, "404 page not found\n".into()),
    }
}

fn push(body: &[u8], store: &Mutex<Streams>) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let streams = v["streams"].as_array().ok_or("no streams")?;
    let mut parsed = Vec::new();
    for s in streams {
        let labels: BTreeMap<String, String> = s["stream"]
            .as_object()
            .ok_or("a stream without labels")?
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    v.as_str().ok_or("a label that is no string")?.to_string(),
                ))
            })
            .collect::<Result<_, String>>()?;
        let mut entries = Vec::new();
        for e in s["values"].as_array().ok_or("a stream without values")? {
            let ts: i128 = e[0]
                .as_str()
                .and_then(|t| t.parse().ok())
                .ok_or("an entry without a nanosecond timestamp")?;
            let line = e[1].as_str().ok_or("an entry without a line")?.to_string();
            entries.push((ts, line));
        }
        parsed.push((labels, entries));
    }
    let mut st = store.lock().unwrap();
    for (labels, entries) in parsed {
        st.entry(labels).or_default().extend(entries);
    }
    Ok(())
}

/// The equality matchers of a stream selector `{k="v", ...}`.
fn selector(q: &str) -> Option<Vec<(String, String)>> {
    let inner = q.trim().strip_prefix('{')?.strip_suffix('}')?;
    inner
        .split(',')
        .filter(|m| !m.trim().is_empty())
        .map(|m| {
            let (k, v) = m.split_once('=')?;
            let v = v.trim().strip_prefix('"')?.strip_suffix('"')?;
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

fn query_range(m: &[(String, String)], store: &Mutex<Streams>) -> String {
    let st = store.lock().unwrap();
    let result: Vec<serde_json::Value> = st
        .iter()
        .filter(|(labels, _)| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
        .map(|(labels, entries)| {
            let values: Vec<[String; 2]> = entries
                .iter()
                .map(|(t, l)| [t.to_string(), l.clone()])
                .collect();
            serde_json::json!({"stream": labels, "values": values})
        })
        .collect();
    serde_json::json!({"status": "success", "data": {"resultType": "streams", "result": result}})
        .to_string()
}
