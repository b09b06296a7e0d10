//! TLS on a delegating port: the serving certificate (`--tls-cert-file` and
//! `--tls-private-key-file`, or one self-signed at start as the kubelet and kube-scheduler make without
//! them), and client certificates (`--client-ca-file`).
//!
//! Contract: with a client CA, a client certificate is asked for but not required. The
//! handshake takes any certificate whose key signed it; `ClientCa::user` then verifies the
//! chain against the CA (client-auth usage, validity) and names the user: the subject's CN,
//! in the groups of its O values (the kubelet's x509 authenticator). A certificate that
//! does not verify names nobody, so the request falls back to its bearer token and is
//! refused without one, instead of failing the handshake.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::reviews::User;

/// A serving identity: a certificate chain and its key.
pub type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The certificate and key files given (`--tls-cert-file`, `--tls-private-key-file`).
pub fn from_files(cert: &Path, key: &Path) -> anyhow::Result<Identity> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("--tls-cert-file {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!(
            "--tls-cert-file {}: no certificate in the file",
            cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("--tls-private-key-file {}", key.display()))?;
    Ok((chain, key))
}

/// A self-signed serving certificate for the node's names.
pub fn self_signed(hosts: Vec<String>) -> anyhow::Result<Identity> {
    let ck = rcgen::generate_simple_self_signed(hosts)?;
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    Ok((vec![cert], key))
}

/// The CA of `--client-ca-file`, and what a certificate it signed authenticates.
pub struct ClientCa {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl ClientCa {
    pub fn load(path: &Path) -> anyhow::Result<ClientCa> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("--client-ca-file {}", path.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in certs {
            roots
                .add(c)
                .with_context(|| format!("--client-ca-file {}", path.display()))?;
        }
        if roots.is_empty() {
            anyhow::bail!(
                "--client-ca-file {}: no certificate in the file",
                path.display()
            );
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .with_context(|| format!("--client-ca-file {}", path.display()))?;
        Ok(ClientCa { verifier })
    }

    /// The user a client's certificate chain (leaf first) authenticates, if it verifies.
    pub fn user(&self, chain: &[CertificateDer<'_>]) -> Option<User> {
        let (leaf, intermediates) = chain.split_first()?;
        if let Err(e) = self
            .verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
        {
            tracing::debug!(error = %e, "client certificate refused");
            return None;
        }
        subject_user(leaf)
    }
}

/// The user a certificate's subject names: CN, in the groups of its O values (and
/// `system:authenticated`). None without a CN.
pub fn subject_user(cert: &CertificateDer<'_>) -> Option<User> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    if name.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    Some(
        User {
            name,
            uid: String::new(),
            groups,
        }
        .authenticated(),
    )
}

/// Asks for a client certificate and takes any whose key signs the handshake (or none);
/// `ClientCa::user` decides afterwards what it is worth.
#[derive(Debug)]
struct RequestClientCert(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The port's TLS configuration (HTTP/2 and HTTP/1.1).
pub fn server_config(
    identity: Identity,
    client_ca: Option<&ClientCa>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            builder.with_client_cert_verifier(Arc::new(RequestClientCert(ca.verifier.clone())))
        }
        None => builder.with_no_client_auth(),
    };
    let (chain, key) = identity;
    let mut cfg = builder.with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA in `dir` and a certificate it signed for `cn` in `orgs`, with `usage`.
    fn issue(
        dir: &Path,
        cn: &str,
        orgs: &[&str],
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> (std::path::PathBuf, CertificateDer<'static>) {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(DnType::CommonName, "test-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let path = dir.join("ca.crt");
        std::fs::write(&path, ca_cert.pem()).unwrap();
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name = rcgen::DistinguishedName::new();
        leaf.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            leaf.distinguished_name.push(DnType::OrganizationName, *o);
        }
        leaf.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &Issuer::new(ca, ca_key)).unwrap();
        (path, cert.der().clone())
    }

    #[test]
    fn client_certificates_name_cn_in_the_groups_of_o() {
        let d = tempfile::tempdir().unwrap();
        let client = rcgen::ExtendedKeyUsagePurpose::ClientAuth;
        let (ca, cert) = issue(
            d.path(),
            "kube-apiserver-kubelet-client",
            &[],
            client.clone(),
        );
        let ca = ClientCa::load(&ca).unwrap();
        let u = ca.user(&[cert]).unwrap();
        assert_eq!(u.name, "kube-apiserver-kubelet-client");
        assert_eq!(u.groups, ["system:authenticated"]);

        let other = tempfile::tempdir().unwrap();
        let (_, theirs) = issue(other.path(), "mallory", &["system:masters"], client.clone());
        assert!(
            ca.user(&[theirs.clone()]).is_none(),
            "another CA's certificate names nobody"
        );
        assert_eq!(
            subject_user(&theirs).unwrap().groups,
            ["system:masters", "system:authenticated"]
        );
        assert!(ca.user(&[]).is_none());

        let d2 = tempfile::tempdir().unwrap();
        let (ca2, server_only) = issue(
            d2.path(),
            "node",
            &[],
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        );
        assert!(
            ClientCa::load(&ca2).unwrap().user(&[server_only]).is_none(),
            "not for client auth"
        );
        assert!(subject_user(&CertificateDer::from(vec![1, 2, 3])).is_none());

        let empty = d.path().join("empty.crt");
        std::fs::write(&empty, "").unwrap();
        let e = ClientCa::load(&empty).err().unwrap().to_string();
        assert!(
            e.contains("--client-ca-file") && e.contains("empty.crt"),
            "{e}"
        );
    }

    #[test]
    fn serving_identities() {
        let id = self_signed(vec!["127.0.0.1".into(), "n1".into()]).unwrap();
        server_config(id, None).unwrap();
        let e = from_files(Path::new("/nonexistent.crt"), Path::new("/nonexistent.key"))
            .err()
            .unwrap();
        assert!(
            format!("{e:#}").contains("--tls-cert-file /nonexistent.crt"),
            "{e:#}"
        );
    }
}
