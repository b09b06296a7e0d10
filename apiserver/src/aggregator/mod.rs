//! API aggregation (kube-aggregator): a group/version that an APIService with a `service`
//! names is served by that Service's backend, through this apiserver.
//!
//! Contract:
//! - The APIServices are read from this apiserver's watch cache: one written through any
//!   replica is served here once the cache has it, with no restart.
//! - A request under `/apis/<group>/<version>` of such a group version is authenticated
//!   and authorized here as any other (RBAC on its group and resource), then proxied
//!   (`proxy.rs`) to a ready endpoint of the Service over HTTPS, trusting only the
//!   APIService's caBundle (or nothing, with insecureSkipTLSVerify) for the name
//!   `<service>.<namespace>.svc`, presenting this apiserver's front-proxy client
//!   certificate (`--proxy-client-cert-file`), with the user in `X-Remote-User`,
//!   `X-Remote-Group` and `X-Remote-Extra-*` and the client's own credentials removed.
//!   An aggregated group version wins over one this server serves itself
//!   (metrics.k8s.io, as kube's Local APIService gives way to a service-backed one).
//! - Discovery lists the aggregated groups (versions by versionPriority, groups after
//!   the built-in ones), and the aggregated document carries each version's resources as
//!   its backend lists them (`discovery.rs`, fetched and kept briefly).
//! - The `Available` condition (`available.rs`) says whether the Service, its endpoints
//!   and the backend's discovery answer.
//! - kube-system/extension-apiserver-authentication (`authentication.rs`) tells backends
//!   which CA and names to trust for the front proxy.

pub mod authentication;
pub mod available;
pub mod discovery;
pub mod proxy;

use std::sync::{Arc, Mutex};

use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::store::cache::Cache;

/// Where APIServices are stored.
pub const PREFIX: &str = "/registry/apiregistration.k8s.io/apiservices/";

/// A group version served by a Service's backend.
pub struct Backend {
    pub name: String,
    pub group: String,
    pub version: String,
    pub group_priority: i32,
    pub version_priority: i32,
    pub namespace: String,
    pub service: String,
    pub port: u16,
    /// How the backend is dialled: its trust and this server's client certificate.
    pub tls: Arc<rustls::ClientConfig>,
}

impl Backend {
    /// The name its serving certificate must carry.
    pub fn server_name(&self) -> String {
        format!("{}.{}.svc", self.service, self.namespace)
    }
}

#[derive(Default)]
struct Snapshot {
    backends: Vec<Arc<Backend>>,
}

/// The front-proxy client certificate (`--proxy-client-cert-file`, `--proxy-client-key-file`).
#[derive(Clone)]
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl Identity {
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<Identity, String> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("--proxy-client-cert-file {}: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!(
                "--proxy-client-cert-file {}: no certificate in the file",
                cert.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("--proxy-client-key-file {}: {e}", key.display()))?;
        Ok(Identity {
            chain,
            key: Arc::new(key),
        })
    }
}

type Signature = Vec<(String, i64)>;

pub struct Aggregator {
    cache: Arc<Cache>,
    identity: Option<Identity>,
    current: Mutex<(Signature, Arc<Snapshot>)>,
    discovery: discovery::Fetched,
}

impl Aggregator {
    pub fn new(cache: Arc<Cache>, identity: Option<Identity>) -> Arc<Aggregator> {
        Arc::new(Aggregator {
            cache,
            identity,
            current: Mutex::new((Vec::new(), Arc::new(Snapshot::default()))),
            discovery: discovery::Fetched::default(),
        })
    }

    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        let listed = self.cache.list(PREFIX).map(|(v, _)| v).unwrap_or_default();
        let sig: Signature = listed.iter().map(|o| (o.key.clone(), o.rev)).collect();
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.0 == sig {
            return cur.1.clone();
        }
        let mut snap = Snapshot::default();
        for o in &listed {
            let Ok(a) = serde_json::from_slice::<APIService>(&o.json) else {
                continue;
            };
            match self.backend(&a) {
                Ok(Some(b)) => snap.backends.push(Arc::new(b)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(apiservice = ?a.metadata.name, error = %e, "APIService not served")
                }
            }
        }
        let snap = Arc::new(snap);
        *cur = (sig, snap.clone());
        snap
    }

    fn backend(&self, a: &APIService) -> Result<Option<Backend>, String> {
        let Some(spec) = &a.spec else {
            return Ok(None);
        };
        let Some(s) = &spec.service else {
            return Ok(None);
        };
        let port = u16::try_from(s.port.unwrap_or(443)).map_err(|e| e.to_string())?;
        let insecure = spec.insecure_skip_tls_verify == Some(true);
        let ca = spec
            .ca_bundle
            .as_ref()
            .map(|b| b.0.as_slice())
            .unwrap_or(&[]);
        Ok(Some(Backend {
            name: a.metadata.name.clone().unwrap_or_default(),
            group: spec.group.clone().unwrap_or_default(),
            version: spec.version.clone().unwrap_or_default(),
            group_priority: spec.group_priority_minimum,
            version_priority: spec.version_priority,
            namespace: s.namespace.clone().unwrap_or_default(),
            service: s.name.clone().unwrap_or_default(),
            port,
            tls: client_tls(ca, insecure, self.identity.as_ref())?,
        }))
    }

    /// The backend serving `group`/`version`, if a Service does.
    pub fn find(&self, group: &str, version: &str) -> Option<Arc<Backend>> {
        self.snapshot()
            .backends
            .iter()
            .find(|b| b.group == group && b.version == version)
            .cloned()
    }

    /// The backend of a request path under `/apis/<group>/<version>`.
    pub fn for_path(&self, path: &str) -> Option<Arc<Backend>> {
        let rest = path.strip_prefix("/apis/")?;
        let mut parts = rest.split('/');
        let (group, version) = (parts.next()?, parts.next()?);
        if group.is_empty() || version.is_empty() {
            return None;
        }
        self.find(group, version)
    }

    /// The aggregated groups and their versions, most preferred first (by
    /// groupPriorityMinimum, then versionPriority, as kube orders them).
    pub fn groups(&self) -> Vec<(String, Vec<Arc<Backend>>)> {
        let snap = self.snapshot();
        let mut groups: Vec<(String, Vec<Arc<Backend>>)> = Vec::new();
        for b in &snap.backends {
            match groups.iter_mut().find(|(g, _)| *g == b.group) {
                Some((_, v)) => v.push(b.clone()),
                None => groups.push((b.group.clone(), vec![b.clone()])),
            }
        }
        for (_, versions) in groups.iter_mut() {
            versions.sort_by(|a, b| {
                b.version_priority.cmp(&a.version_priority).then_with(|| {
                    crate::discovery::version_priority(&a.version)
                        .cmp(&crate::discovery::version_priority(&b.version))
                })
            });
        }
        let top = |v: &Vec<Arc<Backend>>| v.iter().map(|b| b.group_priority).max().unwrap_or(0);
        groups.sort_by(|a, b| top(&b.1).cmp(&top(&a.1)).then_with(|| a.0.cmp(&b.0)));
        groups
    }

    /// The resources `b`'s backend lists (kept briefly), for aggregated discovery.
    pub async fn resources(&self, b: &Backend) -> Option<serde_json::Value> {
        self.discovery.get(self, b).await
    }
}

/// The TLS a backend is dialled with.
fn client_tls(
    ca_bundle: &[u8],
    insecure: bool,
    identity: Option<&Identity>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::kubelet::AnyServerCert(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_bundle) {
            let c = c.map_err(|e| format!("caBundle: {e}"))?;
            roots.add(c).map_err(|e| format!("caBundle: {e}"))?;
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| format!("--proxy-client-cert-file: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A group's `APIGroup` as discovery lists it (versions most preferred first).
pub fn group_json(name: &str, versions: &[Arc<Backend>]) -> serde_json::Value {
    let gvs: Vec<serde_json::Value> = versions
        .iter()
        .map(|b| serde_json::json!({"groupVersion": format!("{name}/{}", b.version), "version": b.version}))
        .collect();
    let preferred = gvs.first().cloned().unwrap_or_default();
    serde_json::json!({"name": name, "versions": gvs, "preferredVersion": preferred})
}
