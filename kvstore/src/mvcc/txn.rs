//! Put, DeleteRange and Txn. All three are executed as a Txn: its writes share one new
//! revision, each op sees the ops before it, and an error anywhere leaves no change at all
//! (the changes are only returned, never half-applied).

use proto::etcdserverpb::request_op::Request;
use proto::etcdserverpb::response_op::Response;
use proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RequestOp, ResponseHeader,
    ResponseOp, TxnRequest, TxnResponse,
};

use super::range::{self, Overlay};
use super::{compare, Change, ChangeKind, KeyValue, MvccRead, RangeEnd, Revisions};
use crate::error::KvError;

/// What executing a Txn produced.
#[derive(Debug)]
pub struct TxnOutcome {
    pub response: TxnResponse,
    /// In the order they were made; a change's sub-revision is its index here.
    pub changes: Vec<Change>,
    /// The store revision after the Txn: `current + 1` if it wrote anything.
    pub revision: i64,
}

pub fn put_as_txn(req: PutRequest) -> TxnRequest {
    TxnRequest {
        success: vec![RequestOp {
            request: Some(Request::RequestPut(req)),
        }],
        ..Default::default()
    }
}

pub fn delete_as_txn(req: DeleteRangeRequest) -> TxnRequest {
    TxnRequest {
        success: vec![RequestOp {
            request: Some(Request::RequestDeleteRange(req)),
        }],
        ..Default::default()
    }
}

pub fn execute<R: MvccRead + ?Sized>(
    store: &R,
    revs: Revisions,
    txn: &TxnRequest,
) -> Result<TxnOutcome, KvError> {
    // As in etcd, every compare (nested ones too) is judged against the state before the Txn.
    let mut path = Vec::new();
    choose_path(store, revs.current, txn, &mut path)?;
    let mut exec = Exec {
        store,
        revs,
        next_rev: revs.current + 1,
        overlay: Overlay::new(),
        changes: Vec::new(),
    };
    let mut path = path.into_iter();
    let mut response = exec.txn(txn, &mut path, true)?;
    let revision = if exec.changes.is_empty() {
        revs.current
    } else {
        exec.next_rev
    };
    set_header_revision(&mut response, revision);
    Ok(TxnOutcome {
        response,
        changes: exec.changes,
        revision,
    })
}

fn choose_path<R: MvccRead + ?Sized>(
    store: &R,
    rev: i64,
    txn: &TxnRequest,
    path: &mut Vec<bool>,
) -> Result<(), KvError> {
    let mut succeeded = true;
    for c in &txn.compare {
        if !compare::holds(store, rev, c)? {
            succeeded = false;
            break;
        }
    }
    path.push(succeeded);
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    for op in ops {
        if let Some(Request::RequestTxn(inner)) = &op.request {
            choose_path(store, rev, inner, path)?;
        }
    }
    Ok(())
}

struct Exec<'a, R: ?Sized> {
    store: &'a R,
    revs: Revisions,
    next_rev: i64,
    overlay: Overlay,
    changes: Vec<Change>,
}

impl<R: MvccRead + ?Sized> Exec<'_, R> {
    /// `last`: no op of the outer Txns follows this one, so the last op's writes need not
    /// be kept in the overlay (nothing reads them in this Txn).
    fn txn(
        &mut self,
        txn: &TxnRequest,
        path: &mut impl Iterator<Item = bool>,
        last: bool,
    ) -> Result<TxnResponse, KvError> {
        let succeeded = path.next().unwrap_or(false);
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let read_later = !(last && i + 1 == ops.len());
            let response = match &op.request {
                Some(Request::RequestRange(r)) => Response::ResponseRange(range::execute(
                    self.store,
                    self.revs,
                    r,
                    Some(&self.overlay),
                )?),
                Some(Request::RequestPut(p)) => Response::ResponsePut(self.put(p, read_later)?),
                Some(Request::RequestDeleteRange(d)) => {
                    Response::ResponseDeleteRange(self.delete(d, read_later)?)
                }
                Some(Request::RequestTxn(t)) => {
                    Response::ResponseTxn(self.txn(t, path, !read_later)?)
                }
                None => return Err(KvError::KeyNotFound),
            };
            responses.push(ResponseOp {
                response: Some(response),
            });
        }
        Ok(TxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }

    fn current(&self, key: &[u8]) -> Result<Option<KeyValue>, KvError> {
        match self.overlay.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.store.get(key, self.revs.current),
        }
    }

    /// `read_later`: a later op of this Txn may read the key, so the overlay keeps it.
    fn put(&mut self, req: &PutRequest, read_later: bool) -> Result<PutResponse, KvError> {
        let prev = self.current(&req.key)?;
        if (req.ignore_value || req.ignore_lease) && prev.is_none() {
            return Err(KvError::KeyNotFound);
        }
        let value = match (&prev, req.ignore_value) {
            (Some(p), true) => p.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match (&prev, req.ignore_lease) {
            (Some(p), true) => p.lease,
            _ => req.lease,
        };
        if lease != 0 && !self.store.lease_exists(lease)? {
            return Err(KvError::LeaseNotFound);
        }
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: prev.as_ref().map_or(self.next_rev, |p| p.create_revision),
            mod_revision: self.next_rev,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            value,
            lease,
        };
        if read_later {
            self.overlay.insert(kv.key.clone(), Some(kv.clone()));
        }
        let prev_kv = if req.prev_kv { prev.clone() } else { None };
        self.changes.push(Change {
            kind: ChangeKind::Put,
            kv,
            prev,
            prev_value_omitted: false,
        });
        Ok(PutResponse {
            header: None,
            prev_kv,
        })
    }

    fn delete(
        &mut self,
        req: &DeleteRangeRequest,
        read_later: bool,
    ) -> Result<DeleteRangeResponse, KvError> {
        let end = RangeEnd::from_request(&req.range_end);
        let mut victims = Vec::new();
        // Without prev_kv the values are neither read nor copied (etcd's DeleteRange never
        // reads them either); the victims' other fields (the lease) are still needed.
        let range_req = proto::etcdserverpb::RangeRequest {
            key: req.key.clone(),
            range_end: req.range_end.clone(),
            keys_only: !req.prev_kv,
            ..Default::default()
        };
        if !matches!(&end, RangeEnd::Until(e) if e.as_slice() <= req.key.as_slice()) {
            victims = range::execute(self.store, self.revs, &range_req, Some(&self.overlay))?.kvs;
        }
        let deleted = victims.len() as i64;
        // The victims' values are copied only when the client asked for them back.
        let prev_kvs = if req.prev_kv {
            victims.clone()
        } else {
            Vec::new()
        };
        let prev_value_omitted = !req.prev_kv;
        self.changes.reserve(victims.len());
        for mut prev in victims {
            // Without prev_kv the key moves to the change (no copy of it per deleted key).
            let key = if prev_value_omitted {
                std::mem::take(&mut prev.key)
            } else {
                prev.key.clone()
            };
            let kv = KeyValue {
                key,
                mod_revision: self.next_rev,
                ..Default::default()
            };
            if read_later {
                self.overlay.insert(kv.key.clone(), None);
            }
            self.changes.push(Change {
                kind: ChangeKind::Delete,
                kv,
                prev: Some(prev),
                prev_value_omitted,
            });
        }
        Ok(DeleteRangeResponse {
            header: None,
            deleted,
            prev_kvs,
        })
    }
}

fn set_header_revision(resp: &mut TxnResponse, revision: i64) {
    resp.header = Some(ResponseHeader {
        revision,
        ..Default::default()
    });
    for op in &mut resp.responses {
        let header = Some(ResponseHeader {
            revision,
            ..Default::default()
        });
        match &mut op.response {
            Some(Response::ResponseRange(r)) => r.header = header,
            Some(Response::ResponsePut(r)) => r.header = header,
            Some(Response::ResponseDeleteRange(r)) => r.header = header,
            Some(Response::ResponseTxn(t)) => set_header_revision(t, revision),
            None => {}
        }
    }
}
