//! Photo bytes: the blob store (local folder or S3-compatible object store), the upload
//! protocol's use cases and the photo pipeline that vets an upload before it is stored.

pub mod blobs;
pub mod local_blobs;
pub mod photo;
pub mod pipeline;
pub mod s3_blobs;
pub mod uploads;
