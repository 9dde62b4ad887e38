//! Generates the Spark Connect gRPC client from the protos vendored in `proto/` (Spark 4.0.0,
//! Apache-2.0, taken from `org.apache.spark:spark-connect-common_2.13:4.0.0` on Maven Central).
//! protoc comes from the `protoc-bin-vendored` crate, so building needs no system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let include = protoc_bin_vendored::include_path()?;
    let files: Vec<std::path::PathBuf> = [
        "base",
        "commands",
        "common",
        "expressions",
        "relations",
        "types",
        "catalog",
        "ml",
        "ml_common",
    ]
    .iter()
    .map(|name| format!("proto/spark/connect/{name}.proto").into())
    .collect();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .compile_protos(&files, &[std::path::PathBuf::from("proto"), include])?;
    Ok(())
}
