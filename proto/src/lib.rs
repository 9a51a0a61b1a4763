//! The kyso.v1 gRPC API: generated prost messages and tonic services, nothing else.
//! Domain code never sees these types; the adapters in `kyso::api` convert at the edge.

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("kyso.v1");
}

/// Encoded `FileDescriptorSet` for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kyso_descriptor.bin"));
