//! [`Storage`] in memory: the model the registry's unit tests run on. It keeps every
//! version since it was made, so reads at a past revision work as on an uncompacted etcd.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Guard, Kv, Op, Range, Storage, StorageError, Txn, TxnResult};

#[derive(Default)]
struct State {
    revision: i64,
    /// Every version of every key: (key, revision) → the value then, None once deleted.
    versions: BTreeMap<(Vec<u8>, i64), Option<Kv>>,
}

impl State {
    /// The key as of `rev`.
    fn at(&self, key: &[u8], rev: i64) -> Option<&Kv> {
        self.versions
            .range((key.to_vec(), 0)..=(key.to_vec(), rev))
            .next_back()
            .and_then(|(_, v)| v.as_ref())
    }

    fn holds(&self, g: &Guard) -> bool {
        match g {
            Guard::Absent(k) => self.at(k.as_bytes(), self.revision).is_none(),
            Guard::ModRevision(k, rev) => self
                .at(k.as_bytes(), self.revision)
                .is_some_and(|kv| kv.mod_revision == *rev),
        }
    }
}

#[derive(Default)]
pub struct Memory(Mutex<State>);

impl Memory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn revision(&self) -> i64 {
        self.0.lock().map(|s| s.revision).unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl Storage for Memory {
    async fn range(
        &self,
        start: &[u8],
        end: &[u8],
        revision: i64,
        limit: i64,
    ) -> Result<Range, StorageError> {
        let s = self
            .0
            .lock()
            .map_err(|_| StorageError::Other("storage lock poisoned".into()))?;
        if revision > s.revision {
            return Err(StorageError::Other(format!(
                "required revision {revision} is a future revision"
            )));
        }
        let rev = if revision == 0 { s.revision } else { revision };
        let mut keys: Vec<&Vec<u8>> = s
            .versions
            .keys()
            .map(|(k, _)| k)
            .filter(|k| k.as_slice() >= start && (end.is_empty() || k.as_slice() < end))
            .collect();
        keys.dedup();
        let mut out = Range {
            revision: s.revision,
            ..Default::default()
        };
        for k in keys {
            if let Some(kv) = s.at(k, rev) {
                out.count += 1;
                if limit > 0 && out.kvs.len() as i64 == limit {
                    out.more = true;
                    continue;
                }
                out.kvs.push(kv.clone());
            }
        }
        Ok(out)
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StorageError> {
        let mut s = self
            .0
            .lock()
            .map_err(|_| StorageError::Other("storage lock poisoned".into()))?;
        if !txn.guards.iter().all(|g| s.holds(g)) {
            let found = txn
                .on_failure
                .iter()
                .map(|k| s.at(k.as_bytes(), s.revision).is_some())
                .collect();
            return Ok(TxnResult {
                succeeded: false,
                revision: s.revision,
                found,
            });
        }
        let rev = s.revision + 1;
        for op in &txn.ops {
            match op {
                Op::Put(k, v) => {
                    let created = s
                        .at(k.as_bytes(), s.revision)
                        .map_or(rev, |kv| kv.create_revision);
                    s.versions.insert(
                        (k.as_bytes().to_vec(), rev),
                        Some(Kv {
                            key: k.as_bytes().to_vec(),
                            value: v.clone(),
                            create_revision: created,
                            mod_revision: rev,
                        }),
                    );
                }
                Op::Delete(k) => {
                    if s.at(k.as_bytes(), s.revision).is_some() {
                        s.versions.insert((k.as_bytes().to_vec(), rev), None);
                    }
                }
            }
        }
        s.revision = rev;
        Ok(TxnResult {
            succeeded: true,
            revision: rev,
            found: vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn guards_revisions_and_past_reads_follow_etcd() {
        let m = Memory::new();
        let put = |k: &str, v: &str| Op::Put(k.into(), v.as_bytes().to_vec());
        let r = m
            .txn(Txn {
                guards: vec![Guard::Absent("/a".into())],
                ops: vec![put("/a", "1"), put("/b", "1")],
                on_failure: vec![],
            })
            .await
            .unwrap();
        assert!(r.succeeded && r.revision == 1);
        let again = m
            .txn(Txn {
                guards: vec![Guard::Absent("/a".into())],
                ops: vec![put("/a", "2")],
                on_failure: vec!["/a".into(), "/c".into()],
            })
            .await
            .unwrap();
        assert!(!again.succeeded);
        assert_eq!(again.found, vec![true, false]);
        let r = m
            .txn(Txn {
                guards: vec![Guard::ModRevision("/a".into(), 1)],
                ops: vec![put("/a", "2"), Op::Delete("/b".into())],
                on_failure: vec![],
            })
            .await
            .unwrap();
        assert!(r.succeeded && r.revision == 2);
        let a = m.get("/a").await.unwrap().unwrap();
        assert_eq!((a.create_revision, a.mod_revision), (1, 2));
        assert!(m.get("/b").await.unwrap().is_none());
        let old = m.range(b"/", b"0", 1, 0).await.unwrap();
        assert_eq!(old.kvs.len(), 2);
        let limited = m.range(b"/", b"0", 1, 1).await.unwrap();
        assert!(limited.more && limited.kvs.len() == 1 && limited.count == 2);
    }
}
