//! Compiles `fieldsync/v1/*.proto` with protox (pure Rust), so no system `protoc` is needed,
//! and writes the file descriptor set used by gRPC server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "fieldsync/v1/codes.proto",
        "fieldsync/v1/domain.proto",
        "fieldsync/v1/auth.proto",
        "fieldsync/v1/sync.proto",
        "fieldsync/v1/media.proto",
        "fieldsync/v1/review.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Reflection needs the encoded descriptors; write them ourselves because `compile_fds`
    // takes an already-compiled set and does not emit one.
    std::fs::write(
        out_dir.join("fieldsync_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    // Protobuf does not fix the order of map entries on the wire. Pull checkpoints carry a
    // checksum over the encoded pages, which the phone recomputes from what it decoded, so
    // both sides must encode maps in one order: sorted (BTreeMap) rather than hash order.
    // Every service and client uses `codec::WireCodec`: undecodable bytes must be the
    // non-retryable INVALID_ARGUMENT, not tonic-prost's INTERNAL (see proto/src/codec.rs).
    tonic_prost_build::configure()
        .btree_map(".")
        .codec_path("crate::codec::WireCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
