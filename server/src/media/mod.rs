//! Photo bytes: the content-addressed blob folder and the upload protocol's file handling.

pub mod blobs;
pub mod photo;
pub mod uploads;
