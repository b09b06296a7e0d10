//! The Flotilla apiserver: the Kubernetes API over the kvstore (or any etcd v3 cluster).
//! It holds no state of its own; run any number of them.
//!
//! Layout:
//! - `config.rs`: flags (kube-apiserver's names) and their validated form.
//! - `http/`: the HTTPS server (`mod.rs`), paths and queries (`route.rs`), verbs (`handlers.rs`).
//! - `audit/`: audit logging (`--audit-policy-file`, `--audit-log-*`): the policy, the
//!   `audit.k8s.io/v1` events, the rotating log, and the recorder each request carries.
//! - `auth/`: bearer tokens (static and ServiceAccount JWTs, TokenRequest, TokenReview); `authz/`: RBAC authorization and access reviews; `reviews.rs`: the review APIs' table and discovery; `tls.rs`: certificates; `kubeconfig.rs`: the admin kubeconfig; `kubelet.rs`: how agents are dialled.
//! - `kinds/`: one module per served kind (defaulting, validation, field selectors) and
//!   the type-erased `Strategy` the rest uses.
//! - `store/`: the registry over a storage interface (`store/storage/`: the etcd v3 API,
//!   or in memory for tests): create, update, delete, list, watch, the watch cache, and
//!   the admission plugins that read stored state (`store/admission.rs`).
//! - `admission/`: admission policies as pure functions (PodSecurity's standards).
//! - `encryption/`: encryption at rest (`--encryption-provider-config`), applied by the
//!   storage wrapper `store/storage/encrypted.rs`.
//! - `etcd.rs`: the etcd client with failover; `validation.rs`, `patch.rs`, `discovery.rs`,
//!   `error.rs` (every error as a `metav1.Status`); `selector.rs` names
//!   `flotilla_core`'s label and field selectors.
//! - `apiextensions.rs`: the CustomResourceDefinition controllers (names, Established,
//!   cleanup of a deleted CRD's objects).
//! - `metrics.rs`: `/metrics`; `table/`: the tables `kubectl get` prints (columns per kind in `table/printers/`).

pub mod admission;
pub mod aggregator;
pub mod apiextensions;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod config;
pub mod discovery;
pub mod encryption;
pub mod error;
pub mod etcd;
pub mod fieldcheck;
pub mod http;
pub mod kinds;
pub mod kubeconfig;
pub mod kubelet;
pub mod kubernetes_service;
pub mod latency;
pub mod metrics;
pub mod openapi;
pub mod patch;
pub mod private;
pub mod protobuf;
pub mod response;
pub mod reviews;
pub mod schema;
pub mod selector;
pub mod store;
pub mod table;
pub mod tls;
pub mod validation;
pub mod webhook;

pub mod bootstrap;

pub use config::{ApiserverFlags, Config};

use std::sync::Arc;
use std::time::Duration;

/// Runs an apiserver until `shutdown` turns true.
pub async fn run(cfg: Config, shutdown: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
    let tokens = match &cfg.token_auth_file {
        Some(f) => auth::TokenFile::load(f.clone()),
        None => auth::Tokens::generated(&cfg.cert_dir).map(auth::TokenFile::fixed),
    }
    .map_err(anyhow::Error::msg)?;
    let signer =
        auth::jwt::Signer::load_or_create(&cfg.service_account_key).map_err(anyhow::Error::msg)?;
    let authenticator = auth::Authenticator {
        tokens,
        service_accounts: auth::serviceaccount::Issuer::new(
            signer,
            cfg.service_account_issuer.clone(),
            cfg.api_audiences.clone(),
        ),
    };
    let material = match &cfg.tls {
        config::TlsSource::Files { cert, key } => tls::from_files(cert, key)?,
        config::TlsSource::Generated { dir } => {
            // As kube-apiserver's: also the `kubernetes` Service's cluster IP and names,
            // which pods use.
            let mut hosts = vec![
                cfg.advertise.to_string(),
                "127.0.0.1".to_string(),
                "localhost".to_string(),
                cfg.service_range.first().to_string(),
                "kubernetes".to_string(),
                "kubernetes.default".to_string(),
                "kubernetes.default.svc".to_string(),
                "kubernetes.default.svc.cluster.local".to_string(),
            ];
            if !cfg.bind.ip().is_unspecified() {
                hosts.push(cfg.bind.ip().to_string());
            }
            hosts.extend(cfg.tls_sans.iter().cloned());
            if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
                let h = h.trim();
                if !h.is_empty() {
                    hosts.push(h.to_string());
                }
            }
            tls::self_signed(dir, &hosts)?
        }
    };
    let tls_cfg = tls::server_config(&material)?;
    let etcd = Arc::new(
        etcd::Etcd::new(
            &cfg.etcd_servers,
            cfg.etcd_tls.as_ref(),
            Duration::from_secs(10),
        )
        .map_err(anyhow::Error::msg)?,
    );
    let kinds = kinds::Kinds::all();
    let metrics = Arc::new(metrics::Metrics::default());
    let cache = store::cache::Cache::new(kinds.clone(), cfg.watch_cache_size);
    // Everything that reads or writes objects goes through `storage`; with
    // --encryption-provider-config it seals and opens the configured resources' values.
    let storage: Arc<dyn store::storage::Storage> = match &cfg.encryption {
        Some(enc) => {
            tracing::info!(resources = ?enc.resources().collect::<Vec<_>>(), "encrypting at rest");
            Arc::new(store::storage::Encrypted::new(etcd.clone(), enc.clone()))
        }
        None => etcd.clone(),
    };
    let store = Arc::new(store::Store {
        storage: storage.clone(),
        kinds: kinds.clone(),
        cache: cache.clone(),
        env: kinds::Env {
            service_ips: cfg.service_range,
        },
        cache_wait: Duration::from_secs(3),
        metrics: metrics.clone(),
    });
    let feed = tokio::spawn(store::cache::run(cache, storage, Duration::from_secs(2)));
    let boot = tokio::spawn(bootstrap::ensure(store.clone()));
    let compactor = cfg
        .compaction_interval
        .map(|every| tokio::spawn(bootstrap::compact_loop(etcd.clone(), every)));

    let listener = tokio::net::TcpListener::bind(cfg.bind)
        .await
        .map_err(|e| anyhow::anyhow!("binding {}: {e}", cfg.bind))?;
    let port = listener.local_addr()?.port();
    let advertise = std::net::SocketAddr::new(cfg.advertise, port);
    let server_url = format!("https://{advertise}");
    let kubernetes_service = tokio::spawn(kubernetes_service::run(
        store.clone(),
        etcd.clone(),
        advertise,
        cfg.service_range.first(),
    ));
    let apiextensions = tokio::spawn(apiextensions::run(store.clone()));
    let lease_etcd = etcd.clone();
    if let Some(path) = &cfg.write_kubeconfig {
        let token = authenticator.tokens.admin_token().ok_or_else(|| {
            anyhow::anyhow!(
                "--write-kubeconfig needs a token of a system:masters user in --token-auth-file"
            )
        })?;
        kubeconfig::write(path, &server_url, &material.ca_pem, &token)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    tracing::info!(url = %server_url, etcd = ?cfg.etcd_servers, "apiserver serving");
    if !cfg.kubelet.verifies {
        tracing::warn!(
            "no --kubelet-certificate-authority: the agents' serving certificates are not verified"
        );
    }
    if !cfg.kubelet.presents_certificate {
        tracing::warn!("no --kubelet-client-certificate: agents will refuse pods/log (401)");
    }
    if let Some(w) = cfg.audit_warning {
        tracing::warn!("{w}");
    }
    let audit = match cfg.audit.clone() {
        Some(a) => Some(audit::Auditor::start(a).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let openapi = openapi::Live::new(&kinds);
    let authorizer = authz::Authorizer::new(cfg.authorization_mode, store.cache.clone());
    let webhooks = webhook::Webhooks::new(store.cache.clone(), kinds.clone());
    kinds.set_conversion_caller(webhook::conversion::Converter::new(store.cache.clone()));
    let aggregator = aggregator::Aggregator::new(store.cache.clone(), cfg.proxy_client.clone());
    if cfg.proxy_client.is_none() {
        tracing::warn!(
            "no --proxy-client-cert-file: aggregated APIs are called without a client certificate"
        );
    }
    let availability = tokio::spawn(aggregator::available::run(
        store.clone(),
        aggregator.clone(),
    ));
    let trust = cfg
        .requestheader
        .clone()
        .map(|cm| tokio::spawn(aggregator::authentication::publish(store.clone(), cm)));
    let shared = Arc::new(http::Shared {
        store,
        webhooks,
        aggregator,
        etcd,
        openapi,
        authorizer,
        metrics,
        inflight: http::limits::Inflight::new(
            cfg.max_requests_inflight,
            cfg.max_mutating_requests_inflight,
        ),
        kinds,
        auth: authenticator,
        request_timeout: cfg.request_timeout,
        advertise: advertise.to_string(),
        kubelet: cfg.kubelet.clone(),
        audit,
        resource_metrics: crate::http::resource_metrics::scrape::Scraper::new(
            cfg.metric_resolution,
        ),
    });
    http::serve(listener, tls_cfg, shared, cfg.connections, shutdown).await;
    kubernetes_service.abort();
    apiextensions.abort();
    availability.abort();
    if let Some(t) = trust {
        t.abort();
    }
    // Out of the kubernetes endpoints now rather than when the lease runs out.
    kubernetes_service::resign(&lease_etcd, advertise).await;
    feed.abort();
    boot.abort();
    if let Some(c) = compactor {
        c.abort();
    }
    Ok(())
}
