//! The certificates of a run: members speak mutual TLS on both ports, as `flotilla up`
//! runs them, so the faults are injected into the configuration users run. One CA per run,
//! one member certificate naming every member's address (serving and dialling peers), and
//! the harness's client certificate, issued by the apiserver's certificate code under the
//! run's directory (keys 0600).

use std::path::{Path, PathBuf};

use anyhow::Context;
use apiserver::tls::{issue, Usage};

pub struct Pki {
    pub ca: PathBuf,
    pub member_cert: PathBuf,
    pub member_key: PathBuf,
    pub client: proto::tls::ClientTls,
}

impl Pki {
    /// Issues everything into `dir` for members at `ips`.
    pub fn issue(dir: &Path, ips: &[std::net::IpAddr]) -> anyhow::Result<Pki> {
        let hosts: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
        let member = issue(dir, "member", "member", &hosts, Usage::ServerAndClient)
            .with_context(|| format!("issuing certificates in {}", dir.display()))?;
        let client = issue(dir, "client", "root", &[], Usage::Client)
            .with_context(|| format!("issuing certificates in {}", dir.display()))?;
        let tls = proto::tls::ClientTls::load(Some(&client.ca), Some((&client.cert, &client.key)))
            .map_err(anyhow::Error::msg)?;
        Ok(Pki {
            ca: member.ca,
            member_cert: member.cert,
            member_key: member.key,
            client: tls,
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
