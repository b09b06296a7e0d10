//! `pause`: SIGSTOP a member (the leader half of the time). Undoing it sends SIGCONT.

use async_trait::async_trait;

use super::{Active, Ctx, Fault};

pub struct Pause;

#[async_trait]
impl Fault for Pause {
    fn name(&self) -> &'static str {
        "pause"
    }

    fn help(&self) -> &'static str {
        "SIGSTOP a member (the leader half of the time), SIGCONT it later"
    }

    async fn start(&self, cx: &mut Ctx) -> anyhow::Result<Box<dyn Active>> {
        let (t, detail) = cx.target().await;
        cx.note("start-pause", Some(t), detail);
        cx.blocking(move |c| c.pause(t)).await?;
        Ok(Box::new(Paused(t)))
    }
}

struct Paused(usize);

#[async_trait]
impl Active for Paused {
    async fn undo(self: Box<Self>, cx: &mut Ctx) -> anyhow::Result<String> {
        let t = self.0;
        cx.blocking(move |c| c.resume(t)).await?;
        Ok(String::new())
    }
}
