//! Encodings at the two edges of the Raft layer: the peer protocol (tonic/prost) and the
//! records kept on disk. Raft's own types (protobuf 2) cross these edges as opaque bytes.
//!
//! Every decoder here reads bytes that came from a peer or from disk: it returns a
//! [`CodecError`], it never panics.

use std::collections::BTreeMap;

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Message};

use super::PeerAddress;

/// Generated code for `proto/kyso/cluster/v1/raft.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("kyso.cluster.v1");
}

/// Version of [`pb::SnapshotEnvelope`] this code writes and reads. Version 1 carried the
/// whole state inside the envelope; version 2 carries only the members' addresses, the
/// state being streamed beside the message (see `transport`).
pub(crate) const SNAPSHOT_ENVELOPE_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot decode {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("snapshot envelope version {0} is not supported (expected {SNAPSHOT_ENVELOPE_VERSION}): run the same kyso release on every member")]
    UnsupportedVersion(u32),
    #[error("snapshot state checksum mismatch: the data was damaged in transit or on disk")]
    ChecksumMismatch,
}

/// The membership as of an applied log index: raft's configuration and every member's
/// addresses.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Membership {
    /// Index of the last membership change reflected here (0 before any).
    pub index: u64,
    pub conf_state: ConfState,
    pub peers: BTreeMap<u64, PeerAddress>,
}

pub(crate) fn encode_raft_message(message: &Message) -> Vec<u8> {
    // protobuf 2 serialisation of a well-formed in-memory message cannot fail: every field
    // is set by raft-rs itself and no required fields exist in proto3.
    message.write_to_bytes().expect("a raft message always serialises")
}

pub(crate) fn decode_raft_message(bytes: &[u8]) -> Result<Message, CodecError> {
    Message::parse_from_bytes(bytes)
        .map_err(|error| CodecError::Malformed { what: "raft message", reason: error.to_string() })
}

pub(crate) fn peer_to_pb(peer: &PeerAddress) -> pb::PeerAddress {
    pb::PeerAddress { id: peer.id, raft_addr: peer.raft_addr.clone(), client_addr: peer.client_addr.clone() }
}

pub(crate) fn peer_from_pb(peer: &pb::PeerAddress) -> PeerAddress {
    PeerAddress { id: peer.id, raft_addr: peer.raft_addr.clone(), client_addr: peer.client_addr.clone() }
}

/// The context of a membership change entry: the address of the node it adds.
pub(crate) fn encode_peer(peer: &PeerAddress) -> Vec<u8> {
    prost::Message::encode_to_vec(&peer_to_pb(peer))
}

pub(crate) fn decode_peer(bytes: &[u8]) -> Result<PeerAddress, CodecError> {
    let peer: pb::PeerAddress = prost::Message::decode(bytes)
        .map_err(|error| CodecError::Malformed { what: "peer address", reason: error.to_string() })?;
    Ok(peer_from_pb(&peer))
}

pub(crate) fn encode_membership(membership: &Membership) -> Vec<u8> {
    let record = pb::MembershipRecord {
        index: membership.index,
        conf_state: membership.conf_state.write_to_bytes().expect("a conf state always serialises"),
        peers: membership.peers.values().map(peer_to_pb).collect(),
    };
    prost::Message::encode_to_vec(&record)
}

pub(crate) fn decode_membership(bytes: &[u8]) -> Result<Membership, CodecError> {
    let record: pb::MembershipRecord = prost::Message::decode(bytes)
        .map_err(|error| CodecError::Malformed { what: "membership record", reason: error.to_string() })?;
    let conf_state = ConfState::parse_from_bytes(&record.conf_state)
        .map_err(|error| CodecError::Malformed { what: "conf state", reason: error.to_string() })?;
    let peers = record.peers.iter().map(|peer| (peer.id, peer_from_pb(peer))).collect();
    Ok(Membership { index: record.index, conf_state, peers })
}

/// The data of a snapshot message: the members' addresses. The state travels beside it.
pub(crate) fn encode_snapshot(peers: &BTreeMap<u64, PeerAddress>) -> Bytes {
    let envelope = pb::SnapshotEnvelope {
        version: SNAPSHOT_ENVELOPE_VERSION,
        peers: peers.values().map(peer_to_pb).collect(),
        state: Vec::new(),
        state_crc32: 0,
    };
    Bytes::from(prost::Message::encode_to_vec(&envelope))
}

/// Unwraps a snapshot message's data: the members' addresses.
pub(crate) fn decode_snapshot(bytes: &[u8]) -> Result<BTreeMap<u64, PeerAddress>, CodecError> {
    let envelope: pb::SnapshotEnvelope = prost::Message::decode(bytes)
        .map_err(|error| CodecError::Malformed { what: "snapshot envelope", reason: error.to_string() })?;
    if envelope.version != SNAPSHOT_ENVELOPE_VERSION {
        return Err(CodecError::UnsupportedVersion(envelope.version));
    }
    Ok(envelope.peers.iter().map(|peer| (peer.id, peer_from_pb(peer))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_envelope_of_another_version_is_refused() {
        let mut peers = BTreeMap::new();
        peers.insert(1, PeerAddress { id: 1, raft_addr: "a:1".into(), client_addr: "a:2".into() });
        assert_eq!(decode_snapshot(&encode_snapshot(&peers)).unwrap(), peers);
        let old = pb::SnapshotEnvelope { version: 1, peers: Vec::new(), state: b"the whole state".to_vec(), state_crc32: 0 };
        let error = decode_snapshot(&prost::Message::encode_to_vec(&old)).unwrap_err();
        assert!(error.to_string().contains("same kyso release"), "{error}");
    }
}
