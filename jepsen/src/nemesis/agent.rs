//! Faults of the deployment's agents (`kill-agent`, `pause-agent`, `partition-agent`): one
//! random agent is killed (and started again), frozen (and thawed), or cut off from the
//! masters and the front (and reconnected). The control plane must carry on: pods bound
//! once, Deployments rolled out after the heal.

use async_trait::async_trait;
use rand::Rng;

use super::{Active, Ctx, Fault};
use crate::cluster::AgentAct;

/// An agent fault: its `--nemesis` name and help, what starts it and what undoes it.
pub struct AgentFault {
    name: &'static str,
    help: &'static str,
    start: AgentAct,
    undo: AgentAct,
}

pub const KILL: AgentFault = AgentFault {
    name: "kill-agent",
    help: "SIGKILL a random agent's machine, start it later (--cluster compose)",
    start: AgentAct::Kill,
    undo: AgentAct::Start,
};

pub const PAUSE: AgentFault = AgentFault {
    name: "pause-agent",
    help: "Freeze a random agent's machine, thaw it later (--cluster compose)",
    start: AgentAct::Pause,
    undo: AgentAct::Resume,
};

pub const PARTITION: AgentFault = AgentFault {
    name: "partition-agent",
    help: "Cut a random agent off from the masters and the front (--cluster compose)",
    start: AgentAct::Isolate,
    undo: AgentAct::Reconnect,
};

#[async_trait]
impl Fault for AgentFault {
    fn name(&self) -> &'static str {
        self.name
    }

    fn help(&self) -> &'static str {
        self.help
    }

    async fn start(&self, cx: &mut Ctx) -> anyhow::Result<Box<dyn Active>> {
        let n = cx.cluster.agents();
        if n == 0 {
            anyhow::bail!("{}: this cluster runs no agents", self.name);
        }
        let a = cx.rng.random_range(0..n);
        cx.note(
            &format!("start-{}", self.name),
            None,
            cx.cluster.agent_name(a),
        );
        let act = self.start;
        cx.blocking(move |c| c.agent(a, act)).await?;
        Ok(Box::new(Struck {
            agent: a,
            undo: self.undo,
        }))
    }
}

struct Struck {
    agent: usize,
    undo: AgentAct,
}

#[async_trait]
impl Active for Struck {
    async fn undo(self: Box<Self>, cx: &mut Ctx) -> anyhow::Result<String> {
        let (a, act) = (self.agent, self.undo);
        cx.blocking(move |c| c.agent(a, act)).await?;
        Ok(cx.cluster.agent_name(a))
    }
}
