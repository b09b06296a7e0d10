//! What a request needs from its caller's permissions, as etcd 3.4's `authApplierV3` and
//! `v3_server.go` check it: a Range READ over its range; a Put WRITE on its key (and READ
//! when it asks for the previous value); a DeleteRange WRITE over its range (and READ when
//! it asks for the previous values); a Txn READ over every compare and the needs of every
//! operation of both branches, nested Txns included.
//!
//! A Put that attaches a lease also needs WRITE on every key already attached to that
//! lease (etcd's `checkLeasePuts`: whoever may not write those keys could revoke them
//! through the new one). etcd checks that for a plain Put only; here a Put inside a Txn is
//! checked the same way.

use proto::etcdserverpb::request_op::Request;
use proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest};

/// One permission a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need<'a> {
    /// READ over `[key, range_end)` (etcd's range conventions).
    Read { key: &'a [u8], range_end: &'a [u8] },
    /// WRITE over `[key, range_end)`.
    Write { key: &'a [u8], range_end: &'a [u8] },
    /// WRITE on every key attached to the lease (attaching it, revoking it).
    LeaseKeys(i64),
    /// The `root` role: maintenance, membership and user/role management.
    Admin,
}

pub fn range(r: &RangeRequest) -> Need<'_> {
    Need::Read {
        key: &r.key,
        range_end: &r.range_end,
    }
}

pub fn put<'a>(p: &'a PutRequest, out: &mut Vec<Need<'a>>) {
    out.push(Need::Write {
        key: &p.key,
        range_end: &[],
    });
    if p.lease != 0 {
        out.push(Need::LeaseKeys(p.lease));
    }
    if p.prev_kv {
        out.push(Need::Read {
            key: &p.key,
            range_end: &[],
        });
    }
}

pub fn delete<'a>(d: &'a DeleteRangeRequest, out: &mut Vec<Need<'a>>) {
    if d.prev_kv {
        out.push(Need::Read {
            key: &d.key,
            range_end: &d.range_end,
        });
    }
    out.push(Need::Write {
        key: &d.key,
        range_end: &d.range_end,
    });
}

/// Appends what `t` needs: its compares first, then the success and failure branches.
pub fn txn<'a>(t: &'a TxnRequest, out: &mut Vec<Need<'a>>) {
    for c in &t.compare {
        out.push(Need::Read {
            key: &c.key,
            range_end: &c.range_end,
        });
    }
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(Request::RequestRange(r)) => out.push(range(r)),
            Some(Request::RequestPut(p)) => put(p, out),
            Some(Request::RequestDeleteRange(d)) => delete(d, out),
            Some(Request::RequestTxn(inner)) => txn(inner, out),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use proto::etcdserverpb::{Compare, RequestOp};

    use super::*;

    fn op(r: Request) -> RequestOp {
        RequestOp { request: Some(r) }
    }

    #[test]
    fn a_txn_needs_its_compares_and_both_branches_recursively() {
        let inner = TxnRequest {
            success: vec![op(Request::RequestDeleteRange(DeleteRangeRequest {
                key: b"d".to_vec(),
                range_end: b"e".to_vec(),
                prev_kv: true,
            }))],
            ..Default::default()
        };
        let t = TxnRequest {
            compare: vec![Compare {
                key: b"c".to_vec(),
                ..Default::default()
            }],
            success: vec![op(Request::RequestPut(PutRequest {
                key: b"p".to_vec(),
                lease: 7,
                ..Default::default()
            }))],
            failure: vec![
                op(Request::RequestRange(RangeRequest {
                    key: b"r".to_vec(),
                    range_end: b"\0".to_vec(),
                    ..Default::default()
                })),
                op(Request::RequestTxn(inner)),
            ],
        };
        let mut needs = Vec::new();
        txn(&t, &mut needs);
        assert_eq!(
            needs,
            vec![
                Need::Read {
                    key: b"c",
                    range_end: b""
                },
                Need::Write {
                    key: b"p",
                    range_end: b""
                },
                Need::LeaseKeys(7),
                Need::Read {
                    key: b"r",
                    range_end: b"\0"
                },
                Need::Read {
                    key: b"d",
                    range_end: b"e"
                },
                Need::Write {
                    key: b"d",
                    range_end: b"e"
                },
            ]
        );
    }

    #[test]
    fn a_put_asking_for_the_previous_value_needs_read_too() {
        let p = PutRequest {
            key: b"k".to_vec(),
            prev_kv: true,
            ..Default::default()
        };
        let mut needs = Vec::new();
        put(&p, &mut needs);
        assert!(needs.contains(&Need::Read {
            key: b"k",
            range_end: b""
        }));
    }
}
