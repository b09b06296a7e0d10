//! The certificates of a run: members speak mutual TLS on both ports, as `flotilla up`
//! runs them, so the faults are injected into the configuration users run. One CA per run,
//! one member certificate naming every member's address (serving and dialling peers), and
//! the harness's client certificate. Written under the run's directory; keys 0600.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

pub struct Pki {
    pub ca: PathBuf,
    pub member_cert: PathBuf,
    pub member_key: PathBuf,
    pub client: proto::tls::ClientTls,
}

fn params(cn: &str) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    Ok(p)
}

fn write(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| path.display().to_string())?;
    f.write_all(pem.as_bytes())
        .with_context(|| path.display().to_string())
}

impl Pki {
    /// Issues everything into `dir` for members at `ips`.
    pub fn issue(dir: &Path, ips: &[std::net::IpAddr]) -> anyhow::Result<Pki> {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
        let mut ca = params("jepsen-ca")?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        let ca_pem = ca.self_signed(&ca_key)?.pem();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |cn: &str, sans: &[std::net::IpAddr], eku: Vec<ExtendedKeyUsagePurpose>| {
            let mut p = params(cn)?;
            p.subject_alt_names = sans.iter().map(|ip| SanType::IpAddress(*ip)).collect();
            p.extended_key_usages = eku;
            let key = KeyPair::generate()?;
            let cert = p.signed_by(&key, &issuer)?;
            anyhow::Ok((cert.pem(), key.serialize_pem()))
        };
        let (member_pem, member_key_pem) = leaf(
            "member",
            ips,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )?;
        let (client_pem, client_key_pem) =
            leaf("root", &[], vec![ExtendedKeyUsagePurpose::ClientAuth])?;
        let path = |name: &str| dir.join(name);
        for (name, pem) in [
            ("ca.crt", &ca_pem),
            ("member.crt", &member_pem),
            ("member.key", &member_key_pem),
            ("client.crt", &client_pem),
            ("client.key", &client_key_pem),
        ] {
            write(&path(name), pem)?;
        }
        let client = proto::tls::ClientTls::load(
            Some(&path("ca.crt")),
            Some((&path("client.crt"), &path("client.key"))),
        )
        .map_err(anyhow::Error::msg)?;
        Ok(Pki {
            ca: path("ca.crt"),
            member_cert: path("member.crt"),
            member_key: path("member.key"),
            client,
        })
    }

    /// The kvstore's flags: https on both ports, certificates required both ways.
    pub fn member_args(&self) -> Vec<String> {
        let p = |p: &PathBuf| p.display().to_string();
        let (ca, cert, key) = (p(&self.ca), p(&self.member_cert), p(&self.member_key));
        [
            "--cert-file",
            &cert,
            "--key-file",
            &key,
            "--trusted-ca-file",
            &ca,
            "--client-cert-auth",
            "--peer-cert-file",
            &cert,
            "--peer-key-file",
            &key,
            "--peer-trusted-ca-file",
            &ca,
            "--peer-client-cert-auth",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}
