//! `compact`: compact the key space at a recent revision while reads and watches run.
//! Nothing needs undoing; stopping it compacts once more.

use async_trait::async_trait;
use rand::Rng;

use super::{Active, Ctx, Fault};

pub struct Compact;

#[async_trait]
impl Fault for Compact {
    fn name(&self) -> &'static str {
        "compact"
    }

    fn help(&self) -> &'static str {
        "Compact the key space while reads and watches run"
    }

    async fn start(&self, cx: &mut Ctx) -> anyhow::Result<Box<dyn Active>> {
        let detail = compact(cx).await;
        cx.note("start-compact", None, detail);
        Ok(Box::new(Compacted))
    }
}

struct Compacted;

#[async_trait]
impl Active for Compacted {
    async fn undo(self: Box<Self>, cx: &mut Ctx) -> anyhow::Result<String> {
        Ok(compact(cx).await)
    }
}

/// Compacts at a recent revision; returns what it did.
async fn compact(cx: &mut Ctx) -> String {
    let node = cx.rng.random_range(0..cx.cluster.size());
    let back = cx.rng.random_range(0..50);
    let Some(mut c) = cx.client(node) else {
        return "no client".into();
    };
    let rev = match c.get("compact-probe", false).await {
        Ok((_, rev)) => rev,
        Err(e) => return format!("reading the revision failed: {e}"),
    };
    let at = (rev - back).max(1);
    match c.compact(at).await {
        Ok(()) => crate::history::compaction_detail(at, &cx.cluster.name(node)),
        Err(e) => format!("compaction at {at} failed: {e}"),
    }
}
