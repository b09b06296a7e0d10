//! Client-side TLS for the etcd API and the peer transport: the CA a server's certificate is
//! verified against and the certificate this side presents, read once from PEM files, then
//! applied to each https:// endpoint. http:// endpoints stay plain.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

#[derive(Clone, Debug)]
pub struct ClientTls {
    config: ClientTlsConfig,
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

impl ClientTls {
    /// `ca`: the CA servers must be signed by; `identity`: (certificate, key) to present.
    pub fn load(ca: Option<&Path>, identity: Option<(&Path, &Path)>) -> Result<Self, String> {
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = ca {
            config = config.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let Some((cert, key)) = identity {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(Self { config })
    }

    /// `endpoint` with TLS if `url` is https://.
    pub fn apply(
        tls: Option<&ClientTls>,
        url: &str,
        endpoint: Endpoint,
    ) -> Result<Endpoint, tonic::transport::Error> {
        match tls {
            Some(t) if url.starts_with("https://") => endpoint.tls_config(t.config.clone()),
            _ => Ok(endpoint),
        }
    }
}
