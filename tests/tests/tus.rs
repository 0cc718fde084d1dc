//! Photo upload over HTTP with tus 1.0 semantics against a real server: create, PATCH in
//! pieces, a connection cut mid-body keeps what arrived and HEAD says where to resume,
//! wrong offsets, missing `Tus-Resumable`, other users' uploads, checksum mismatches, and
//! the same photo over gRPC and tus ending as one blob.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use fieldsync_proto::v1;
use fieldsync_tests::{TestServer, authorized, client_info, test_photo};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;

const OCTETS: &str = "application/offset+octet-stream";

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing from {response:?}"))
        .to_str()
        .expect("ascii header")
}

/// `Upload-Expires` (an HTTP date) as an instant.
fn expires_of(response: &reqwest::Response) -> OffsetDateTime {
    let text = header(response, "upload-expires");
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(text, format)
        .unwrap_or_else(|error| panic!("Upload-Expires {text:?}: {error}"))
        .assume_utc()
}

fn offset_of(response: &reqwest::Response) -> u64 {
    header(response, "upload-offset")
        .parse()
        .expect("numeric offset")
}

/// A phone's background uploader: one user's bearer token and an HTTP client.
struct Phone {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Phone {
    async fn new(server: &TestServer, username: &str) -> Self {
        let token = server
            .login(username, &uuid::Uuid::now_v7().to_string())
            .await;
        Self {
            http: reqwest::Client::new(),
            base: server.url(),
            token,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("tus-resumable", "1.0.0")
            .bearer_auth(&self.token)
    }

    /// `POST /tus/uploads` declaring the photo's SHA-256 and type.
    async fn create_as(&self, length: u64, sha256: &str, filetype: &str) -> reqwest::Response {
        self.request(reqwest::Method::POST, "/tus/uploads")
            .header("upload-length", length.to_string())
            .header(
                "upload-metadata",
                format!(
                    "filename {},sha256 {},filetype {}",
                    BASE64.encode("IMG_0001.jpg"),
                    BASE64.encode(sha256),
                    BASE64.encode(filetype)
                ),
            )
            .send()
            .await
            .expect("POST")
    }

    /// Create the upload of `bytes` and return its location.
    async fn create(&self, bytes: &[u8]) -> String {
        let response = self
            .create_as(bytes.len() as u64, &sha256_hex(bytes), "image/jpeg")
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "{response:?}");
        header(&response, "location").to_owned()
    }

    async fn head(&self, location: &str) -> reqwest::Response {
        self.request(reqwest::Method::HEAD, location)
            .send()
            .await
            .expect("HEAD")
    }

    async fn offset(&self, location: &str) -> u64 {
        let response = self.head(location).await;
        assert_eq!(response.status(), StatusCode::OK, "{response:?}");
        offset_of(&response)
    }

    async fn patch_with(
        &self,
        location: &str,
        offset: u64,
        data: &[u8],
        checksum: Option<String>,
    ) -> reqwest::Response {
        let mut request = self
            .request(reqwest::Method::PATCH, location)
            .header("content-type", OCTETS)
            .header("upload-offset", offset.to_string())
            .body(data.to_vec());
        if let Some(checksum) = checksum {
            request = request.header("upload-checksum", checksum);
        }
        request.send().await.expect("PATCH")
    }

    async fn patch(&self, location: &str, offset: u64, data: &[u8]) -> reqwest::Response {
        self.patch_with(location, offset, data, None).await
    }

    /// PATCH `data` at `offset` over a raw connection that dies after `sent` bytes of the
    /// body: the request declares the whole length, the link drops mid-file.
    async fn patch_cut(
        &self,
        server: &TestServer,
        location: &str,
        offset: u64,
        data: &[u8],
        sent: usize,
    ) {
        let mut socket = tokio::net::TcpStream::connect(server.address)
            .await
            .expect("connect");
        let head = format!(
            "PATCH {location} HTTP/1.1\r\nHost: {}\r\nTus-Resumable: 1.0.0\r\nAuthorization: Bearer {}\r\nContent-Type: {OCTETS}\r\nUpload-Offset: {offset}\r\nContent-Length: {}\r\n\r\n",
            server.address,
            self.token,
            data.len()
        );
        socket.write_all(head.as_bytes()).await.expect("headers");
        socket
            .write_all(&data[..sent])
            .await
            .expect("part of the body");
        socket.flush().await.expect("flush");
        // The phone loses its connection: the server sees the body end early.
        drop(socket);
    }
}

/// Ask for the offset until the server has saved what reached it before a cut (it does so
/// on its own after the connection closed; a real phone simply asks after reconnecting).
async fn offset_after_cut(phone: &Phone, location: &str, expected: u64) -> u64 {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let offset = phone.offset(location).await;
            if offset == expected {
                return offset;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the bytes that arrived before the cut are saved")
}

#[tokio::test]
async fn options_announce_tus_1_0_with_creation_checksum_and_expiration() {
    let server = TestServer::start().await;
    let response = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/tus/uploads", server.url()),
        )
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&response, "tus-resumable"), "1.0.0");
    assert_eq!(header(&response, "tus-version"), "1.0.0");
    assert_eq!(
        header(&response, "tus-extension"),
        "creation,checksum,expiration"
    );
    assert_eq!(header(&response, "tus-checksum-algorithm"), "sha256,crc32c");
    assert_eq!(
        header(&response, "tus-max-size"),
        fieldsync_model::visit::MAX_PHOTO_BYTES.to_string()
    );
}

#[tokio::test]
async fn a_photo_sent_in_pieces_survives_a_cut_and_resumes_to_the_phones_exact_bytes() {
    let server = TestServer::start().await;
    let phone = Phone::new(&server, "cadre01").await;
    let bytes = std::fs::read(test_photo("mobile_jolla.jpg")).expect("photo");
    let sha = sha256_hex(&bytes);
    let length = bytes.len() as u64;

    let created = phone.create_as(length, &sha, "image/jpeg").await;
    assert_eq!(created.status(), StatusCode::CREATED, "{created:?}");
    let expires = expires_of(&created);
    let hours = i64::from(server.state.settings.upload_expiry_hours);
    let from_now = expires - OffsetDateTime::now_utc();
    assert!(
        from_now > time::Duration::hours(hours) - time::Duration::minutes(5)
            && from_now <= time::Duration::hours(hours) + time::Duration::seconds(1),
        "Upload-Expires is the last activity plus upload_expiry_hours: {from_now}"
    );
    let location = header(&created, "location").to_owned();
    assert!(location.starts_with("/tus/uploads/"), "{location}");
    let head = phone.head(&location).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(offset_of(&head), 0);
    assert!(
        expires_of(&head) >= expires,
        "a resume query moves the expiry forward"
    );
    assert_eq!(header(&head, "upload-length"), length.to_string());
    assert_eq!(header(&head, "cache-control"), "no-store");
    assert_eq!(header(&head, "tus-resumable"), "1.0.0");

    // A first piece.
    let first = phone.patch(&location, 0, &bytes[..100_000]).await;
    assert_eq!(first.status(), StatusCode::NO_CONTENT, "{first:?}");
    assert_eq!(offset_of(&first), 100_000);
    assert_eq!(header(&first, "tus-resumable"), "1.0.0");
    assert!(
        expires_of(&first) >= expires,
        "an acknowledged chunk is activity"
    );

    // Creating again (the app restarted) finds the same upload at its offset.
    let again = phone.create_as(length, &sha, "image/jpeg").await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(header(&again, "location"), location);
    assert_eq!(offset_of(&again), 100_000);

    // The rest in one PATCH, cut after 400,000 bytes of its body (more than one flush).
    phone
        .patch_cut(&server, &location, 100_000, &bytes[100_000..], 400_000)
        .await;
    let resume_at = offset_after_cut(&phone, &location, 500_000).await;
    assert!(
        !server.state.blobs.contains(&sha).await.expect("contains"),
        "nothing is a blob before every byte arrived"
    );

    // Resume from the offset HEAD gave, in two pieces; the last one checksummed.
    let middle_end = 700_000usize;
    let middle = phone
        .patch(&location, resume_at, &bytes[resume_at as usize..middle_end])
        .await;
    assert_eq!(middle.status(), StatusCode::NO_CONTENT, "{middle:?}");
    assert_eq!(offset_of(&middle), middle_end as u64);
    let last = &bytes[middle_end..];
    let finished = phone
        .patch_with(
            &location,
            middle_end as u64,
            last,
            Some(format!("sha256 {}", BASE64.encode(Sha256::digest(last)))),
        )
        .await;
    assert_eq!(finished.status(), StatusCode::NO_CONTENT, "{finished:?}");
    assert_eq!(offset_of(&finished), length);
    assert!(
        finished.headers().get("upload-expires").is_none(),
        "a complete upload never expires"
    );

    let stored = server.state.blobs.read(&sha).await.expect("stored blob");
    assert_eq!(
        sha256_hex(&stored),
        sha,
        "the blob hashes to the phone's SHA-256"
    );
    assert_eq!(stored, bytes, "byte-exact");
    assert!(
        server
            .state
            .store
            .blob_exists(&sha)
            .await
            .expect("blob row")
    );
    assert_eq!(phone.offset(&location).await, length);
    assert!(
        std::fs::read_dir(server.data_path().join("blobs").join("uploads"))
            .expect("staging folder")
            .next()
            .is_none(),
        "the staging file became the blob"
    );

    // A retried final PATCH whose answer was lost is answered again; other offsets are 409.
    let retried = phone.patch(&location, length, &[]).await;
    assert_eq!(retried.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset_of(&retried), length);
    let late = phone.patch(&location, middle_end as u64, last).await;
    assert_eq!(late.status(), StatusCode::CONFLICT);
    assert_eq!(offset_of(&late), length);

    // Creating the stored photo again is complete at once.
    let known = phone.create_as(length, &sha, "image/jpeg").await;
    assert_eq!(known.status(), StatusCode::CREATED);
    assert_eq!(offset_of(&known), length);
}

#[tokio::test]
async fn a_wrong_offset_is_409_with_the_committed_offset_and_changes_nothing() {
    let server = TestServer::start().await;
    let phone = Phone::new(&server, "cadre01").await;
    let bytes = std::fs::read(test_photo("gps_DSCN0010.jpg")).expect("photo");
    let location = phone.create(&bytes).await;
    assert_eq!(
        phone.patch(&location, 0, &bytes[..50_000]).await.status(),
        StatusCode::NO_CONTENT
    );

    for wrong in [0u64, 40_000, 60_000] {
        let conflict = phone
            .patch(
                &location,
                wrong,
                &bytes[wrong as usize..wrong as usize + 1_000],
            )
            .await;
        assert_eq!(conflict.status(), StatusCode::CONFLICT, "offset {wrong}");
        assert_eq!(offset_of(&conflict), 50_000, "offset {wrong}");
        assert_eq!(header(&conflict, "tus-resumable"), "1.0.0");
    }
    assert_eq!(phone.offset(&location).await, 50_000);

    // A body longer than what is missing is refused before anything is written.
    let mut too_long = bytes[50_000..].to_vec();
    too_long.push(0);
    let refused = phone.patch(&location, 50_000, &too_long).await;
    assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(phone.offset(&location).await, 50_000);

    // The wrong content type is 415; a missing Upload-Offset is 400.
    let wrong_type = phone
        .request(reqwest::Method::PATCH, &location)
        .header("content-type", "application/octet-stream")
        .header("upload-offset", "50000")
        .body(bytes[50_000..51_000].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(wrong_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let no_offset = phone
        .request(reqwest::Method::PATCH, &location)
        .header("content-type", OCTETS)
        .body(bytes[50_000..51_000].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(no_offset.status(), StatusCode::BAD_REQUEST);

    let rest = phone.patch(&location, 50_000, &bytes[50_000..]).await;
    assert_eq!(rest.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        server
            .state
            .blobs
            .read(&sha256_hex(&bytes))
            .await
            .expect("blob"),
        bytes
    );
}

#[tokio::test]
async fn requests_without_tus_resumable_are_412() {
    let server = TestServer::start().await;
    let phone = Phone::new(&server, "cadre01").await;
    let bytes = std::fs::read(test_photo("Canon_40D.jpg")).expect("photo");
    let location = phone.create(&bytes).await;
    let url = format!("{}{location}", server.url());
    let http = reqwest::Client::new();
    let requests = [
        http.post(format!("{}/tus/uploads", server.url()))
            .header("upload-length", bytes.len().to_string()),
        http.head(&url),
        http.patch(&url)
            .header("content-type", OCTETS)
            .header("upload-offset", "0")
            .body(bytes.clone()),
        http.head(&url).header("tus-resumable", "0.2.2"),
    ];
    for request in requests {
        let response = request
            .bearer_auth(&phone.token)
            .send()
            .await
            .expect("send");
        assert_eq!(
            response.status(),
            StatusCode::PRECONDITION_FAILED,
            "{response:?}"
        );
        assert_eq!(header(&response, "tus-version"), "1.0.0");
        assert_eq!(header(&response, "tus-resumable"), "1.0.0");
    }
    assert_eq!(phone.offset(&location).await, 0, "nothing was written");
}

#[tokio::test]
async fn another_users_upload_is_not_found_and_a_missing_token_is_401() {
    let server = TestServer::start().await;
    let owner = Phone::new(&server, "cadre01").await;
    let stranger = Phone::new(&server, "cadre02").await;
    let bytes = std::fs::read(test_photo("gps_DSCN0012.jpg")).expect("photo");
    let location = owner.create(&bytes).await;
    assert_eq!(
        owner.patch(&location, 0, &bytes[..10_000]).await.status(),
        StatusCode::NO_CONTENT
    );

    assert_eq!(
        stranger.head(&location).await.status(),
        StatusCode::NOT_FOUND
    );
    let patch = stranger.patch(&location, 10_000, &bytes[10_000..]).await;
    assert_eq!(patch.status(), StatusCode::NOT_FOUND);
    let unknown = format!("/tus/uploads/{}", uuid::Uuid::now_v7());
    assert_eq!(owner.head(&unknown).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        owner.head("/tus/uploads/..%2F..%2Fetc").await.status(),
        StatusCode::NOT_FOUND
    );

    let anonymous = reqwest::Client::new()
        .head(format!("{}{location}", server.url()))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .expect("HEAD");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&anonymous, "www-authenticate"), "Bearer");
    let forged = Phone {
        token: "not-a-session".into(),
        ..Phone::new(&server, "cadre01").await
    };
    assert_eq!(
        forged.head(&location).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // The same photo started by the stranger is the stranger's own upload, from 0.
    let theirs = stranger.create(&bytes).await;
    assert_ne!(theirs, location);
    assert_eq!(stranger.offset(&theirs).await, 0);
    assert_eq!(owner.offset(&location).await, 10_000);
}

#[tokio::test]
async fn a_checksum_mismatch_is_460_and_nothing_is_committed() {
    let server = TestServer::start().await;
    let phone = Phone::new(&server, "cadre01").await;
    let bytes = std::fs::read(test_photo("gps_DSCN0021.jpg")).expect("photo");
    let sha = sha256_hex(&bytes);
    let location = phone.create(&bytes).await;
    let piece = &bytes[..60_000];

    let wrong_sha = format!("sha256 {}", BASE64.encode(Sha256::digest(b"other bytes")));
    let refused = phone.patch_with(&location, 0, piece, Some(wrong_sha)).await;
    assert_eq!(refused.status().as_u16(), 460, "{refused:?}");
    assert_eq!(offset_of(&refused), 0);
    assert_eq!(phone.offset(&location).await, 0, "the piece was discarded");

    let good = phone
        .patch_with(
            &location,
            0,
            piece,
            Some(format!(
                "crc32c {}",
                BASE64.encode(crc32c::crc32c(piece).to_be_bytes())
            )),
        )
        .await;
    assert_eq!(good.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset_of(&good), 60_000);

    // The final piece corrupted in transit: refused, nothing committed, offset unchanged.
    let rest = &bytes[60_000..];
    let crc = crc32c::crc32c(rest);
    let mut corrupted = rest.to_vec();
    corrupted[1_000] ^= 0x40;
    let refused = phone
        .patch_with(
            &location,
            60_000,
            &corrupted,
            Some(format!("crc32c {}", BASE64.encode(crc.to_be_bytes()))),
        )
        .await;
    assert_eq!(refused.status().as_u16(), 460);
    assert_eq!(phone.offset(&location).await, 60_000);
    assert!(!server.state.blobs.contains(&sha).await.expect("contains"));
    assert!(!server.state.store.blob_exists(&sha).await.expect("blob"));

    // An algorithm the server does not speak is 400.
    let sha1 = phone
        .patch_with(
            &location,
            60_000,
            rest,
            Some("sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()),
        )
        .await;
    assert_eq!(sha1.status(), StatusCode::BAD_REQUEST);

    // Sent again intact, the photo is stored byte-exact.
    let resent = phone
        .patch_with(
            &location,
            60_000,
            rest,
            Some(format!("crc32c {}", BASE64.encode(crc.to_be_bytes()))),
        )
        .await;
    assert_eq!(resent.status(), StatusCode::NO_CONTENT);
    assert_eq!(server.state.blobs.read(&sha).await.expect("blob"), bytes);
}

#[tokio::test]
async fn bytes_that_do_not_hash_to_the_declared_sha256_are_refused_and_rewound() {
    let server = TestServer::start().await;
    let phone = Phone::new(&server, "cadre01").await;
    let bytes = std::fs::read(test_photo("orientation_landscape_6.jpg")).expect("photo");
    let declared = sha256_hex(b"what the phone hashed before it re-encoded the photo");
    let created = phone
        .create_as(bytes.len() as u64, &declared, "image/jpeg")
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = header(&created, "location").to_owned();

    let refused = phone.patch(&location, 0, &bytes).await;
    assert_eq!(refused.status().as_u16(), 460);
    assert_eq!(offset_of(&refused), 0, "the upload starts over");
    assert_eq!(phone.offset(&location).await, 0);
    assert!(
        !server
            .state
            .blobs
            .contains(&declared)
            .await
            .expect("contains")
    );
    assert!(
        !server
            .state
            .blobs
            .contains(&sha256_hex(&bytes))
            .await
            .expect("contains")
    );
    assert!(
        !server
            .state
            .store
            .blob_exists(&declared)
            .await
            .expect("blob")
    );
}

#[tokio::test]
async fn creation_refuses_bad_declarations() {
    let server = TestServer::start().await;
    let phone = Phone::new(&server, "cadre01").await;
    let sha = sha256_hex(b"photo");
    let too_big = fieldsync_model::visit::MAX_PHOTO_BYTES + 1;
    assert_eq!(
        phone.create_as(too_big, &sha, "image/jpeg").await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        phone.create_as(0, &sha, "image/jpeg").await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        phone.create_as(1_000, &sha, "image/heic").await.status(),
        StatusCode::BAD_REQUEST,
        "HEIC must be converted to JPEG on the phone"
    );
    assert_eq!(
        phone
            .create_as(1_000, "not-a-hash", "image/jpeg")
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    let no_metadata = phone
        .request(reqwest::Method::POST, "/tus/uploads")
        .header("upload-length", "1000")
        .send()
        .await
        .expect("POST");
    assert_eq!(no_metadata.status(), StatusCode::BAD_REQUEST);
    let deferred = phone
        .request(reqwest::Method::POST, "/tus/uploads")
        .header("upload-defer-length", "1")
        .header("upload-metadata", format!("sha256 {}", BASE64.encode(&sha)))
        .send()
        .await
        .expect("POST");
    assert_eq!(deferred.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_same_photo_over_grpc_and_tus_is_one_blob() {
    let server = TestServer::start().await;
    let bytes = std::fs::read(test_photo("orientation_portrait_8.jpg")).expect("photo");
    let sha = sha256_hex(&bytes);
    let length = bytes.len() as u64;

    // cadre01 starts over tus in the background, then the app's foreground gRPC uploader
    // takes over: it is the same upload, at the same offset.
    let phone = Phone::new(&server, "cadre01").await;
    let location = phone.create(&bytes).await;
    assert_eq!(
        phone.patch(&location, 0, &bytes[..30_000]).await.status(),
        StatusCode::NO_CONTENT
    );
    let mut media = v1::media_client::MediaClient::new(server.channel().await);
    let started = media
        .start_upload(authorized(
            v1::StartUploadRequest {
                client: Some(client_info()),
                sha256: sha.clone(),
                size_bytes: length,
                mime_type: "image/jpeg".into(),
            },
            &phone.token,
        ))
        .await
        .expect("start")
        .into_inner();
    assert_eq!(format!("/tus/uploads/{}", started.upload_id), location);
    assert_eq!(started.committed_offset, 30_000);
    let rest = &bytes[30_000..];
    media
        .put_chunk(authorized(
            v1::PutChunkRequest {
                client: Some(client_info()),
                upload_id: started.upload_id.clone(),
                offset: 30_000,
                data: rest.to_vec(),
                crc32c: crc32c::crc32c(rest),
            },
            &phone.token,
        ))
        .await
        .expect("chunk");
    media
        .complete_upload(authorized(
            v1::CompleteUploadRequest {
                client: Some(client_info()),
                upload_id: started.upload_id.clone(),
            },
            &phone.token,
        ))
        .await
        .expect("complete");
    assert_eq!(
        phone.offset(&location).await,
        length,
        "tus sees it complete"
    );

    // Another cadre's phone has the same photo: over tus it is complete at once.
    let other = Phone::new(&server, "cadre02").await;
    let known = other.create_as(length, &sha, "image/jpeg").await;
    assert_eq!(known.status(), StatusCode::CREATED);
    assert_eq!(offset_of(&known), length);
    let other_location = header(&known, "location").to_owned();
    assert_eq!(other.offset(&other_location).await, length);

    assert_eq!(
        server.blob_file_count(),
        1,
        "one blob serves every photo row"
    );
    assert_eq!(server.state.blobs.read(&sha).await.expect("blob"), bytes);
}

#[tokio::test]
async fn two_phones_sending_the_same_photo_over_tus_at_once_end_with_one_blob() {
    let server = TestServer::start().await;
    let bytes = std::fs::read(test_photo("gps_DSCN0010.jpg")).expect("photo");
    let sha = sha256_hex(&bytes);
    let first = Phone::new(&server, "cadre01").await;
    let second = Phone::new(&server, "cadre02").await;
    let (first_location, second_location) =
        (first.create(&bytes).await, second.create(&bytes).await);
    let (a, b) = tokio::join!(
        first.patch(&first_location, 0, &bytes),
        second.patch(&second_location, 0, &bytes)
    );
    assert_eq!(a.status(), StatusCode::NO_CONTENT);
    assert_eq!(b.status(), StatusCode::NO_CONTENT);
    assert_eq!(server.blob_file_count(), 1);
    assert_eq!(server.state.blobs.read(&sha).await.expect("blob"), bytes);
    assert!(
        std::fs::read_dir(server.data_path().join("blobs").join("uploads"))
            .expect("staging folder")
            .next()
            .is_none(),
        "no staging file is left behind"
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_photo_is_refused_at_completion_and_never_stored() {
    let server = TestServer::start().await;
    let phone = Phone::new(&server, "cadre01").await;
    // A JPEG with a ZIP archive appended (a polyglot) and an SVG: both are refused by the
    // same photo checks as the gRPC path, after every byte arrived and hashed correctly.
    let mut polyglot = std::fs::read(fieldsync_tests::test_photo("Canon_40D.jpg")).expect("photo");
    polyglot.extend_from_slice(b"PK\x03\x04 pretend archive with a payload");
    let svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>".to_vec();
    for bytes in [polyglot, svg] {
        let location = phone.create(&bytes).await;
        let response = phone.patch(&location, 0, &bytes).await;
        assert_eq!(response.status(), reqwest::StatusCode::BAD_REQUEST);
        assert_eq!(phone.offset(&location).await, 0, "the upload starts over");
        assert!(
            !server
                .state
                .blobs
                .contains(&sha256_hex(&bytes))
                .await
                .expect("contains"),
            "nothing refused becomes a blob"
        );
    }
}
