//! The partitions (`partition-one`, `partition-leader`, `partition-halves`,
//! `partition-ring`, `bridge`): cut member-to-member links in one of the shapes of
//! `grudges.rs`. Undoing one heals every link.

use async_trait::async_trait;

use super::grudges::{self, Shape};
use super::{Active, Ctx, Fault};

/// A partition nemesis: its `--nemesis` name and help, and the shape it cuts.
pub struct Partition {
    name: &'static str,
    help: &'static str,
    shape: Shape,
}

pub const ONE: Partition = Partition {
    name: "partition-one",
    help: "Isolate one random member",
    shape: Shape::One,
};

pub const LEADER: Partition = Partition {
    name: "partition-leader",
    help: "Isolate the current leader",
    shape: Shape::Leader,
};

pub const HALVES: Partition = Partition {
    name: "partition-halves",
    help: "Cut the members into two random halves",
    shape: Shape::Halves,
};

pub const RING: Partition = Partition {
    name: "partition-ring",
    help: "Every member sees a majority, no two the same one",
    shape: Shape::Ring,
};

pub const BRIDGE: Partition = Partition {
    name: "bridge",
    help: "Two halves joined by one member that sees both",
    shape: Shape::Bridge,
};

#[async_trait]
impl Fault for Partition {
    fn name(&self) -> &'static str {
        self.name
    }

    fn help(&self) -> &'static str {
        self.help
    }

    async fn start(&self, cx: &mut Ctx) -> anyhow::Result<Box<dyn Active>> {
        let n = cx.cluster.size();
        let leader = match self.shape {
            Shape::Leader => cx.leader().await,
            _ => None,
        };
        let (grudge, detail) = grudges::for_shape(self.shape, n, leader, &mut cx.rng);
        cx.note(&format!("start-{}", self.name), None, detail);
        cx.blocking(move |c| c.partition(&grudge)).await?;
        Ok(Box::new(Partitioned))
    }
}

struct Partitioned;

#[async_trait]
impl Active for Partitioned {
    async fn undo(self: Box<Self>, cx: &mut Ctx) -> anyhow::Result<String> {
        cx.blocking(|c| c.heal()).await?;
        Ok(String::new())
    }
}
