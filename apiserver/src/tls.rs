//! Serving certificates: the files given with `--tls-cert-file`/`--tls-private-key-file`,
//! or a CA kept in `--cert-dir` (created once, shared by every apiserver using that
//! directory, so one kubeconfig trusts them all) that signs a fresh serving certificate
//! for this process at each start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The certificate material the server uses, and the CA clients should trust.
pub struct Material {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// PEM of the CA that clients trust (the kubeconfig's certificate-authority-data).
    pub ca_pem: String,
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "flotilla-ca");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

/// Writes `contents` to `path` unless it exists; never replaces a file another process
/// wrote first. Returns what `path` holds afterwards.
pub(crate) fn write_once(path: &Path, contents: &str) -> Result<String, TlsError> {
    let tmp = crate::private::sibling(path, "new");
    let _ = std::fs::remove_file(&tmp);
    crate::private::create_new(&tmp, contents.as_bytes()).map_err(io(&tmp))?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(contents.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(path).map_err(io(path))
        }
        Err(e) => Err(TlsError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// The CA in `dir` (ca.key, ca.crt), created if missing.
fn load_or_create_ca(dir: &Path) -> Result<(KeyPair, String), TlsError> {
    crate::private::dir(dir).map_err(io(dir))?;
    let key_path = dir.join("ca.key");
    let crt_path = dir.join("ca.crt");
    let key_pem = match std::fs::read_to_string(&key_path) {
        Ok(k) => k,
        Err(_) => write_once(&key_path, &KeyPair::generate()?.serialize_pem())?,
    };
    let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Pem {
        path: key_path.clone(),
        message: e.to_string(),
    })?;
    let crt_pem = match std::fs::read_to_string(&crt_path) {
        Ok(c) if !c.is_empty() => c,
        _ => write_once(&crt_path, &ca_params()?.self_signed(&key)?.pem())?,
    };
    Ok((key, crt_pem))
}

/// What an issued certificate may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    /// A kvstore member: serves clients and peers, and dials peers with the same identity.
    ServerAndClient,
}

/// A leaf certificate's parameters: `cn` as the subject, `hosts` (DNS names or IPs) as
/// subject alternative names.
fn leaf(cn: &str, hosts: &[String], usage: Usage) -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    for h in hosts {
        let san = match h.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(h.clone().try_into()?),
        };
        if !p.subject_alt_names.contains(&san) {
            p.subject_alt_names.push(san);
        }
    }
    p.extended_key_usages = match usage {
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::ServerAndClient => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    Ok(p)
}

/// A serving certificate for `hosts` (DNS names or IPs) signed by the CA in `dir`.
pub fn self_signed(dir: &Path, hosts: &[String]) -> Result<Material, TlsError> {
    let (ca_key, ca_pem) = load_or_create_ca(dir)?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let key = KeyPair::generate()?;
    let cert = leaf("flotilla-apiserver", hosts, Usage::Server)?.signed_by(&key, &issuer)?;
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| TlsError::Pem {
        path: dir.join("ca.crt"),
        message: e.to_string(),
    })?;
    Ok(Material {
        chain: vec![cert.der().clone(), ca_der],
        key: PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| TlsError::Pem {
            path: dir.join("(generated)"),
            message: e.to_string(),
        })?,
        ca_pem,
    })
}

/// Files written by `issue`.
pub struct Issued {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Issues a certificate for `cn` signed by the CA in `dir` (created when missing) and
/// writes it to `dir/<name>.crt`, its key to `dir/<name>.key` (0600), replacing an earlier
/// pair: the component reading them is (re)started after this returns.
pub fn issue(
    dir: &Path,
    name: &str,
    cn: &str,
    hosts: &[String],
    usage: Usage,
) -> Result<Issued, TlsError> {
    issue_to(dir, dir, name, cn, hosts, usage)
}

/// As [`issue`], with the CA in `ca_dir` (which may be read-only once the CA exists) and
/// the certificate and key written to `out` (created 0700 when missing).
pub fn issue_to(
    ca_dir: &Path,
    out: &Path,
    name: &str,
    cn: &str,
    hosts: &[String],
    usage: Usage,
) -> Result<Issued, TlsError> {
    let (ca_key, _) = load_or_create_ca(ca_dir)?;
    crate::private::dir(out).map_err(io(out))?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let key = KeyPair::generate()?;
    let cert = leaf(cn, hosts, usage)?.signed_by(&key, &issuer)?;
    let out = Issued {
        ca: ca_dir.join("ca.crt"),
        cert: out.join(format!("{name}.crt")),
        key: out.join(format!("{name}.key")),
    };
    crate::private::replace(&out.key, key.serialize_pem().as_bytes()).map_err(io(&out.key))?;
    crate::private::replace(&out.cert, cert.pem().as_bytes()).map_err(io(&out.cert))?;
    Ok(out)
}

/// The files an operator gave. The CA clients trust is the last certificate of the chain.
pub fn from_files(cert: &Path, key: &Path) -> Result<Material, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Pem {
            path: cert.to_path_buf(),
            message: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert.to_path_buf(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert.to_path_buf(),
            message: "no certificate in the file".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
        path: key.to_path_buf(),
        message: e.to_string(),
    })?;
    let text = std::fs::read_to_string(cert).map_err(io(cert))?;
    let last = text.rfind("-----BEGIN CERTIFICATE-----").unwrap_or(0);
    Ok(Material {
        chain,
        key: key_der,
        ca_pem: text[last..].to_string(),
    })
}

/// A rustls server config offering HTTP/2 and HTTP/1.1.
pub fn server_config(m: &Material) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(m.chain.clone(), m.key.clone_key())?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_servers_sharing_a_cert_dir_share_one_ca() {
        let dir = tempfile::tempdir().unwrap();
        let a = self_signed(dir.path(), &["127.0.0.1".into(), "localhost".into()]).unwrap();
        let b = self_signed(dir.path(), &["127.0.0.2".into()]).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_ne!(a.chain[0], b.chain[0]);
        server_config(&a).unwrap();
    }
}
