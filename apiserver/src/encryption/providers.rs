//! The providers of kube's EncryptionConfiguration, writing and reading the bytes exactly
//! as kube-apiserver does (k8s.io/apiserver `pkg/storage/value/transformer.go`,
//! `value/encrypt/{aes/aes.go,secretbox/secretbox.go,identity/identity.go}` and the
//! prefixes of `server/options/encryptionconfig/config.go`), so a value either server
//! wrote reads on the other:
//!
//! - aesgcm: `k8s:enc:aesgcm:v1:<key name>:` nonce(12) ciphertext tag(16): AES-GCM whose
//!   additional authenticated data is the whole etcd key (`/registry/secrets/<ns>/<name>`),
//!   so a value copied under another key does not open.
//! - aescbc: `k8s:enc:aescbc:v1:<key name>:` IV(16) AES-CBC ciphertext of the PKCS#7-padded
//!   value; nothing authenticated (kube discourages it for that reason).
//! - secretbox: `k8s:enc:secretbox:v1:<key name>:` nonce(24) NaCl secretbox, that is the
//!   Poly1305 tag(16) then the XSalsa20 ciphertext; the etcd key is not authenticated.
//! - identity: the value as it is.
//!
//! The first provider (with its first key) seals what is written. To open, every key
//! whose prefix the value carries is tried in the configured order and the first that
//! opens it wins (kube's prefix transformers likewise never stop at a prefix match that
//! fails). A value without the `k8s:enc:` prefix is plaintext, written before encryption
//! was enabled or by identity, and reads as it is.
//!
//! Nonces and IVs come from the system CSPRNG (ring's `SystemRandom`). Key material is
//! never printed: the types that hold keys do not implement Debug.

use std::sync::Arc;

use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};

/// What every encrypted value starts with; nothing else does (JSON starts with `{`,
/// kube's protobuf with `k8s\0`).
pub const ENCRYPTED: &[u8] = b"k8s:enc:";

const GCM_NONCE: usize = 12;
const GCM_TAG: usize = 16;
const CBC_BLOCK: usize = 16;
const BOX_NONCE: usize = 24;
const BOX_TAG: usize = 16;

/// The keyed provider types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    AesGcm,
    AesCbc,
    Secretbox,
}

impl Kind {
    /// The provider's name in the configuration and in the stored prefix.
    pub fn name(self) -> &'static str {
        match self {
            Kind::AesGcm => "aesgcm",
            Kind::AesCbc => "aescbc",
            Kind::Secretbox => "secretbox",
        }
    }

    /// The key lengths kube accepts (bytes).
    pub fn key_sizes(self) -> &'static [usize] {
        match self {
            Kind::AesGcm | Kind::AesCbc => &[16, 24, 32],
            Kind::Secretbox => &[32],
        }
    }

    /// How many random bytes (nonce or IV) one value needs.
    fn random_len(self) -> usize {
        match self {
            Kind::AesGcm => GCM_NONCE,
            Kind::AesCbc => CBC_BLOCK,
            Kind::Secretbox => BOX_NONCE,
        }
    }
}

enum Cipher {
    Gcm(LessSafeKey),
    /// The raw AES key (16, 24 or 32 bytes); CBC keys its cipher per value.
    Cbc(Vec<u8>),
    Secretbox(Box<XSalsa20Poly1305>),
}

/// One named key of a keyed provider.
pub struct Key {
    kind: Kind,
    name: String,
    /// `k8s:enc:<kind>:v1:<name>:`
    prefix: Vec<u8>,
    cipher: Cipher,
}

impl Key {
    /// A key from its decoded secret; the length must be one of [`Kind::key_sizes`].
    pub fn new(kind: Kind, name: &str, secret: &[u8]) -> Result<Self, String> {
        let cipher = match kind {
            Kind::AesGcm => {
                let alg = match secret.len() {
                    16 => &AES_128_GCM,
                    32 => &AES_256_GCM,
                    24 => {
                        return Err("24-byte (AES-192) keys are not supported for aesgcm \
                             (ring implements AES-128 and AES-256 GCM); use a 16- or 32-byte key"
                            .into())
                    }
                    n => return Err(length_error(kind, n)),
                };
                let key =
                    UnboundKey::new(alg, secret).map_err(|_| length_error(kind, secret.len()))?;
                Cipher::Gcm(LessSafeKey::new(key))
            }
            Kind::AesCbc => {
                if !kind.key_sizes().contains(&secret.len()) {
                    return Err(length_error(kind, secret.len()));
                }
                Cipher::Cbc(secret.to_vec())
            }
            Kind::Secretbox => {
                let c = XSalsa20Poly1305::new_from_slice(secret)
                    .map_err(|_| length_error(kind, secret.len()))?;
                Cipher::Secretbox(Box::new(c))
            }
        };
        Ok(Self {
            kind,
            name: name.to_string(),
            prefix: format!("k8s:enc:{}:v1:{name}:", kind.name()).into_bytes(),
            cipher,
        })
    }

    fn label(&self) -> String {
        format!("{} key {:?}", self.kind.name(), self.name)
    }

    /// The stored form of `plain` under the etcd key `aad`, with fresh random bytes.
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut random = [0u8; BOX_NONCE];
        let random = &mut random[..self.kind.random_len()];
        SystemRandom::new()
            .fill(random)
            .map_err(|_| "the system random number generator failed".to_string())?;
        self.seal_with(aad, plain, random)
    }

    /// The stored form of `plain` with the given nonce (or IV).
    fn seal_with(&self, aad: &[u8], plain: &[u8], random: &[u8]) -> Result<Vec<u8>, String> {
        let failed = || format!("{}: encryption failed", self.label());
        let mut out = self.prefix.clone();
        out.extend_from_slice(random);
        match &self.cipher {
            Cipher::Gcm(key) => {
                let nonce = Nonce::try_assume_unique_for_key(random).map_err(|_| failed())?;
                let start = out.len();
                out.extend_from_slice(plain);
                let tag = key
                    .seal_in_place_separate_tag(nonce, Aad::from(aad), &mut out[start..])
                    .map_err(|_| failed())?;
                out.extend_from_slice(tag.as_ref());
            }
            Cipher::Cbc(key) => {
                let sealed = match key.len() {
                    16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(key, random)
                        .map(|c| c.encrypt_padded_vec_mut::<Pkcs7>(plain)),
                    24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(key, random)
                        .map(|c| c.encrypt_padded_vec_mut::<Pkcs7>(plain)),
                    _ => cbc::Encryptor::<aes::Aes256>::new_from_slices(key, random)
                        .map(|c| c.encrypt_padded_vec_mut::<Pkcs7>(plain)),
                }
                .map_err(|_| failed())?;
                out.extend_from_slice(&sealed);
            }
            Cipher::Secretbox(c) => {
                if random.len() != BOX_NONCE {
                    return Err(failed());
                }
                let sealed = c
                    .encrypt(crypto_secretbox::Nonce::from_slice(random), plain)
                    .map_err(|_| failed())?;
                out.extend_from_slice(&sealed);
            }
        }
        Ok(out)
    }

    /// The plaintext of `body` (the stored value after this key's prefix).
    fn open(&self, aad: &[u8], body: &[u8]) -> Result<Vec<u8>, String> {
        let short = || {
            format!(
                "{}: the stored data was shorter than the required size",
                self.label()
            )
        };
        match &self.cipher {
            Cipher::Gcm(key) => {
                if body.len() < GCM_NONCE + GCM_TAG {
                    return Err(short());
                }
                let (nonce, sealed) = body.split_at(GCM_NONCE);
                let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| short())?;
                let mut buf = sealed.to_vec();
                let n = key
                    .open_in_place(nonce, Aad::from(aad), &mut buf)
                    .map_err(|_| format!("{}: message authentication failed", self.label()))?
                    .len();
                buf.truncate(n);
                Ok(buf)
            }
            Cipher::Cbc(key) => {
                if body.len() < CBC_BLOCK {
                    return Err(short());
                }
                let (iv, data) = body.split_at(CBC_BLOCK);
                if data.is_empty() || data.len() % CBC_BLOCK != 0 {
                    return Err(format!(
                        "{}: the stored data is not a multiple of the block size",
                        self.label()
                    ));
                }
                let bad = |_| format!("{}: invalid PKCS#7 padding (wrong key?)", self.label());
                match key.len() {
                    16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
                        .map_err(|_| short())?
                        .decrypt_padded_vec_mut::<Pkcs7>(data)
                        .map_err(bad),
                    24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(key, iv)
                        .map_err(|_| short())?
                        .decrypt_padded_vec_mut::<Pkcs7>(data)
                        .map_err(bad),
                    _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
                        .map_err(|_| short())?
                        .decrypt_padded_vec_mut::<Pkcs7>(data)
                        .map_err(bad),
                }
            }
            Cipher::Secretbox(c) => {
                if body.len() < BOX_NONCE + BOX_TAG {
                    return Err(short());
                }
                let (nonce, sealed) = body.split_at(BOX_NONCE);
                c.decrypt(crypto_secretbox::Nonce::from_slice(nonce), sealed)
                    .map_err(|_| format!("{}: message authentication failed", self.label()))
            }
        }
    }
}

fn length_error(kind: Kind, got: usize) -> String {
    format!(
        "secret is not of the expected length, got {got}, expected one of {:?}",
        kind.key_sizes()
    )
}

/// One element of a resource's `providers` list.
pub enum Provider {
    Identity,
    /// A keyed provider's keys, in order (the first seals).
    Keys(Vec<Key>),
}

/// What one resource's values go through: its providers in order (those of every entry
/// of the configuration that names the resource, entry by entry).
#[derive(Clone)]
pub struct Transformer {
    providers: Vec<Arc<Provider>>,
}

impl Transformer {
    pub fn new(providers: Vec<Arc<Provider>>) -> Self {
        Self { providers }
    }

    /// The value to store for `plain` under the etcd key `aad`: sealed by the first
    /// provider, or None when that is identity (store `plain` as it is).
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Option<Vec<u8>>, String> {
        match self.providers.first().map(Arc::as_ref) {
            Some(Provider::Keys(keys)) => match keys.first() {
                Some(k) => k.seal(aad, plain).map(Some),
                None => Err("a provider without keys".into()),
            },
            Some(Provider::Identity) | None => Ok(None),
        }
    }

    /// The plaintext of a stored value: None when it is not encrypted (it reads as it is).
    /// As kube's prefix transformers: a plain value reads only when identity is one of
    /// the providers ("no matching prefix found" otherwise); an encrypted one only with
    /// a configured key whose prefix it carries.
    pub fn open(&self, aad: &[u8], stored: &[u8]) -> Result<Option<Vec<u8>>, String> {
        // No value at all (a deletion's event) has nothing to open.
        if stored.is_empty() {
            return Ok(None);
        }
        if !stored.starts_with(ENCRYPTED) {
            return if self
                .providers
                .iter()
                .any(|p| matches!(p.as_ref(), Provider::Identity))
            {
                Ok(None)
            } else {
                Err("no matching prefix found (the value is not encrypted and identity is not among the providers)".into())
            };
        }
        let mut errors = vec![];
        for p in &self.providers {
            let Provider::Keys(keys) = p.as_ref() else {
                continue;
            };
            for k in keys.iter().filter(|k| stored.starts_with(&k.prefix)) {
                match k.open(aad, &stored[k.prefix.len()..]) {
                    Ok(plain) => return Ok(Some(plain)),
                    Err(e) => errors.push(e),
                }
            }
        }
        if errors.is_empty() {
            Err(format!(
                "no configured provider and key for {:?}",
                describe(stored)
            ))
        } else {
            Err(errors.join("; "))
        }
    }

    /// Whether a stored value was written by other than what writes now (the first
    /// provider, and its first key): kube's "stale", which makes an update that changes
    /// nothing rewrite the value, so `kubectl replace` of every object rotates keys.
    pub fn stale(&self, stored: &[u8]) -> bool {
        match self.providers.first().map(Arc::as_ref) {
            Some(Provider::Keys(keys)) => {
                keys.first().is_none_or(|k| !stored.starts_with(&k.prefix))
            }
            Some(Provider::Identity) | None => stored.starts_with(ENCRYPTED),
        }
    }
}

/// The provider and key name an encrypted value names (`k8s:enc:aesgcm:v1:key1`), for
/// messages; never more than the prefix.
pub fn describe(stored: &[u8]) -> String {
    let mut colons = 0;
    let end = stored
        .iter()
        .take(128)
        .position(|&b| {
            colons += usize::from(b == b':');
            colons == 5
        })
        .unwrap_or(stored.len().min(ENCRYPTED.len()));
    String::from_utf8_lossy(&stored[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn transformer(keys: Vec<Vec<Key>>) -> Transformer {
        Transformer::new(
            keys.into_iter()
                .map(|k| Arc::new(Provider::Keys(k)))
                .collect(),
        )
    }

    const AAD: &[u8] = b"/registry/secrets/default/s";

    #[test]
    fn encrypt_round_trips_every_provider_and_key_size() {
        let cases = [
            (Kind::AesGcm, 16),
            (Kind::AesGcm, 32),
            (Kind::AesCbc, 16),
            (Kind::AesCbc, 24),
            (Kind::AesCbc, 32),
            (Kind::Secretbox, 32),
        ];
        for (kind, len) in cases {
            let key = Key::new(kind, "key1", &vec![7u8; len]).unwrap();
            let prefix = format!("k8s:enc:{}:v1:key1:", kind.name());
            let t = transformer(vec![vec![key]]);
            for n in [0usize, 1, 15, 16, 17, 1000] {
                let plain: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
                let stored = t.seal(AAD, &plain).unwrap().unwrap();
                assert!(stored.starts_with(prefix.as_bytes()), "{kind:?}");
                let body = &stored[prefix.len()..];
                let expect = match kind {
                    Kind::AesGcm => GCM_NONCE + n + GCM_TAG,
                    Kind::AesCbc => CBC_BLOCK + (n / 16 + 1) * 16,
                    Kind::Secretbox => BOX_NONCE + BOX_TAG + n,
                };
                assert_eq!(body.len(), expect, "{kind:?} {len} {n}");
                if n >= 15 {
                    assert!(!stored.windows(n).any(|w| w == plain.as_slice()));
                }
                assert_eq!(t.open(AAD, &stored).unwrap(), Some(plain), "{kind:?} {n}");
            }
        }
    }

    #[test]
    fn encrypt_gcm_reads_kubes_recorded_value() {
        // kube's TestGCMLegacyDataCompatibility (aes_test.go): recorded output of its
        // GCM transformer for key "snorlax_awesomes" with authenticated data "bamboo".
        let key = Key::new(Kind::AesGcm, "k", b"snorlax_awesomes").unwrap();
        let body = hex("9f27c8fcea8a58c467d8e437dbf2d85955f9b4bd912f4ef967d788a0cb07797dac0a3f0a0845605ca85ac8562b4ae1");
        assert_eq!(key.open(b"bamboo", &body).unwrap(), b"pandas are the best");
        assert!(
            key.open(b"bamboo!", &body).is_err(),
            "the etcd key is authenticated"
        );
        let again = key
            .seal_with(b"bamboo", b"pandas are the best", &body[..12])
            .unwrap();
        assert_eq!(
            &again[..],
            [b"k8s:enc:aesgcm:v1:k:".as_slice(), &body].concat()
        );
    }

    #[test]
    fn encrypt_secretbox_matches_nacl_vector() {
        // golang.org/x/crypto/nacl/secretbox TestSecretBox (generated with NaCl's C
        // implementation): key 32×1, nonce 24×2, message 64×3; kube stores nonce ‖ box.
        let key = Key::new(Kind::Secretbox, "key1", &[1u8; 32]).unwrap();
        let stored = key.seal_with(b"", &[3u8; 64], &[2u8; 24]).unwrap();
        let expected = hex("8442bc313f4626f1359e3b50122b6ce6fe66ddfe7d39d14e637eb4fd5b45beadab55198df6ab5368439792a23c87db70acb6156dc5ef957ac04f6276cf6093b84be77ff0849cc33e34b7254d5a8f65ad");
        assert_eq!(
            stored,
            [
                b"k8s:enc:secretbox:v1:key1:".as_slice(),
                &[2u8; 24],
                &expected
            ]
            .concat()
        );
        let body = &stored[b"k8s:enc:secretbox:v1:key1:".len()..];
        assert_eq!(key.open(b"any key", body).unwrap(), vec![3u8; 64]);
    }

    #[test]
    fn encrypt_cbc_matches_nist_and_pads_as_pkcs7() {
        // NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt), first block; a 16-byte value gets a
        // whole block of padding (16×0x10), as kube's transformer writes it.
        let key = Key::new(Kind::AesCbc, "k", &hex("2b7e151628aed2a6abf7158809cf4f3c")).unwrap();
        let iv = hex("000102030405060708090a0b0c0d0e0f");
        let plain = hex("6bc1bee22e409f96e93d7e117393172a");
        let stored = key.seal_with(b"", &plain, &iv).unwrap();
        let body = &stored[b"k8s:enc:aescbc:v1:k:".len()..];
        assert_eq!(&body[..16], iv.as_slice());
        assert_eq!(
            &body[16..32],
            hex("7649abac8119b246cee98e9b12e9197d").as_slice()
        );
        assert_eq!(body.len(), 48);
        assert_eq!(key.open(b"", body).unwrap(), plain);
        assert!(key.open(b"", &body[..40]).is_err(), "not whole blocks");
    }

    #[test]
    fn encrypt_tampered_values_and_wrong_keys_are_errors() {
        for kind in [Kind::AesGcm, Kind::Secretbox] {
            let t = transformer(vec![vec![Key::new(kind, "key1", &[9u8; 32]).unwrap()]]);
            let stored = t.seal(AAD, b"{\"data\":{}}").unwrap().unwrap();
            for i in b"k8s:enc:aesgcm:v1:key1:".len()..stored.len() {
                let mut bad = stored.clone();
                bad[i] ^= 1;
                assert!(t.open(AAD, &bad).is_err(), "{kind:?} byte {i}");
            }
            assert!(t.open(AAD, &stored[..stored.len() - 1]).is_err());
            let other = transformer(vec![vec![Key::new(kind, "key1", &[8u8; 32]).unwrap()]]);
            let e = other.open(AAD, &stored).unwrap_err();
            assert!(e.contains("authentication failed"), "{e}");
        }
        // CBC authenticates nothing, but a wrong key garbles the padding (this fixed IV
        // and these keys were checked to).
        let k1 = Key::new(Kind::AesCbc, "key1", &[1u8; 32]).unwrap();
        let stored = k1.seal_with(b"", b"{\"data\":{}}", &[5u8; 16]).unwrap();
        let other = transformer(vec![vec![
            Key::new(Kind::AesCbc, "key1", &[2u8; 32]).unwrap()
        ]]);
        assert!(other.open(b"", &stored).is_err());
    }

    #[test]
    fn encrypt_rotation_opens_old_keys_and_seals_with_the_first() {
        let old = || Key::new(Kind::AesGcm, "key1", &[1u8; 32]).unwrap();
        let new = || Key::new(Kind::AesCbc, "key2", &[2u8; 32]).unwrap();
        let before = transformer(vec![vec![old()]]);
        let written = before.seal(AAD, b"v1").unwrap().unwrap();
        // New key first (another provider), old one still listed.
        let after = transformer(vec![vec![new()], vec![old()]]);
        assert_eq!(after.open(AAD, &written).unwrap(), Some(b"v1".to_vec()));
        let rewritten = after.seal(AAD, b"v1").unwrap().unwrap();
        assert!(rewritten.starts_with(b"k8s:enc:aescbc:v1:key2:"));
        // Old key dropped: the old value names a key that is not configured.
        let e = transformer(vec![vec![new()]])
            .open(AAD, &written)
            .unwrap_err();
        assert!(e.contains("k8s:enc:aesgcm:v1:key1"), "{e}");
        // Plaintext reads only with identity among the providers (kube's "no matching
        // prefix found"); identity first writes plaintext.
        let e = after.open(AAD, b"{\"a\":1}").unwrap_err();
        assert!(e.contains("no matching prefix found"), "{e}");
        let identity = Transformer::new(vec![Arc::new(Provider::Identity)]);
        assert_eq!(identity.open(AAD, b"{\"a\":1}").unwrap(), None);
        assert_eq!(identity.seal(AAD, b"x").unwrap(), None);
        // Two keys of one provider sharing a name: the one that opens wins.
        let same_name = transformer(vec![vec![
            Key::new(Kind::AesGcm, "key1", &[3u8; 32]).unwrap(),
            old(),
        ]]);
        assert_eq!(same_name.open(AAD, &written).unwrap(), Some(b"v1".to_vec()));
    }

    #[test]
    fn encrypt_describe_shows_only_the_prefix() {
        assert_eq!(
            describe(b"k8s:enc:aesgcm:v1:key1:\x00secret"),
            "k8s:enc:aesgcm:v1:key1"
        );
        assert_eq!(describe(b"k8s:enc:garbage"), "k8s:enc:");
    }
}
