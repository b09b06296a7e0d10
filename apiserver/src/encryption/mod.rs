//! Encryption at rest, as kube-apiserver's `--encryption-provider-config`: which
//! resources' values are encrypted in the kvstore, and with which providers and keys.
//! `config.rs` reads kube's EncryptionConfiguration file; `providers.rs` holds the
//! ciphers and kube's byte formats. The storage wrapper that applies it is
//! `store/storage/encrypted.rs`.

pub mod config;
pub mod providers;

use std::collections::BTreeMap;
use std::path::Path;

pub use providers::Transformer;

/// The configured resources, each with its transformer.
pub struct Encryption {
    /// By resource (plural), whose objects live under `/registry/<resource>/`.
    resources: BTreeMap<String, Transformer>,
}

impl Encryption {
    /// Reads and checks an EncryptionConfiguration file (YAML or JSON).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading: {e}"))?;
        Self::parse(&text)
    }

    /// Checks an EncryptionConfiguration; an error names the offending field.
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(Self {
            resources: config::parse(text)?,
        })
    }

    /// The encrypted resources.
    pub fn resources(&self) -> impl Iterator<Item = &str> {
        self.resources.keys().map(String::as_str)
    }

    /// The transformer of the resource an etcd key belongs to, if it is encrypted.
    fn transformer(&self, key: &[u8]) -> Option<&Transformer> {
        let rest = key.strip_prefix(b"/registry/")?;
        let end = rest.iter().position(|&b| b == b'/')?;
        let resource = std::str::from_utf8(&rest[..end]).ok()?;
        self.resources.get(resource)
    }

    /// The value to store under `key` for `plain`; None: store `plain` as it is.
    pub fn seal(&self, key: &[u8], plain: &[u8]) -> Result<Option<Vec<u8>>, String> {
        match self.transformer(key) {
            Some(t) => t.seal(key, plain),
            None => Ok(None),
        }
    }

    /// Whether the value stored under `key` should be rewritten with the current provider
    /// and key (see `Transformer::stale`); never for a resource that is not encrypted.
    pub fn stale(&self, key: &[u8], stored: &[u8]) -> bool {
        self.transformer(key).is_some_and(|t| t.stale(stored))
    }

    /// The plaintext of the value stored under `key`; None: it reads as it is.
    pub fn open(&self, key: &[u8], stored: &[u8]) -> Result<Option<Vec<u8>>, String> {
        match self.transformer(key) {
            Some(t) => t.open(key, stored),
            // As kube's identity transformer: encrypted data under a resource that is not
            // (or no longer) configured is an error, not a value.
            None if stored.starts_with(providers::ENCRYPTED) => Err(format!(
                "the value is encrypted ({:?}) but its resource has no encryption configured",
                providers::describe(stored)
            )),
            None => Ok(None),
        }
    }
}
