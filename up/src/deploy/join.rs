//! Whether a master whose kvstore member has no data starts a new cluster or joins the one
//! running, decided from what the other members say (`members.rs` asks them) (etcd leaves this to the operator's
//! `--initial-cluster-state`; a container restarted with an empty volume cannot be told):
//!
//! - no other member answers: the deployment is starting, `new`;
//! - a member answers and lists this member's peer URL as never started (no client URLs
//!   published: a member of the initial cluster that has not run yet, or one `etcdctl
//!   member add` added): `existing`, it catches up from the leader;
//! - it lists this member as started before: its data is gone while the cluster counts on
//!   its votes; refused, saying how to replace it (remove, then add it again);
//! - it does not list it: it was removed; refused, saying how to add it.

use proto::etcdserverpb::Member;

use super::topology::{self as t, Host};

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    New,
    Existing,
}

/// What to do, given the members another member listed (None: none answered). Pure.
pub fn decide(me: &Host, listed: Option<&[Member]>) -> Result<Decision, String> {
    let Some(members) = listed else {
        return Ok(Decision::New);
    };
    let url = t::peer_url(me);
    let add = format!("etcdctl member add {} --peer-urls={url}", me.name);
    match members.iter().find(|m| m.peer_ur_ls.contains(&url)) {
        None => Err(format!(
            "{} ({url}) is not a member of the running kvstore: add it first ({add}), then start it again",
            me.name
        )),
        Some(m) if m.client_ur_ls.is_empty() => Ok(Decision::Existing),
        Some(m) => Err(format!(
            "{} has no data but the running kvstore counts it as a member that has run (id {:x}): replace it with `etcdctl member remove {:x}` and `{add}`, then start it again",
            me.name, m.id, m.id
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, url: &str, client: bool) -> Member {
        Member {
            id,
            name: String::new(),
            peer_ur_ls: vec![url.into()],
            client_ur_ls: if client {
                vec!["https://x:2379".into()]
            } else {
                vec![]
            },
            is_learner: false,
        }
    }

    #[test]
    fn joins_only_as_a_member_that_never_ran() {
        let me: Host = "m1=10.237.0.11".parse().unwrap();
        assert_eq!(decide(&me, None), Ok(Decision::New));
        let others = [member(1, "https://10.237.0.10:2380", true)];
        let mut listed = others.to_vec();
        listed.push(member(0xab, "https://10.237.0.11:2380", false));
        assert_eq!(decide(&me, Some(&listed)), Ok(Decision::Existing));
        listed[1].client_ur_ls = vec!["https://10.237.0.11:2379".into()];
        let e = decide(&me, Some(&listed)).unwrap_err();
        assert!(e.contains("etcdctl member remove ab"), "{e}");
        let e = decide(&me, Some(&others)).unwrap_err();
        assert!(
            e.contains("etcdctl member add m1 --peer-urls=https://10.237.0.11:2380"),
            "{e}"
        );
    }
}
