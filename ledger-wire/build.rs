//! Generates the gRPC types of `proto/` once, for the client and the server (both sides of
//! every service), with the protoc binary vendored by `protoc-bin-vendored`: no system protoc
//! is needed.

const PROTOS: [&str; 3] = [
    "proto/ledger.proto",
    "proto/admin.proto",
    "proto/raft.proto",
];
const PROTO_INCLUDE_DIR: &str = "proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The protoc path is handed to prost's config rather than through the PROTOC environment
    // variable, so the build script never mutates its own environment.
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    println!("cargo:rerun-if-changed={PROTO_INCLUDE_DIR}");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &PROTOS, &[PROTO_INCLUDE_DIR])?;
    Ok(())
}
