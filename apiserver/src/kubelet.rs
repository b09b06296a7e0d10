//! How this apiserver dials the nodes' agents (kube-apiserver's kubelet client, used by
//! `pods/log`).
//!
//! Contract: with `--kubelet-client-certificate`/`--kubelet-client-key` it presents that
//! certificate, and nothing else: no bearer token is ever sent to an agent, so an agent
//! never holds a credential that works against the apiserver. Without them it presents
//! nothing and agents answer 401. With `--kubelet-certificate-authority` an agent's serving
//! certificate must chain to that CA and name the address dialled (an IP SAN for an IP);
//! without it any certificate is accepted (kube-apiserver's default), and `run` warns
//! about it once at start.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// The TLS configuration agents are dialled with.
pub struct KubeletClient {
    tls: Arc<rustls::ClientConfig>,
    /// Whether agents' serving certificates are verified (`--kubelet-certificate-authority`).
    pub verifies: bool,
    /// Whether a client certificate is presented (`--kubelet-client-certificate`).
    pub presents_certificate: bool,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletClient")
            .field("verifies", &self.verifies)
            .field("presents_certificate", &self.presents_certificate)
            .finish()
    }
}

fn certificates(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {}: no certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

impl KubeletClient {
    /// Reads the files once; every error names its flag and file.
    pub fn load(identity: Option<(&Path, &Path)>, ca: Option<&Path>) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match ca {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in certificates("--kubelet-certificate-authority", path)? {
                    roots.add(c).map_err(|e| {
                        format!("--kubelet-certificate-authority {}: {e}", path.display())
                    })?;
                }
                builder.with_root_certificates(roots)
            }
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider))),
        };
        let tls = match identity {
            Some((cert, key)) => {
                let chain = certificates("--kubelet-client-certificate", cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("--kubelet-client-key {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("--kubelet-client-certificate {}: {e}", cert.display()))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(KubeletClient {
            tls: Arc::new(tls),
            verifies: ca.is_some(),
            presents_certificate: identity.is_some(),
        })
    }

    pub fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone()
    }
}

/// Accepts the agent's certificate as it is, but still checks that the handshake was
/// signed by its key.
#[derive(Debug)]
pub(crate) struct AnyServerCert(pub(crate) Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{issue, Usage};

    /// An agent's server config: `cert` served, client certificates from `ca` asked for.
    fn agent(cert: &crate::tls::Issued) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&cert.ca).unwrap())
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .unwrap();
        let chain = vec![CertificateDer::from_pem_file(&cert.cert).unwrap()];
        let key = PrivateKeyDer::from_pem_file(&cert.key).unwrap();
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)
                .unwrap(),
        )
    }

    /// A handshake in memory; Ok(the client certificates the server saw).
    fn handshake(
        client: &KubeletClient,
        server: Arc<rustls::ServerConfig>,
        dialled: &str,
    ) -> Result<usize, rustls::Error> {
        let name = ServerName::try_from(dialled.to_string()).unwrap();
        let mut c = rustls::ClientConnection::new(client.tls(), name)?;
        let mut s = rustls::ServerConnection::new(server)?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            let mut rd = buf.as_slice();
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
                s.process_new_packets()?;
            }
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            let mut rd = buf.as_slice();
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets()?;
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(s.peer_certificates().map_or(0, |p| p.len()));
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn agents_are_verified_against_the_ca_and_see_the_client_certificate() {
        let d = tempfile::tempdir().unwrap();
        let ca = d.path().join("cluster");
        let hosts = ["127.0.0.1".to_string(), "n1".to_string()];
        let served = issue(&ca, "agent-n1", "system:node:n1", &hosts, Usage::Server).unwrap();
        let client = issue(
            &ca,
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            &[],
            Usage::Client,
        )
        .unwrap();
        let other = issue(
            &d.path().join("other"),
            "agent",
            "system:node:n1",
            &hosts,
            Usage::Server,
        )
        .unwrap();

        let verified = KubeletClient::load(
            Some((client.cert.as_path(), client.key.as_path())),
            Some(&client.ca),
        )
        .unwrap();
        assert!(verified.verifies && verified.presents_certificate);
        assert_eq!(handshake(&verified, agent(&served), "127.0.0.1"), Ok(1));
        // Another address than the certificate names, or another CA, is refused.
        let e = handshake(&verified, agent(&served), "127.0.0.2").unwrap_err();
        assert!(e.to_string().contains("certificate"), "{e}");
        assert!(handshake(&verified, agent(&other), "127.0.0.1").is_err());

        // Without a CA anything is accepted; without an identity none is presented.
        let bare = KubeletClient::load(None, None).unwrap();
        assert!(!bare.verifies && !bare.presents_certificate);
        assert_eq!(handshake(&bare, agent(&other), "10.1.2.3"), Ok(0));

        let e = KubeletClient::load(None, Some(&d.path().join("missing.crt"))).unwrap_err();
        assert!(
            e.starts_with("--kubelet-certificate-authority ") && e.contains("missing.crt"),
            "{e}"
        );
    }
}
