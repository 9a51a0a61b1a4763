//! The nemesis: a fault schedule fixed by the seed, applied to real node processes.

use std::time::{Duration, Instant};

use kyso_proto::v1 as pb;

use super::history::History;
use super::rng::Rng;
use crate::common::{ClusterLayout, TestNode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    Kill,
    Pause,
    Partition,
    Membership,
    RestartAll,
}

#[derive(Debug, Clone)]
pub struct Fault {
    /// Quiet time before the fault starts.
    pub gap: Duration,
    pub kind: FaultKind,
    /// Position of the target node.
    pub target: usize,
    /// How long the fault lasts before it is healed.
    pub duration: Duration,
}

impl Fault {
    /// The positions a partition cuts off: the target alone, or (on odd draws, and only
    /// where that is more than one node) the largest minority, the target and the
    /// positions after it. A function of the schedule, so a seed replays the same sides.
    pub fn minority(&self, nodes: usize) -> Vec<usize> {
        let size = if self.gap.as_millis() % 2 == 1 { (nodes - 1) / 2 } else { 1 };
        (0..size.max(1)).map(|offset| (self.target + offset) % nodes).collect()
    }

    /// Whether a whole-cluster restart is a power loss (SIGKILL) rather than SIGTERM.
    pub fn hard(&self) -> bool {
        self.target.is_multiple_of(2)
    }
}

/// The whole schedule for a run, a pure function of the seed.
pub fn schedule(seed: u64, nodes: usize, faults_max: usize) -> Vec<Fault> {
    let mut rng = Rng::new(seed);
    (0..faults_max)
        .map(|_| {
            let kind = match rng.below(100) {
                0..=29 => FaultKind::Kill,
                30..=49 => FaultKind::Pause,
                50..=79 => FaultKind::Partition,
                80..=91 => FaultKind::Membership,
                _ => FaultKind::RestartAll,
            };
            Fault { gap: rng.millis(1_500, 3_500), kind, target: rng.below(nodes as u64) as usize, duration: rng.millis(800, 3_000) }
        })
        .collect()
}

/// A schedule of power losses only, one every few seconds, for the bounded power-loss
/// run: each drops every node's unsynced writes at once and then kills every node.
pub fn power_loss_schedule(seed: u64, nodes: usize, faults_max: usize) -> Vec<Fault> {
    let mut rng = Rng::new(seed);
    (0..faults_max)
        .map(|_| {
            // An even target makes `hard()` true: a power loss, never a clean restart.
            let target = (rng.below(nodes as u64) as usize / 2) * 2;
            Fault { gap: rng.millis(2_000, 4_000), kind: FaultKind::RestartAll, target, duration: Duration::ZERO }
        })
        .collect()
}

/// The nodes under test, their current Raft ids and the layout to restart them.
pub struct Cluster {
    /// The power of the filesystem every node's data directory lives on.
    pub power: kyso_testfs::PowerSwitch,
    pub layout: ClusterLayout,
    pub nodes: Vec<TestNode>,
    pub ids: Vec<u64>,
    /// (grpc port, raft port) per position.
    pub ports: Vec<(u16, u16)>,
    pub next_id: u64,
}

fn signal(node: &TestNode, name: &str) {
    if let Some(pid) = node.pid() {
        let _ = std::process::Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
    }
}

impl Cluster {
    async fn inject(&self, position: usize, isolate_from: Vec<u64>) {
        if !self.nodes[position].is_running() {
            return;
        }
        let request = pb::InjectFaultRequest { isolate_from, ..Default::default() };
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            self.nodes[position].cluster().await.inject_fault(request).await
        })
        .await;
    }

    async fn heal_partitions(&self) {
        for position in 0..self.nodes.len() {
            self.inject(position, Vec::new()).await;
        }
    }

    /// Cuts the positions in `minority` off from every other node, both ways; the two
    /// sides still talk among themselves.
    async fn partition(&self, minority: &[usize]) {
        let side_of = |position: usize| minority.contains(&position);
        for position in 0..self.nodes.len() {
            let across: Vec<u64> = (0..self.ids.len()).filter(|&other| side_of(other) != side_of(position)).map(|other| self.ids[other]).collect();
            self.inject(position, across).await;
        }
    }

    /// Whether `id` is still in the membership as `position` sees it (asked until it answers,
    /// for up to a minute; a node that never answers counts as a member, so nothing is wiped).
    async fn is_member(&self, position: usize, id: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(status) = self.nodes[position].cluster().await.status(pb::ClusterStatusRequest {}).await {
                return status.into_inner().members.iter().any(|member| member.id == id);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        true
    }

    /// Removes the target, wipes it, and adds it back under a fresh id.
    async fn replace_member(&mut self, target: usize, history: &History) {
        let helper = (target + 1) % self.nodes.len();
        let old_id = self.ids[target];
        let mut removal = self.nodes[helper].cluster().await.remove_node(pb::RemoveNodeRequest { id: old_id }).await;
        if matches!(&removal, Err(status) if status.message().contains("transfer leadership")) {
            // The leader cannot remove itself: hand leadership to the helper first.
            let to = self.ids[helper];
            history.fault(format!("node {old_id} leads: transfer leadership to node {to} first"));
            let _ = self.nodes[helper].cluster().await.transfer_leader(pb::TransferLeaderRequest { id: to }).await;
            removal = self.nodes[helper].cluster().await.remove_node(pb::RemoveNodeRequest { id: old_id }).await;
        }
        if let Err(status) = removal {
            if self.is_member(helper, old_id).await {
                history.fault(format!("remove node {old_id} refused: {}", status.message()));
                return;
            }
            // It left the membership, but the answer did not confirm that the documents are
            // on a majority without it: its disk is wiped only once a repeated call does.
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut last = status;
            loop {
                history.fault(format!("node {old_id} left, remove again: {}", last.message()));
                assert!(Instant::now() < deadline, "removing node {old_id} never completed: {last:?}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                match self.nodes[helper].cluster().await.remove_node(pb::RemoveNodeRequest { id: old_id }).await {
                    Ok(_) => break,
                    Err(status) => last = status,
                }
            }
        }
        self.nodes[target].kill();
        let data = self.nodes[target].dir.join("data");
        let _ = std::fs::remove_dir_all(&data);
        let new_id = self.next_id;
        self.next_id += 1;
        let (grpc, raft) = self.ports[target];
        let dir = self.nodes[target].dir.clone();
        self.nodes[target] = TestNode::start_config(&dir, &self.layout.config_with(new_id, grpc, raft, true, "fault_injection = true\n"), &self.layout.tls);
        self.ids[target] = new_id;
        let request = pb::AddNodeRequest { id: new_id, raft_addr: format!("127.0.0.1:{raft}"), client_addr: format!("127.0.0.1:{grpc}") };
        // AddNode promotes the new member only once it holds every archived document, which
        // takes a while on a large archive; it answers DEADLINE_EXCEEDED and is called again.
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            match self.nodes[helper].cluster().await.add_node(request.clone()).await {
                Ok(_) => break,
                Err(status) if Instant::now() < deadline => {
                    history.fault(format!("add node {new_id} retry: {}", status.message()));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(status) => panic!("could not add node {new_id} back: {status:?}"),
            }
        }
    }

    /// Applies one fault and heals it.
    pub async fn apply(&mut self, fault: &Fault, history: &History) {
        let target = fault.target;
        let id = self.ids[target];
        match fault.kind {
            FaultKind::Kill => {
                history.fault(format!("kill -9 node {id} for {:?}", fault.duration));
                self.nodes[target].kill();
                tokio::time::sleep(fault.duration).await;
                self.nodes[target].start_again();
            }
            FaultKind::Pause => {
                history.fault(format!("SIGSTOP node {id} for {:?}", fault.duration));
                signal(&self.nodes[target], "STOP");
                tokio::time::sleep(fault.duration).await;
                signal(&self.nodes[target], "CONT");
            }
            FaultKind::Partition => {
                let minority = fault.minority(self.nodes.len());
                let ids: Vec<u64> = minority.iter().map(|&position| self.ids[position]).collect();
                history.fault(format!("partition nodes {ids:?} from the rest for {:?}", fault.duration));
                self.partition(&minority).await;
                tokio::time::sleep(fault.duration).await;
                self.heal_partitions().await;
            }
            FaultKind::Membership => {
                history.fault(format!("remove node {id}, add it back as node {}", self.next_id));
                self.replace_member(target, history).await;
            }
            FaultKind::RestartAll => {
                if fault.hard() {
                    // The filesystem drops every unsynced write of every node at once and
                    // refuses writes until the power is back; only then are the nodes killed.
                    let files = self.power.power_loss();
                    history.fault(format!("power loss: unsynced writes of every node dropped ({files} files), kill -9 every node, start them all"));
                    for node in self.nodes.iter_mut() {
                        node.kill();
                    }
                    self.power.power_on();
                } else {
                    history.fault("restart the whole cluster (SIGTERM)".into());
                    for node in self.nodes.iter_mut() {
                        node.stop();
                    }
                }
                for node in self.nodes.iter_mut() {
                    node.start_again();
                }
            }
        }
    }

    /// Ends every fault: resumes paused nodes, heals partitions, starts stopped nodes.
    pub async fn heal_all(&mut self) {
        for node in &self.nodes {
            signal(node, "CONT");
        }
        for node in self.nodes.iter_mut() {
            if !node.is_running() {
                node.start_again();
            }
        }
        self.heal_partitions().await;
    }
}
