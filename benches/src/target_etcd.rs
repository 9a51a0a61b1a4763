//! Driving etcd, the peer, through its own gRPC API (KV.Put and KV.Range), with the same
//! closed-loop driver and the same connection spreading as for kyso.
//!
//! Puts write a value the size of a kyso certification record to a fresh key each time;
//! gets are linearizable (`serializable = false`, etcd's default) reads of keys written
//! in setup, each checked to return the value.

use std::sync::Arc;

use anyhow::Context;
use tonic::transport::Channel;

use crate::load::{Operation, PickRandom};

pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("etcdserverpb");
}

type KvClient = pb::kv_client::KvClient<Channel>;

fn kv(channel: &Channel) -> KvClient {
    KvClient::new(channel.clone())
}

/// A value of `size` bytes that does not compress to nothing (etcd stores it as given).
pub fn value(size: usize, seed: u64) -> Vec<u8> {
    crate::target_kyso::document(seed, 0, size)
}

/// Writes `count` keys under `prefix` (one client, sequentially) for the get benchmark.
pub async fn preload(channel: &Channel, prefix: &str, count: usize, value: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut keys = Vec::with_capacity(count);
    let mut client = kv(channel);
    for index in 0..count {
        let key = format!("{prefix}/{index:08}").into_bytes();
        client
            .put(pb::PutRequest { key: key.clone(), value: value.to_vec(), ..Default::default() })
            .await
            .with_context(|| format!("etcd put of preload key {index} failed"))?;
        keys.push(key);
    }
    Ok(keys)
}

/// Put: a fresh key per call.
pub struct Put {
    pub channels: Vec<Channel>,
    pub prefix: String,
    pub value: Arc<Vec<u8>>,
}

impl Operation for Put {
    async fn run(&self, client: usize, sequence: u64) -> Result<(), String> {
        let channel = &self.channels[client % self.channels.len()];
        let request = pb::PutRequest {
            key: format!("{}/{client}/{sequence}", self.prefix).into_bytes(),
            value: self.value.to_vec(),
            ..Default::default()
        };
        match kv(channel).put(request).await {
            Ok(response) if response.get_ref().header.as_ref().is_some_and(|header| header.revision > 0) => Ok(()),
            Ok(_) => Err("no-revision".into()),
            Err(status) => Err(format!("{:?}", status.code())),
        }
    }
}

/// Linearizable get of a preloaded key.
pub struct Get {
    pub channels: Vec<Channel>,
    pub keys: Arc<Vec<Vec<u8>>>,
    pub value_size: usize,
    pub seed: u64,
}

impl Operation for Get {
    async fn run(&self, client: usize, sequence: u64) -> Result<(), String> {
        let channel = &self.channels[client % self.channels.len()];
        let mut random = PickRandom::new(self.seed ^ ((client as u64) << 32) ^ sequence);
        let key = self.keys[random.below(self.keys.len())].clone();
        let request = pb::RangeRequest { key, serializable: false, ..Default::default() };
        match kv(channel).range(request).await {
            Ok(response) => match response.get_ref().kvs.as_slice() {
                [found] if found.value.len() == self.value_size => Ok(()),
                _ => Err("wrong-value".into()),
            },
            Err(status) => Err(format!("{:?}", status.code())),
        }
    }
}
