//! Protocol v1 of fieldsync (package `fieldsync.v1`): generated prost messages and tonic
//! clients and servers. These types belong at the edges only (server `grpc/`, client-core
//! `transport`); everything else works with `fieldsync_model` types.

#![allow(missing_debug_implementations, clippy::all)]

/// Generated code for package `fieldsync.v1`.
pub mod v1 {
    tonic::include_proto!("fieldsync.v1");
}

/// Encoded `FileDescriptorSet` of the protocol, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("fieldsync_descriptor");

/// Schema version of the records this build of the protocol carries. A client that sends a
/// lower version than the server's minimum gets an explicit "upgrade required" error.
pub const SCHEMA_VERSION: u32 = 1;

pub mod codec;
pub mod convert;
