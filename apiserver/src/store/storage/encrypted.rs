//! [`Storage`] that encrypts at rest (`--encryption-provider-config`): it wraps another
//! storage, seals the value of every `Op::Put` of a `txn` under an encrypted resource
//! (`/registry/<resource>/`) with the configuration's first provider, and opens values in
//! `range` results and in watch events (`kv` and `prev`), so everything above it — the
//! registry, the watch cache feed, client watches served from storage — sees plaintext.
//! Keys, revisions, guards and deletes pass through untouched. See `crate::encryption`
//! for the providers and kube's byte formats.
//!
//! A value that cannot be opened (a key no longer configured, a tampered value) is never
//! handed on as a value:
//! - a read of one key, or a range inside one resource (`/registry/secrets/...`: a get, a
//!   list of that resource), fails with an internal error that names the key (kube's
//!   behaviour for a get and a list);
//! - a watch inside one resource (a client's watch served from storage) delivers the
//!   revisions before it, then ends with `Canceled` naming the key, as kube's watcher
//!   ends with an error;
//! - a range or a watch across resources (the watch cache's list and watch of all of
//!   `/registry/`) carries the key with an empty value instead, and the failure is
//!   logged: an empty value decodes as no object, so the watch cache leaves it out, as it
//!   leaves out any undecodable value, and one bad object does not stop the cache for
//!   every other.

use std::sync::Arc;

use super::{
    Kv, Op, Range, Storage, StorageError, Txn, TxnResult, WatchMessage, WatchSpec, WatchStream,
};
use crate::encryption::Encryption;
use crate::etcd::prefix_end;

pub struct Encrypted {
    inner: Arc<dyn Storage>,
    encryption: Arc<Encryption>,
}

impl Encrypted {
    pub fn new(inner: Arc<dyn Storage>, encryption: Arc<Encryption>) -> Self {
        Self { inner, encryption }
    }
}

fn failed(kv: &Kv, e: &str) -> String {
    format!(
        "the stored value of {:?} cannot be decrypted: {e}",
        String::from_utf8_lossy(&kv.key)
    )
}

/// Replaces a stored value by its plaintext (noting whether it is stale), or fails.
fn open_or_fail(encryption: &Encryption, kv: &mut Kv) -> Result<(), StorageError> {
    kv.stale = encryption.stale(&kv.key, &kv.value);
    match encryption.open(&kv.key, &kv.value) {
        Ok(None) => Ok(()),
        Ok(Some(plain)) => {
            kv.value = plain;
            Ok(())
        }
        Err(e) => Err(StorageError::Other(failed(kv, &e))),
    }
}

/// Replaces a stored value by its plaintext, or by an empty value (logged) when it
/// cannot be opened.
fn open_or_empty(encryption: &Encryption, kv: &mut Kv) {
    if let Err(e) = open_or_fail(encryption, kv) {
        tracing::error!(error = %e, "encryption at rest: the value is left out");
        kv.value = Vec::new();
    }
}

/// Whether `[start, end)` lies inside one `/registry/<resource>/` (or is one key).
fn one_resource(start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        return true;
    }
    let Some(rest) = start.strip_prefix(b"/registry/") else {
        return false;
    };
    let Some(slash) = rest.iter().position(|&b| b == b'/') else {
        return false;
    };
    let prefix = &start[..b"/registry/".len() + slash + 1];
    end <= prefix_end(prefix).as_slice()
}

#[async_trait::async_trait]
impl Storage for Encrypted {
    async fn range(
        &self,
        start: &[u8],
        end: &[u8],
        revision: i64,
        limit: i64,
    ) -> Result<Range, StorageError> {
        let mut r = self.inner.range(start, end, revision, limit).await?;
        if one_resource(start, end) {
            for kv in &mut r.kvs {
                open_or_fail(&self.encryption, kv)?;
            }
        } else {
            for kv in &mut r.kvs {
                open_or_empty(&self.encryption, kv);
            }
        }
        Ok(r)
    }

    async fn txn(&self, mut txn: Txn) -> Result<TxnResult, StorageError> {
        for op in &mut txn.ops {
            if let Op::Put(key, value) = op {
                if let Some(sealed) = self
                    .encryption
                    .seal(key.as_bytes(), value)
                    .map_err(|e| StorageError::Other(format!("encrypting {key:?}: {e}")))?
                {
                    *value = sealed;
                }
            }
        }
        self.inner.txn(txn).await
    }

    async fn current_revision(&self) -> Result<i64, StorageError> {
        self.inner.current_revision().await
    }

    async fn watch(&self, spec: WatchSpec) -> Result<Box<dyn WatchStream>, StorageError> {
        let strict = one_resource(&spec.start, &spec.end);
        Ok(Box::new(EncryptedWatch {
            inner: self.inner.watch(spec).await?,
            encryption: self.encryption.clone(),
            strict,
            cancel: None,
            ended: false,
        }))
    }

    fn replicas(&self) -> usize {
        self.inner.replicas()
    }

    fn preferred_replica(&self) -> usize {
        self.inner.preferred_replica()
    }

    fn replica_name(&self, i: usize) -> String {
        self.inner.replica_name(i)
    }

    async fn get(&self, key: &str) -> Result<Option<Kv>, StorageError> {
        let Some(mut kv) = self.inner.get(key).await? else {
            return Ok(None);
        };
        open_or_fail(&self.encryption, &mut kv)?;
        Ok(Some(kv))
    }
}

struct EncryptedWatch {
    inner: Box<dyn WatchStream>,
    encryption: Arc<Encryption>,
    /// Inside one resource: a value that cannot be opened ends the stream.
    strict: bool,
    /// Why the stream ends, once the events before the failed one are delivered.
    cancel: Option<String>,
    ended: bool,
}

impl EncryptedWatch {
    /// Opens every value; strict, the events from the revision of the first value that
    /// cannot be opened on are dropped and the stream is to end.
    fn open_all(&mut self, events: &mut Vec<super::Event>) {
        for i in 0..events.len() {
            let e = &mut events[i];
            if !self.strict {
                open_or_empty(&self.encryption, &mut e.kv);
                if let Some(p) = e.prev.as_mut() {
                    open_or_empty(&self.encryption, p);
                }
                continue;
            }
            let opened = open_or_fail(&self.encryption, &mut e.kv).and_then(|()| {
                e.prev
                    .as_mut()
                    .map_or(Ok(()), |p| open_or_fail(&self.encryption, p))
            });
            if let Err(err) = opened {
                // A revision is never split: its earlier events go too.
                let rev = e.kv.mod_revision;
                events.truncate(i);
                events.retain(|e| e.kv.mod_revision < rev);
                self.cancel = Some(err.to_string());
                return;
            }
        }
    }
}

#[async_trait::async_trait]
impl WatchStream for EncryptedWatch {
    async fn next(&mut self) -> Option<WatchMessage> {
        if self.ended {
            return None;
        }
        if let Some(why) = self.cancel.take() {
            self.ended = true;
            return Some(WatchMessage::Canceled(why));
        }
        // Nothing is awaited after the inner stream's message: as cancel-safe as it.
        let msg = self.inner.next().await?;
        Some(match msg {
            WatchMessage::Events(mut events) => {
                self.open_all(&mut events);
                match self.cancel.take() {
                    Some(why) if events.is_empty() => {
                        self.ended = true;
                        WatchMessage::Canceled(why)
                    }
                    why => {
                        self.cancel = why;
                        WatchMessage::Events(events)
                    }
                }
            }
            other => other,
        })
    }

    async fn request_progress(&mut self) {
        self.inner.request_progress().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::Engine;
    use serde_json::{json, Value};

    use super::*;
    use crate::store::storage::Memory;

    const SECRETS: &[u8] = b"/registry/secrets/";
    const S1: &str = "/registry/secrets/default/s1";
    const S2: &str = "/registry/secrets/default/s2";
    const CM: &str = "/registry/configmaps/default/c";
    const PLAIN: &[u8] = br#"{"metadata":{"name":"s1"},"data":{"password":"aHVudGVyMg=="}}"#;

    /// An aesgcm provider with one 32-byte key of `byte`s.
    fn gcm(name: &str, byte: u8) -> String {
        let secret = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        format!("      - aesgcm:\n          keys:\n            - name: {name}\n              secret: {secret}\n")
    }

    fn over(m: &Arc<Memory>, providers: &[String]) -> Encrypted {
        let text = format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{}",
            providers.concat()
        );
        Encrypted::new(m.clone(), Arc::new(Encryption::parse(&text).unwrap()))
    }

    async fn put(s: &dyn Storage, key: &str, value: &[u8]) {
        let r = s
            .txn(Txn {
                ops: vec![Op::Put(key.into(), value.to_vec())],
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(r.succeeded);
    }

    async fn raw(m: &Memory, key: &str) -> Vec<u8> {
        m.get(key).await.unwrap().unwrap().value
    }

    async fn value(s: &dyn Storage, key: &str) -> Result<Vec<u8>, StorageError> {
        Ok(s.get(key).await?.expect("the key exists").value)
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[tokio::test]
    async fn encrypt_storage_seals_puts_and_opens_reads() {
        let m = Arc::new(Memory::new());
        let s = over(&m, &[gcm("key1", 1), "      - identity: {}\n".into()]);
        s.txn(Txn {
            guards: vec![super::super::Guard::Absent(S1.into())],
            ops: vec![
                Op::Put(S1.into(), PLAIN.to_vec()),
                Op::Put(CM.into(), PLAIN.to_vec()),
            ],
            on_failure: vec![],
        })
        .await
        .unwrap();
        let stored = raw(&m, S1).await;
        assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:key1:"), "{stored:?}");
        assert!(!contains(&stored, b"aHVudGVyMg=="));
        assert!(!contains(&stored, b"metadata"));
        assert_eq!(raw(&m, CM).await, PLAIN, "configmaps are not encrypted");
        assert_eq!(value(&s, S1).await.unwrap(), PLAIN);
        let secrets = s.range(SECRETS, &prefix_end(SECRETS), 0, 0).await.unwrap();
        assert_eq!(secrets.kvs[0].value, PLAIN);
        let all = s
            .range(b"/registry/", &prefix_end(b"/registry/"), 0, 0)
            .await
            .unwrap();
        assert!(all.kvs.iter().all(|kv| kv.value == PLAIN));
        assert_eq!(s.current_revision().await.unwrap(), m.revision());
        // The etcd key is authenticated: the same bytes under another key do not open.
        put(m.as_ref(), S2, &stored).await;
        let e = value(&s, S2).await.unwrap_err();
        assert!(e.to_string().contains("authentication failed"), "{e}");
    }

    #[tokio::test]
    async fn encrypt_storage_reads_plaintext_written_before_encryption_only_with_identity() {
        let m = Arc::new(Memory::new());
        put(m.as_ref(), S1, PLAIN).await;
        // As kube: without identity among the providers, plaintext does not read.
        let strict = over(&m, &[gcm("key1", 1)]);
        let e = value(&strict, S1).await.unwrap_err().to_string();
        assert!(e.contains("no matching prefix found"), "{e}");
        let s = over(&m, &[gcm("key1", 1), "      - identity: {}\n".into()]);
        let kv = s.get(S1).await.unwrap().unwrap();
        assert_eq!(kv.value, PLAIN);
        assert!(kv.stale, "plaintext read while aesgcm writes is stale");
        let r = s.range(SECRETS, &prefix_end(SECRETS), 0, 0).await.unwrap();
        assert_eq!(r.kvs[0].value, PLAIN);
        // Rewriting it encrypts it, and it is current from then on.
        put(&s, S1, PLAIN).await;
        assert!(raw(&m, S1).await.starts_with(b"k8s:enc:aesgcm:v1:key1:"));
        let kv = s.get(S1).await.unwrap().unwrap();
        assert_eq!(kv.value, PLAIN);
        assert!(!kv.stale);
        // Identity first: plaintext is current, an encrypted value is stale.
        let back = over(&m, &["      - identity: {}\n".into(), gcm("key1", 1)]);
        assert!(back.get(S1).await.unwrap().unwrap().stale);
    }

    #[tokio::test]
    async fn encrypt_storage_key_rotation_reads_old_and_writes_new() {
        let m = Arc::new(Memory::new());
        let old = over(&m, &[gcm("key1", 1)]);
        put(&old, S1, PLAIN).await;
        put(&old, S2, PLAIN).await;
        // The new key first, the old one second.
        let rotating = over(&m, &[gcm("key2", 2), gcm("key1", 1)]);
        assert_eq!(value(&rotating, S1).await.unwrap(), PLAIN);
        assert!(rotating.get(S1).await.unwrap().unwrap().stale);
        put(&rotating, S1, PLAIN).await;
        assert!(raw(&m, S1).await.starts_with(b"k8s:enc:aesgcm:v1:key2:"));
        assert_eq!(value(&rotating, S1).await.unwrap(), PLAIN);
        assert!(!rotating.get(S1).await.unwrap().unwrap().stale);
        // The old key removed: what was rewritten reads, what was not is an error.
        let new = over(&m, &[gcm("key2", 2)]);
        assert_eq!(value(&new, S1).await.unwrap(), PLAIN);
        let e = value(&new, S2).await.unwrap_err().to_string();
        assert!(
            e.contains(S2) && e.contains("k8s:enc:aesgcm:v1:key1"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn encrypt_storage_undecryptable_value_is_an_error_never_a_value() {
        let m = Arc::new(Memory::new());
        let s = over(&m, &[gcm("key1", 1)]);
        put(&s, S1, PLAIN).await;
        put(&s, S2, PLAIN).await;
        put(&s, CM, PLAIN).await;
        let mut bad = raw(&m, S1).await;
        *bad.last_mut().unwrap() ^= 1;
        put(m.as_ref(), S1, &bad).await;

        let e = value(&s, S1).await.unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(S1) && msg.contains("authentication failed"),
            "{msg}"
        );
        assert_eq!(crate::error::ApiError::from(e).code(), 500);
        // A list of the resource fails as a whole, as kube's does.
        assert!(s.range(SECRETS, &prefix_end(SECRETS), 0, 0).await.is_err());
        // A range across resources (the watch cache's) carries it with no value.
        let all = s
            .range(b"/registry/", &prefix_end(b"/registry/"), 0, 0)
            .await
            .unwrap();
        let by_key = |k: &str| {
            all.kvs
                .iter()
                .find(|kv| kv.key == k.as_bytes())
                .map(|kv| kv.value.clone())
        };
        assert_eq!(by_key(S1), Some(vec![]));
        assert_eq!(by_key(S2), Some(PLAIN.to_vec()));
        assert_eq!(by_key(CM), Some(PLAIN.to_vec()));
        // Encrypted data under a resource that is not configured is an error too.
        put(m.as_ref(), CM, &raw(&m, S2).await).await;
        let e = value(&s, CM).await.unwrap_err().to_string();
        assert!(e.contains("no encryption configured"), "{e}");
    }

    #[tokio::test]
    async fn encrypt_storage_watch_events_carry_plaintext() {
        let m = Arc::new(Memory::new());
        let s = over(&m, &[gcm("key1", 1)]);
        let mut w = s
            .watch(WatchSpec {
                start: b"/registry/".to_vec(),
                end: prefix_end(b"/registry/"),
                from: 1,
                prev_kv: true,
                ..Default::default()
            })
            .await
            .unwrap();
        let v2 = br#"{"metadata":{"name":"s1"},"data":{}}"#;
        put(&s, S1, PLAIN).await;
        put(&s, S1, v2).await;
        s.txn(Txn {
            ops: vec![Op::Delete(S1.into())],
            ..Default::default()
        })
        .await
        .unwrap();
        put(m.as_ref(), S2, b"k8s:enc:aesgcm:v1:key1:tampered").await;
        let mut events = vec![];
        while events.len() < 4 {
            match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
                Ok(Some(WatchMessage::Events(e))) => events.extend(e),
                other => panic!("{other:?}"),
            }
        }
        let prev = |i: usize| events[i].prev.as_ref().map(|p| p.value.clone());
        assert_eq!(events[0].kv.value, PLAIN);
        assert_eq!(
            (events[1].kv.value.as_slice(), prev(1)),
            (&v2[..], Some(PLAIN.to_vec()))
        );
        assert!(events[2].deleted);
        assert_eq!(prev(2), Some(v2.to_vec()));
        assert!(
            events[3].kv.value.is_empty(),
            "never the undecryptable bytes"
        );
        assert_eq!(s.replicas(), m.replicas());
        // A watch of the secrets alone (a client's) ends at the value it cannot open.
        let mut w = s
            .watch(WatchSpec {
                start: SECRETS.to_vec(),
                end: prefix_end(SECRETS),
                from: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut seen = 0;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
                Ok(Some(WatchMessage::Events(e))) => seen += e.len(),
                Ok(Some(WatchMessage::Canceled(why))) => {
                    assert!(why.contains(S2), "{why}");
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen, 3, "the events before it");
        assert!(w.next().await.is_none());
    }

    #[tokio::test]
    async fn encrypt_store_creates_and_reads_a_secret_and_the_cache_sees_plaintext() {
        use crate::kinds::{Env, Kinds};
        use crate::store::{cache, Store, Target, Write};
        let m = Arc::new(Memory::new());
        let storage: Arc<dyn Storage> = Arc::new(over(&m, &[gcm("key1", 1)]));
        let kinds = Kinds::all();
        let store = Store {
            storage: storage.clone(),
            kinds: kinds.clone(),
            cache: cache::Cache::new(kinds.clone(), 100),
            env: Env {
                service_ips: crate::kinds::service::alloc::Range::parse("10.96.0.0/24")
                    .expect("a range"),
            },
            cache_wait: Duration::ZERO,
            metrics: Arc::new(crate::metrics::Metrics::default()),
        };
        let target = |plural: &str, ns: Option<&str>, name: Option<&str>| Target {
            kind: kinds.find("", "v1", plural).expect("a served kind"),
            namespace: ns.map(String::from),
            name: name.map(String::from),
        };
        let w = Write::new("test", false);
        let body = |v: Value| serde_json::to_vec(&v).unwrap();
        store
            .create(
                &target("namespaces", None, None),
                &body(json!({"metadata": {"name": "team"}})),
                &w,
            )
            .await
            .unwrap();
        store
            .create(
                &target("secrets", Some("team"), None),
                &body(json!({"metadata": {"name": "s"}, "data": {"password": "aHVudGVyMg=="}})),
                &w,
            )
            .await
            .unwrap();
        let got = store
            .get(&target("secrets", Some("team"), Some("s")), None)
            .await
            .unwrap();
        let got: Value = serde_json::from_slice(&got).unwrap();
        assert_eq!(got["data"]["password"], "aHVudGVyMg==");
        let stored = raw(&m, "/registry/secrets/team/s").await;
        assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:key1:"));
        assert!(!contains(&stored, b"aHVudGVyMg=="));
        assert!(raw(&m, "/registry/namespaces/team").await.starts_with(b"{"));
        // The watch cache is fed through the same storage.
        let feed = tokio::spawn(cache::run(
            store.cache.clone(),
            storage,
            Duration::from_millis(50),
        ));
        assert!(
            store
                .cache
                .wait_for(m.revision(), Duration::from_secs(5))
                .await
        );
        let cached = store.cache.get("/registry/secrets/team/s").expect("cached");
        let cached: Value = serde_json::from_slice(&cached.json).unwrap();
        assert_eq!(cached["data"]["password"], "aHVudGVyMg==");
        feed.abort();

        // Rotation, as kube documents it: a new key first, then `kubectl replace` of every
        // secret unchanged. An unchanged object stored with the old key is written again.
        let rotated = Store {
            storage: Arc::new(over(&m, &[gcm("key2", 2), gcm("key1", 1)])),
            ..store
        };
        let t = target("secrets", Some("team"), Some("s"));
        let rev = m.revision();
        rotated
            .update(&t, &body(got.clone()), None, &w)
            .await
            .unwrap();
        let stored = raw(&m, "/registry/secrets/team/s").await;
        assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:key2:"), "{stored:?}");
        assert_eq!(m.revision(), rev + 1);
        // Now current: replacing it again writes nothing.
        let again = rotated.get(&t, None).await.unwrap();
        rotated.update(&t, &again, None, &w).await.unwrap();
        assert_eq!(m.revision(), rev + 1);
    }
}
