//! Compiles the CSI v1.12.0 protobuf and strata's own API (`strata/v1`) into
//! Rust with tonic (server and client).
//!
//! protox parses the .proto in pure Rust and ships the google/protobuf
//! well-known files the CSI spec imports, so no protoc is needed.

use std::path::Path;

const CSI_PROTO: &str = "proto/csi/v1/csi.proto";
const TIERING_PROTO: &str = "proto/strata/v1/tiering.proto";
const RAFT_PROTO: &str = "proto/strata/v1/raft.proto";
const CATALOG_PROTO: &str = "proto/strata/v1/catalog.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={CSI_PROTO}");
    println!("cargo:rerun-if-changed={TIERING_PROTO}");
    println!("cargo:rerun-if-changed={RAFT_PROTO}");
    println!("cargo:rerun-if-changed={CATALOG_PROTO}");
    println!("cargo:rerun-if-changed=build.rs");

    let fds = protox::compile(
        [CSI_PROTO, TIERING_PROTO, RAFT_PROTO, CATALOG_PROTO],
        [Path::new("proto")],
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
