//! Generates the etcd v3 API and the peer transport with the vendored protoc, so a fresh
//! machine needs no protoc of its own.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build finds protoc through this variable.
    std::env::set_var("PROTOC", protoc);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(
            &[
                "etcd/kv.proto",
                "etcd/auth.proto",
                "etcd/rpc.proto",
                "peer.proto",
            ],
            &["."],
        )?;
    Ok(())
}
