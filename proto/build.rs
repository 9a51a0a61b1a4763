//! Compiles proto/kyso/v1/*.proto and the log leaf schema proto/kyso/leaf/v3/leaf.proto with protox (pure Rust), so the build needs no system
//! protoc and never reads the PROTOC variable (raft-proto panics on new protoc versions).
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/kyso/v1/kyso.proto", "proto/kyso/leaf/v3/leaf.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("kyso_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
