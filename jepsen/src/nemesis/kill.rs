//! `kill`: SIGKILL a member (the leader half of the time). Undoing it restarts the member
//! on the data it has.

use async_trait::async_trait;

use super::{Active, Ctx, Fault};
use crate::cluster::Start;

pub struct Kill;

#[async_trait]
impl Fault for Kill {
    fn name(&self) -> &'static str {
        "kill"
    }

    fn help(&self) -> &'static str {
        "SIGKILL a member (the leader half of the time), restart it later"
    }

    async fn start(&self, cx: &mut Ctx) -> anyhow::Result<Box<dyn Active>> {
        let (t, detail) = cx.target().await;
        cx.note("start-kill", Some(t), detail);
        cx.blocking(move |c| c.kill(t)).await?;
        Ok(Box::new(Killed(t)))
    }
}

struct Killed(usize);

#[async_trait]
impl Active for Killed {
    async fn undo(self: Box<Self>, cx: &mut Ctx) -> anyhow::Result<String> {
        let t = self.0;
        cx.blocking(move |c| c.start(t, Start::Restart)).await?;
        Ok(String::new())
    }
}
