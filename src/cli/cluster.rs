//! `kyso cluster status|add|remove|transfer-leader|digest`: operate the Raft cluster
//! through any node (membership changes are sent on to the leader).

use clap::{Args, Subcommand};
use kyso_proto::v1 as pb;
use serde_json::json;

use super::client::{channel, print_json, status_error, Connection};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Role, term, leader, indexes and members as this node sees them.
    Status(Connection),
    /// Add a node: learner first, promoted to voter once it caught up with the log and, with
    /// per-node storage, holds every archived document (run it again if it times out).
    Add(AddArgs),
    /// Remove a node (demoted first if it is a voter). With per-node storage a voter is
    /// removed only while a majority of the voters that remain hold every document.
    Remove(IdArgs),
    /// Hand leadership to another voter.
    TransferLeader(IdArgs),
    /// SHA-256 of this node's replicated state, to compare replicas.
    Digest(Connection),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[arg(long)]
    pub id: u64,
    /// host:port of the new node's peer port.
    #[arg(long)]
    pub raft_addr: String,
    /// host:port of the new node's gRPC API.
    #[arg(long)]
    pub client_addr: String,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[arg(long)]
    pub id: u64,
}

pub async fn run(command: ClusterCommand) -> anyhow::Result<()> {
    let (connection, status) = match command {
        ClusterCommand::Status(connection) => {
            let mut client = pb::cluster_service_client::ClusterServiceClient::new(channel(&connection).await?);
            let status = client.status(pb::ClusterStatusRequest {}).await.map_err(status_error)?.into_inner();
            (connection, status)
        }
        ClusterCommand::Add(args) => {
            let mut client = pb::cluster_service_client::ClusterServiceClient::new(channel(&args.connection).await?);
            let request = pb::AddNodeRequest { id: args.id, raft_addr: args.raft_addr, client_addr: args.client_addr };
            (args.connection, client.add_node(request).await.map_err(status_error)?.into_inner())
        }
        ClusterCommand::Remove(args) => {
            let mut client = pb::cluster_service_client::ClusterServiceClient::new(channel(&args.connection).await?);
            (args.connection, client.remove_node(pb::RemoveNodeRequest { id: args.id }).await.map_err(status_error)?.into_inner())
        }
        ClusterCommand::TransferLeader(args) => {
            let mut client = pb::cluster_service_client::ClusterServiceClient::new(channel(&args.connection).await?);
            let request = pb::TransferLeaderRequest { id: args.id };
            (args.connection, client.transfer_leader(request).await.map_err(status_error)?.into_inner())
        }
        ClusterCommand::Digest(connection) => {
            let mut client = pb::cluster_service_client::ClusterServiceClient::new(channel(&connection).await?);
            let digest = client.state_digest(pb::StateDigestRequest {}).await.map_err(status_error)?.into_inner();
            if connection.json {
                print_json(json!({
                    "applied_index": digest.applied_index, "sha256": hex::encode(&digest.sha256),
                    "log_tree_size": digest.log_tree_size, "log_root_hash": hex::encode(&digest.log_root_hash),
                }));
            } else {
                out!("applied {}  state {}  log size {}  root {}", digest.applied_index, hex::encode(&digest.sha256), digest.log_tree_size, hex::encode(&digest.log_root_hash));
            }
            return Ok(());
        }
    };
    print_status(&connection, &status);
    Ok(())
}

fn print_status(connection: &Connection, status: &pb::ClusterStatus) {
    if connection.json {
        print_json(json!({
            "node_id": status.node_id, "role": status.role, "term": status.term, "leader_id": status.leader_id,
            "leader_client_addr": status.leader_client_addr, "commit_index": status.commit_index,
            "applied_index": status.applied_index, "first_log_index": status.first_log_index,
            "last_log_index": status.last_log_index, "joint": status.joint, "stopped": status.stopped,
            "log_tree_size": status.log_tree_size,
            "members": status.members.iter().map(|member| json!({
                "id": member.id, "raft_addr": member.raft_addr, "client_addr": member.client_addr, "role": member.role,
            })).collect::<Vec<_>>(),
        }));
        return;
    }
    out!(
        "node {} {} term {} leader {} ({})  commit {} applied {} log [{}..{}] tree {}",
        status.node_id,
        status.role,
        status.term,
        status.leader_id,
        status.leader_client_addr,
        status.commit_index,
        status.applied_index,
        status.first_log_index,
        status.last_log_index,
        status.log_tree_size
    );
    for member in &status.members {
        out!("  {} {:7} raft {} client {}", member.id, member.role, member.raft_addr, member.client_addr);
    }
    if status.joint {
        out!("  (membership change in progress)");
    }
    if !status.stopped.is_empty() {
        out!("  STOPPED: {}", status.stopped);
    }
}
