//! Compiles the peer protocol (proto/kyso/cluster/v1/raft.proto) with protox, in pure Rust:
//! the build needs no system protoc and never reads the PROTOC variable (raft-proto's own
//! build script panics when PROTOC names a protoc of version 22 or later).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/kyso/cluster/v1/raft.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
