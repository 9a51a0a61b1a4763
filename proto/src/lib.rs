//! The kyso.v1 gRPC API: generated prost messages and tonic services, nothing else.
//! Domain code never sees the API types (the leaf schema in [`leaf`] is the one exception:
//! it is the log's canonical encoding); the adapters in `kyso::api` convert at the edge.

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("kyso.v1");
}

/// The transparency log's leaf, version 3 (proto/kyso/leaf/v3/leaf.proto). Not an API
/// type: the canonical encoding of what the log hashes, so the state machine encodes it.
pub mod leaf {
    pub mod v3 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("kyso.leaf.v3");
    }
}

/// Encoded `FileDescriptorSet` for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kyso_descriptor.bin"));
