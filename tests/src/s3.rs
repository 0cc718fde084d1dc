//! The S3-compatible server the photo tests talk to: `.ci/run` starts moto's standalone
//! server and exports its endpoint as `FIELDSYNC_TEST_S3_URL`. Each test makes a fresh
//! bucket there; tests print that they were skipped when the variable is unset. Shared by
//! the in-process S3 tests and the two-replica test, which hands the same settings to real
//! server processes through their `FIELDSYNC_BLOBS__*` environment.

use fieldsync_server::media::blobs::BlobStore;
use fieldsync_server::settings::{BlobLocation, BlobSettings};

/// The variable naming the S3 endpoint the tests may use.
pub const TEST_S3_URL_VARIABLE: &str = "FIELDSYNC_TEST_S3_URL";

/// moto accepts any credentials; these are the ones every test sends.
const TEST_CREDENTIAL: &str = "testing";

/// The S3 endpoint to test against, or `None` (and a line saying `test` was skipped).
pub fn s3_endpoint(test: &str) -> Option<String> {
    match std::env::var(TEST_S3_URL_VARIABLE) {
        Ok(url) if !url.is_empty() => Some(url.trim_end_matches('/').to_owned()),
        _ => {
            println!("{test}: skipped, {TEST_S3_URL_VARIABLE} is unset (no S3 server)");
            None
        }
    }
}

/// A new, empty bucket of its own for one test.
pub async fn fresh_bucket(endpoint: &str) -> String {
    let bucket = format!("fieldsync-{}", uuid::Uuid::now_v7().simple());
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("create bucket");
    assert!(created.status().is_success(), "{created:?}");
    bucket
}

/// Every key in `bucket` (one ListObjectsV2 page: the tests store a handful).
pub async fn keys_in(endpoint: &str, bucket: &str) -> Vec<String> {
    let listing = reqwest::Client::new()
        .get(format!("{endpoint}/{bucket}?list-type=2"))
        .send()
        .await
        .expect("list bucket")
        .text()
        .await
        .expect("listing");
    listing
        .split("<Key>")
        .skip(1)
        .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_owned()))
        .collect()
}

/// A client of its own on `bucket` (moto refuses unsigned object reads), as another
/// replica would open it.
pub fn bucket_reader(endpoint: &str, bucket: &str, scratch: &std::path::Path) -> BlobStore {
    BlobStore::open(&blob_settings(endpoint, bucket), scratch).expect("open the bucket")
}

/// Blob settings for `bucket` on the test endpoint (plain HTTP on loopback).
pub fn blob_settings(endpoint: &str, bucket: &str) -> BlobSettings {
    BlobSettings {
        url: BlobLocation::S3 {
            bucket: bucket.to_owned(),
            prefix: String::new(),
        },
        endpoint: Some(endpoint.to_owned()),
        allow_http: true,
        access_key_id: fieldsync_server::settings::Secret(TEST_CREDENTIAL.into()),
        secret_access_key: fieldsync_server::settings::Secret(TEST_CREDENTIAL.into()),
        ..BlobSettings::default()
    }
}

/// The same settings as [`blob_settings`], as the `FIELDSYNC_BLOBS__*` variables a server
/// process reads.
pub fn blob_environment(endpoint: &str, bucket: &str) -> Vec<(String, String)> {
    [
        ("FIELDSYNC_BLOBS__URL", format!("s3://{bucket}")),
        ("FIELDSYNC_BLOBS__ENDPOINT", endpoint.to_owned()),
        ("FIELDSYNC_BLOBS__ALLOW_HTTP", "true".to_owned()),
        ("FIELDSYNC_BLOBS__ACCESS_KEY_ID", TEST_CREDENTIAL.to_owned()),
        (
            "FIELDSYNC_BLOBS__SECRET_ACCESS_KEY",
            TEST_CREDENTIAL.to_owned(),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}
