//! Compiles the subset of etcd's v3 API the load generator drives (KV Put and Range) with
//! protox, so the build needs no system protoc (see shared notes on the PROTOC trap).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = "proto/etcdserverpb/rpc.proto";
    println!("cargo:rerun-if-changed={file}");
    let descriptors = protox::compile([file], ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(false).compile_fds(descriptors)?;
    Ok(())
}
