//! `member`: shrink the cluster by removing a member (through another one), then kill it
//! and wipe its data. Undoing it grows the cluster back: the member is added again (it gets
//! a new ID) and started empty, joining the others.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;
use tracing::warn;

use super::{Active, Ctx, Fault};
use crate::client::Client;
use crate::cluster::Start;

pub struct Member;

#[async_trait]
impl Fault for Member {
    fn name(&self) -> &'static str {
        "member"
    }

    fn help(&self) -> &'static str {
        "Remove a member, wipe it, add it back"
    }

    async fn start(&self, cx: &mut Ctx) -> anyhow::Result<Box<dyn Active>> {
        let t = cx.rng.random_range(0..cx.cluster.size());
        let id = cx.ids[t];
        cx.note(
            "start-member",
            Some(t),
            format!("remove {}", cx.cluster.name(t)),
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut removed = false;
        while Instant::now() < deadline && !removed {
            if let Some(mut c) = other_client(cx, t).await {
                // An ambiguous outcome is settled by the member list, not by a retry.
                let _ = c.member_remove(id).await;
            }
            removed = member_ids(cx, t)
                .await
                .is_some_and(|l| l.iter().all(|(m, _, _)| *m != id));
            if !removed {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        if !removed {
            anyhow::bail!("member {id:x} was not removed in time");
        }
        if let Err(e) = cx
            .blocking(move |c| {
                c.kill(t)?;
                c.wipe(t)
            })
            .await
        {
            warn!(error = %e, "removed member could not be wiped");
        }
        Ok(Box::new(Removed(t)))
    }
}

/// Removed from the cluster and wiped.
struct Removed(usize);

#[async_trait]
impl Active for Removed {
    async fn undo(self: Box<Self>, cx: &mut Ctx) -> anyhow::Result<String> {
        add_member(cx, self.0).await?;
        Ok(String::new())
    }
}

/// A member to talk to other than `not`, that answers.
async fn other_client(cx: &Ctx, not: usize) -> Option<Client> {
    for node in (0..cx.cluster.size()).filter(|&i| i != not) {
        if let Some(mut c) = cx.client(node) {
            if c.status().await.is_ok() {
                return Some(c);
            }
        }
    }
    None
}

async fn member_ids(cx: &Ctx, not: usize) -> Option<Vec<(u64, String, Vec<String>)>> {
    other_client(cx, not).await?.member_list().await.ok()
}

/// Grow: add the wiped member back (it gets a new ID) and start it empty.
async fn add_member(cx: &mut Ctx, t: usize) -> anyhow::Result<()> {
    let url = cx.cluster.peer_url(t);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if Instant::now() > deadline {
            anyhow::bail!("{} could not be added back in time", cx.cluster.name(t));
        }
        let listed = member_ids(cx, t).await.unwrap_or_default();
        if let Some((id, _, _)) = listed.iter().find(|(_, _, urls)| urls.contains(&url)) {
            cx.ids[t] = *id;
            let initial = listed
                .iter()
                .map(|(id, name, urls)| {
                    let name = if urls.contains(&url) {
                        cx.cluster.name(t)
                    } else if name.is_empty() {
                        format!("{id:x}")
                    } else {
                        name.clone()
                    };
                    format!("{name}={}", urls.first().cloned().unwrap_or_default())
                })
                .collect::<Vec<_>>()
                .join(",");
            return cx
                .blocking(move |c| {
                    c.start(
                        t,
                        Start::Join {
                            initial_cluster: initial,
                        },
                    )
                })
                .await;
        }
        if !listed.is_empty() {
            if let Some(mut c) = other_client(cx, t).await {
                let _ = c.member_add(&url).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
