//! Two replicas end to end (issue 15 §4): two real `fieldsync-server` processes, A and B, on
//! one PostgreSQL database, one S3 bucket and one key folder, as a county runs them behind a
//! load balancer. A phone talks to whichever replica answers:
//!
//! 1. the cadre pushes a visit with a photo record to A and pulls it from B with A's token
//!    (sessions live in the shared database);
//! 2. the photo upload is cut on A and resumed on B at B's reported offset; A then serves
//!    the thumbnail (the blob and its derived copies live in the shared bucket); the
//!    supervisor's console session from A works on B, and logging out on B (a CSRF-checked
//!    request) ends it on A;
//! 3. the township supervisor approves the visit on B; the cadre pulls the decision from A;
//! 4. the county administrator's area import (行政区划导入) is uploaded to A, watched and
//!    applied on B, shown as applied on A, and refused a second apply on A;
//! 5. A is killed with `kill -9` while two phones wait for its answers: one push had
//!    committed on A but its answer was held back, the other had just reached A; B answers
//!    other calls throughout. Retried on B, the committed batch is answered from the dedupe
//!    cache (A's APPLIED), the cut one is acknowledged (applied, or the cache's answer when
//!    A had committed it), and a pull shows each visit once.
//!
//! Both points are known, not random delays: each push goes through a small TCP forwarder
//! in front of A that reads the HTTP/2 frames it passes on. It reports a request once its
//! last DATA frame (END_STREAM) is written to A's socket, and can keep A's answers back from
//! the first response frame on (tonic sends a unary response once the handler returned,
//! so by then A has committed).
//!
//! Needs `FIELDSYNC_TEST_DATABASE_URL` (a PostgreSQL server; the test makes a fresh database
//! on it) and `FIELDSYNC_TEST_S3_URL` (the S3 server `.ci/run` starts; the test makes a
//! fresh bucket); prints that it was skipped when either is unset.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use fieldsync_proto::v1;
use fieldsync_server::media::blobs::Derived;
use fieldsync_tests::s3::{blob_environment, bucket_reader, fresh_bucket, s3_endpoint};
use fieldsync_tests::{
    DEMO_PASSWORD, MediaUploader, ServerProcess, authorized, client_info, console_login_with,
    console_thumbnail_at, multipart_file_body, pull_all, push_applied_on, server_binary,
    test_photo, wire_in_person_visit,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tonic::transport::Channel;

/// Visits in each batch of step 5: enough work that the kill, which follows the cut
/// request's last byte at once, usually lands before A commits it (either outcome is
/// checked).
const VISITS_PER_BATCH: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_sessions_uploads_decisions_and_a_batch_cut_by_kill_9() {
    let test = "two replicas";
    let Some(database_server_url) =
        fieldsync_server::store::postgres::testing::test_server_url(test)
    else {
        return;
    };
    let Some(s3) = s3_endpoint(test) else {
        return;
    };
    let database_url =
        fieldsync_server::store::postgres::testing::fresh_database_url(&database_server_url).await;
    let bucket = fresh_bucket(&s3).await;
    let root = tempfile::tempdir().expect("temp dir");
    let key_dir = root.path().join("keys");
    let mut environment = blob_environment(&s3, &bucket);
    environment.push(("FIELDSYNC_DATABASE_URL".into(), database_url));
    environment.push((
        "FIELDSYNC_KEY_DIR".into(),
        key_dir.to_str().expect("UTF-8 temp path").to_owned(),
    ));
    let environment: Vec<(&str, &str)> = environment
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    // A first: it makes the keys, migrates the database and seeds the demo county. B finds
    // all three and serves the same county; each has a data folder of its own (upload
    // scratch files), and neither keeps anything there another needs.
    let binary = server_binary();
    let server_a =
        ServerProcess::start_binary(&binary, &root.path().join("a"), true, &environment).await;
    let server_b =
        ServerProcess::start_binary(&binary, &root.path().join("b"), false, &environment).await;
    let (channel_a, channel_b) = (server_a.channel().await, server_b.channel().await);

    // 1. The cadre's phone pushes a visit with a photo record to A and pulls from B with
    //    the same token.
    let device_id = uuid::Uuid::now_v7().to_string();
    let token = server_a.login("cadre01", &device_id).await;
    let (households, _, _) = pull_all(channel_a.clone(), &token).await;
    assert!(!households.is_empty(), "cadre01 has paired households");
    let photo = std::fs::read(test_photo("mobile_jolla.jpg")).expect("photo");
    let sha256 = hex::encode(Sha256::digest(&photo));
    let photo_id = uuid::Uuid::now_v7().to_string();
    let visit = v1::Visit {
        photo_ids: vec![photo_id.clone()],
        ..wire_in_person_visit(&households[0].household_id)
    };
    let photo_record = v1::PhotoRecord {
        photo_id: photo_id.clone(),
        visit_id: visit.visit_id.clone(),
        sha256: sha256.clone(),
        size_bytes: photo.len() as u64,
        mime_type: "image/jpeg".into(),
        in_app_camera: true,
        ..Default::default()
    };
    let next_seq = push_applied_on(
        channel_a.clone(),
        &token,
        &device_id,
        1,
        vec![
            v1::mutation::Payload::SubmitVisit(visit.clone()),
            v1::mutation::Payload::AddPhoto(photo_record),
        ],
    )
    .await;
    let (_, statuses, _) = pull_all(channel_b.clone(), &token).await;
    assert_eq!(
        visit_counts(&statuses).get(visit.visit_id.as_str()),
        Some(&1),
        "B shows the visit pushed to A, to A's session"
    );

    // 2. The photo upload is cut on A and finished on B from the offset B reports.
    let mut uploader_a = MediaUploader::new(channel_a.clone(), token.clone());
    let started = uploader_a.start(&photo).await;
    let cut_at = photo.len() * 2 / 5;
    let acknowledged_by_a = uploader_a.send(&started.upload_id, &photo, 0, cut_at).await;
    assert!(acknowledged_by_a > 0, "A acknowledged part of the photo");
    let mut uploader_b = MediaUploader::new(channel_b.clone(), token.clone());
    let resumed = uploader_b.start(&photo).await;
    assert_eq!(resumed.upload_id, started.upload_id, "the same upload");
    assert_eq!(
        resumed.committed_offset, acknowledged_by_a,
        "B continues where A acknowledged"
    );
    assert!(!resumed.complete);
    let completed = uploader_b
        .finish(&resumed.upload_id, resumed.committed_offset, &photo)
        .await;
    assert_eq!(completed.sha256, sha256);
    // A serves what B completed: the thumbnail from the shared bucket.
    let console_a = console_login_with(
        &server_a.url(),
        "township1",
        DEMO_PASSWORD,
        "unused: demo passwords are not one-time",
    )
    .await;
    let thumbnail = console_thumbnail_at(&console_a, &server_a.url(), &photo_id).await;
    let scratch = tempfile::tempdir().expect("temp dir");
    let stored_thumbnail = bucket_reader(&s3, &bucket, scratch.path())
        .read_derived(&sha256, Derived::Thumbnail)
        .await
        .expect("read the bucket")
        .expect("a thumbnail in the bucket");
    assert_eq!(thumbnail, stored_thumbnail);
    // The console session made on A works on B: the session row is in the shared database
    // and the CSRF key in the shared key folder. (Cookies are kept per host, not per port,
    // so the same browser sends A's session to B.)
    let queue_on_b = console_a
        .get(format!("{}/console/api/queue", server_b.url()))
        .send()
        .await
        .expect("queue on B");
    assert!(
        queue_on_b.status().is_success(),
        "A's console session is valid on B: {}",
        queue_on_b.status()
    );
    // A state-changing console request on B with the CSRF token A issued: logging out there
    // ends the session on A too.
    let logout_on_b = console_a
        .post(format!("{}/console/logout", server_b.url()))
        .send()
        .await
        .expect("logout on B");
    assert_eq!(logout_on_b.status(), reqwest::StatusCode::SEE_OTHER);
    let queue_on_a = console_a
        .get(format!("{}/console/api/queue", server_a.url()))
        .send()
        .await
        .expect("queue on A after the logout");
    assert!(
        !queue_on_a.status().is_success(),
        "the session ended on B is ended on A: {}",
        queue_on_a.status()
    );

    // 3. The township supervisor approves on B; the cadre's phone learns it from A.
    let supervisor = server_b
        .login("township1", &uuid::Uuid::now_v7().to_string())
        .await;
    let mut review_b = v1::review_client::ReviewClient::new(channel_b.clone());
    let detail = review_b
        .get_visit(authorized(
            v1::GetVisitRequest {
                visit_id: visit.visit_id.clone(),
            },
            &supervisor,
        ))
        .await
        .expect("B shows the visit")
        .into_inner();
    assert_eq!(
        detail.photo_ids_received,
        vec![photo_id.clone()],
        "B knows the photo arrived"
    );
    let decided = review_b
        .decide(authorized(
            v1::DecideRequest {
                visit_id: visit.visit_id.clone(),
                revision: 1,
                content_hash: detail.content_hash,
                decision: v1::Decision::Approve as i32,
                ..Default::default()
            },
            &supervisor,
        ))
        .await
        .expect("approve on B")
        .into_inner();
    assert_eq!(decided.state, v1::ReviewState::Approved as i32);
    let (_, statuses, _) = pull_all(channel_a.clone(), &token).await;
    let status = statuses
        .iter()
        .find(|status| status.visit_id == visit.visit_id)
        .expect("the visit reaches the phone from A");
    assert_eq!(status.state, v1::ReviewState::Approved as i32, "{status:?}");
    assert!(!status.reviewer_name.is_empty(), "{status:?}");

    // 4. The county administrator uploads an area file (行政区划导入) to A, watches the dry
    //    run and applies it on B, and A shows the result: the job lives in the shared
    //    database, not in A's memory. A second apply, on A, is refused.
    let admin = console_login_with(
        &server_a.url(),
        fieldsync_server::demo::DEMO_COUNTY_ADMIN,
        DEMO_PASSWORD,
        "unused: demo passwords are not one-time",
    )
    .await;
    let area_file = "统计用区划代码,名称,层级,上级区划代码\n522731101299,云上村,村,522731101000\n";
    let (content_type, body) = multipart_file_body("行政区划.csv", area_file.as_bytes());
    let started = admin
        .post(format!("{}/console/api/areas/import", server_a.url()))
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("upload to A");
    assert_eq!(started.status(), reqwest::StatusCode::ACCEPTED);
    let started: serde_json::Value = started.json().await.expect("job");
    let job_path = format!(
        "/console/api/areas/import/{}",
        started["job_id"].as_str().expect("job id")
    );
    let job_on = |url: String| {
        let admin = admin.clone();
        let job_path = job_path.clone();
        async move {
            let job: serde_json::Value = admin
                .get(format!("{url}{job_path}?wait=true"))
                .send()
                .await
                .expect("job")
                .json()
                .await
                .expect("job JSON");
            job
        }
    };
    let ready_on_b = job_on(server_b.url()).await;
    assert_eq!(
        ready_on_b["phase"], "ready",
        "B shows A's dry run: {ready_on_b}"
    );
    assert_eq!(ready_on_b["preview"]["new_villages"], 1, "{ready_on_b}");
    let applied_on_b = admin
        .post(format!("{}{job_path}/apply", server_b.url()))
        .send()
        .await
        .expect("apply on B");
    assert_eq!(applied_on_b.status(), reqwest::StatusCode::ACCEPTED);
    let again_on_a = admin
        .post(format!("{}{job_path}/apply", server_a.url()))
        .send()
        .await
        .expect("apply again on A");
    assert_eq!(
        again_on_a.status(),
        reqwest::StatusCode::CONFLICT,
        "the dry run is applied once"
    );
    let applied_on_a = job_on(server_a.url()).await;
    assert_eq!(
        applied_on_a["phase"], "applied",
        "A shows B's apply: {applied_on_a}"
    );
    assert_eq!(applied_on_a["run"]["areas_created"], 1, "{applied_on_a}");

    // 5. A dies (kill -9) with two pushes unanswered; B keeps serving. cadre02's batch: A
    //    committed it, but its answer never left the proxy. cadre01's batch: its last byte
    //    reached A just before the kill.
    let second_device = uuid::Uuid::now_v7().to_string();
    let second_token = server_a.login("cadre02", &second_device).await;
    let (second_households, _, _) = pull_all(channel_a.clone(), &second_token).await;
    let (answered_batch, answered_visit_ids) = visit_batch(&second_device, 1, &second_households);
    let (cut_batch, cut_visit_ids) = visit_batch(&device_id, next_seq, &households);

    // A third phone keeps calling B from before the kill until after the retries.
    let third_token = server_b
        .login("cadre03", &uuid::Uuid::now_v7().to_string())
        .await;
    let (stop_third_phone, third_phone_stopped) = watch::channel(false);
    let third_phone = tokio::spawn(keep_pulling(
        channel_b.clone(),
        third_token,
        third_phone_stopped,
    ));

    let answer_lost = RequestWatchingProxy::start(server_a.address, Responses::Withheld).await;
    let unanswered = spawn_push(answer_lost.address, &answered_batch, &second_token).await;
    answer_lost
        .responses_withheld
        .clone()
        .wait_for(|withheld| *withheld >= 1)
        .await
        .expect("the proxy reports A's answer");
    let cut = RequestWatchingProxy::start(server_a.address, Responses::Forwarded).await;
    let in_flight = spawn_push(cut.address, &cut_batch, &token).await;
    cut.requests_forwarded
        .clone()
        .wait_for(|forwarded| *forwarded >= 1)
        .await
        .expect("the proxy reports the push");
    let output_a = tokio::task::spawn_blocking(move || server_a.kill())
        .await
        .expect("kill A");
    let unanswered = unanswered.await.expect("push task");
    assert!(
        unanswered.is_err(),
        "the phone never got A's answer: {unanswered:?}"
    );
    let answer_from_a = in_flight.await.expect("push task");

    // B shows the batch A answered whole, and the cut one whole or not at all.
    let (_, statuses, _) = pull_all(channel_b.clone(), &second_token).await;
    assert_each_once(&statuses, &answered_visit_ids, "the batch A committed");
    let (_, statuses, _) = pull_all(channel_b.clone(), &token).await;
    let counts = visit_counts(&statuses);
    let visible = cut_visit_ids
        .iter()
        .filter(|visit_id| counts.contains_key(visit_id.as_str()))
        .count();
    assert!(
        visible == 0 || visible == VISITS_PER_BATCH,
        "the batch in flight at the kill is all or nothing: {visible} of {VISITS_PER_BATCH} \
         visits visible\nA's last output:\n{output_a}"
    );
    // Shown with --nocapture: where this run's kill landed.
    eprintln!(
        "two replicas: the push in flight at the kill {}; {visible} of its {VISITS_PER_BATCH} \
         visits visible on B after the kill",
        match &answer_from_a {
            Ok(_) => "was answered before the kill".to_owned(),
            Err(status) => format!("was cut off ({:?})", status.code()),
        }
    );

    // The phones retry their batches (same ids, same content) on B.
    let mut sync_b = v1::sync_client::SyncClient::new(channel_b.clone());
    let retried = push_acknowledged(&mut sync_b, &answered_batch, &second_token, &server_b).await;
    assert!(
        retried
            .results
            .iter()
            .all(|result| result.outcome == v1::MutationOutcome::Applied as i32),
        "the dedupe cache answers with what A answered, APPLIED (running the batch again \
         would say DUPLICATE): {retried:?}"
    );
    let retried = push_acknowledged(&mut sync_b, &cut_batch, &token, &server_b).await;
    for result in &retried.results {
        // APPLIED: B applied it, or the dedupe cache repeats A's APPLIED. DUPLICATE would be
        // a seq-level dedupe of a committed batch: still stored once.
        let acceptable = [
            v1::MutationOutcome::Applied as i32,
            v1::MutationOutcome::Duplicate as i32,
        ];
        assert!(
            acceptable.contains(&result.outcome),
            "seq {} answered {:?} on retry: {retried:?}",
            result.seq,
            v1::MutationOutcome::try_from(result.outcome)
        );
    }
    if let Ok(answer_from_a) = &answer_from_a {
        assert_eq!(
            (
                &retried.results,
                retried.last_processed_seq,
                &retried.receipt
            ),
            (
                &answer_from_a.results,
                answer_from_a.last_processed_seq,
                &answer_from_a.receipt
            ),
            "the retry is answered exactly as A answered"
        );
    }
    // Another retry (its answer lost again) is answered identically.
    let again = push_acknowledged(&mut sync_b, &cut_batch, &token, &server_b).await;
    assert_eq!(
        (&again.results, again.last_processed_seq, &again.receipt),
        (
            &retried.results,
            retried.last_processed_seq,
            &retried.receipt
        ),
        "the dedupe cache answers a retried batch identically"
    );

    // B shows each visit of both batches exactly once, and the earlier visit still approved.
    let (_, statuses, _) = pull_all(channel_b.clone(), &token).await;
    assert_each_once(&statuses, &cut_visit_ids, "the batch cut by the kill");
    assert!(
        statuses
            .iter()
            .any(|status| status.visit_id == visit.visit_id
                && status.state == v1::ReviewState::Approved as i32),
        "the approved visit is unchanged"
    );
    let (_, statuses, _) = pull_all(channel_b.clone(), &second_token).await;
    assert_each_once(&statuses, &answered_visit_ids, "the batch A committed");

    let _ = stop_third_phone.send(true);
    let answered = third_phone.await.expect("the third phone's task");
    assert!(
        answered >= 1,
        "B answered another phone while A died and the batches were retried"
    );
    eprintln!("two replicas: B answered {answered} pulls of a third phone meanwhile");
    drop(server_b);
}

/// A batch of [`VISITS_PER_BATCH`] new visits to `households` (in turn) from `device_id`,
/// seqs from `first_seq`, and its visit ids.
fn visit_batch(
    device_id: &str,
    first_seq: u64,
    households: &[v1::Household],
) -> (v1::PushRequest, Vec<String>) {
    let visits: Vec<v1::Visit> = (0..VISITS_PER_BATCH)
        .map(|index| wire_in_person_visit(&households[index % households.len()].household_id))
        .collect();
    let visit_ids = visits.iter().map(|visit| visit.visit_id.clone()).collect();
    let batch = v1::PushRequest {
        device_id: device_id.to_owned(),
        batch_id: uuid::Uuid::now_v7().to_string(),
        first_seq,
        mutations: visits
            .into_iter()
            .zip(first_seq..)
            .map(|(visit, seq)| v1::Mutation {
                seq,
                mutation_id: uuid::Uuid::now_v7().to_string(),
                hlc: 1,
                payload: Some(v1::mutation::Payload::SubmitVisit(visit)),
            })
            .collect(),
        client: Some(client_info()),
        ..Default::default()
    };
    (batch, visit_ids)
}

/// Push `batch` over a connection of its own to `address` in a task; returns once connected.
async fn spawn_push(
    address: SocketAddr,
    batch: &v1::PushRequest,
    token: &str,
) -> tokio::task::JoinHandle<Result<v1::PushResponse, tonic::Status>> {
    let channel = Channel::from_shared(format!("http://{address}"))
        .expect("url")
        .connect()
        .await
        .expect("connect through the proxy");
    let request = authorized(batch.clone(), token);
    tokio::spawn(async move {
        v1::sync_client::SyncClient::new(channel)
            .push(request)
            .await
            .map(tonic::Response::into_inner)
    })
}

/// Push `batch` to `server` and insist it is acknowledged: one result per mutation in seq
/// order, and every seq processed.
async fn push_acknowledged(
    sync: &mut v1::sync_client::SyncClient<Channel>,
    batch: &v1::PushRequest,
    token: &str,
    server: &ServerProcess,
) -> v1::PushResponse {
    let response = sync
        .push(authorized(batch.clone(), token))
        .await
        .unwrap_or_else(|status| {
            panic!(
                "batch {} on B: {status:?}\nB's output:\n{}",
                batch.batch_id,
                server.recent_output()
            )
        })
        .into_inner();
    let seqs = batch.first_seq..batch.first_seq + batch.mutations.len() as u64;
    assert_eq!(
        response
            .results
            .iter()
            .map(|result| result.seq)
            .collect::<Vec<_>>(),
        seqs.clone().collect::<Vec<_>>(),
        "one result per mutation, in seq order: {response:?}"
    );
    assert_eq!(response.last_processed_seq, seqs.end - 1, "{response:?}");
    response
}

/// Every one of `visit_ids` appears exactly once among `statuses`.
fn assert_each_once(statuses: &[v1::VisitStatus], visit_ids: &[String], what: &str) {
    let counts = visit_counts(statuses);
    for visit_id in visit_ids {
        assert_eq!(
            counts.get(visit_id.as_str()),
            Some(&1),
            "{what}: visit {visit_id}"
        );
    }
}

/// How many times each visit id appears among `statuses`.
fn visit_counts(statuses: &[v1::VisitStatus]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for status in statuses {
        *counts.entry(status.visit_id.as_str()).or_insert(0) += 1;
    }
    counts
}

/// Another phone pulling from B back to back until `stop` says so; every pull must be
/// answered. Returns how many were.
async fn keep_pulling(channel: Channel, token: String, mut stop: watch::Receiver<bool>) -> usize {
    let mut answered = 0;
    loop {
        // Checked before each pull, so the last pull starts before the stop.
        if *stop.borrow_and_update() {
            return answered;
        }
        let (households, _, _) = pull_all(channel.clone(), &token).await;
        assert!(!households.is_empty(), "the third phone's scope from B");
        answered += 1;
    }
}

/// What a [`RequestWatchingProxy`] does with the server's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Responses {
    /// Passed on, as a plain forwarder does.
    Forwarded,
    /// Passed on up to the first response (a HEADERS frame on a request's stream), then
    /// kept back: the server has answered, the client never hears it. tonic sends a unary
    /// response's headers only once the handler has returned.
    Withheld,
}

/// A TCP forwarder in front of one server that follows the HTTP/2 frames crossing it:
/// it counts the requests it has passed on whole (a DATA frame with END_STREAM written to
/// the server's socket ends a request body; gRPC requests always have one) and, when asked,
/// keeps the server's answers back.
struct RequestWatchingProxy {
    address: SocketAddr,
    requests_forwarded: watch::Receiver<u64>,
    responses_withheld: watch::Receiver<u64>,
}

impl RequestWatchingProxy {
    async fn start(target: SocketAddr, responses: Responses) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let (requests_sender, requests_forwarded) = watch::channel(0u64);
        let (responses_sender, responses_withheld) = watch::channel(0u64);
        let counters = Arc::new((requests_sender, responses_sender));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counters = counters.clone();
                tokio::spawn(async move {
                    // Once the server is gone, a new connection is closed at once: the
                    // client sees what it would see connecting to a dead server.
                    let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let (requests, withheld) = (&counters.0, &counters.1);
                    // Either side closing ends both directions (HTTP/2 never half-closes).
                    tokio::select! {
                        _ = forward_requests(client_read, server_write, requests) => {}
                        _ = forward_responses(server_read, client_write, responses, withheld) => {}
                    }
                });
            }
        });
        Self {
            address,
            requests_forwarded,
            responses_withheld,
        }
    }
}

/// Copy the client's bytes to the server, then count the request bodies they finished.
async fn forward_requests(
    mut from_client: tokio::net::tcp::OwnedReadHalf,
    mut to_server: tokio::net::tcp::OwnedWriteHalf,
    requests_forwarded: &watch::Sender<u64>,
) -> std::io::Result<()> {
    let mut frames = Http2FrameScanner::after_preface(CLIENT_PREFACE.len());
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = from_client.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        to_server.write_all(&buffer[..read]).await?;
        // Counted only after the bytes are written: the server has the whole request.
        let ended = frames
            .scan(&buffer[..read])
            .iter()
            .filter(|event| {
                matches!(event, FrameEvent::Ended { header }
                    if header.kind == FRAME_TYPE_DATA && header.flags & FLAG_END_STREAM != 0)
            })
            .count();
        if ended > 0 {
            requests_forwarded.send_modify(|count| *count += ended as u64);
        }
    }
}

/// Copy the server's bytes to the client; with [`Responses::Withheld`], only those before the
/// first response, then read the rest until the server closes and pass none of it on.
async fn forward_responses(
    mut from_server: tokio::net::tcp::OwnedReadHalf,
    mut to_client: tokio::net::tcp::OwnedWriteHalf,
    responses: Responses,
    responses_withheld: &watch::Sender<u64>,
) -> std::io::Result<()> {
    let mut frames = Http2FrameScanner::after_preface(0);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut withholding = false;
    loop {
        let read = from_server.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        if withholding {
            continue;
        }
        let mut passed = read;
        if responses == Responses::Withheld {
            let response_start = frames.scan(&buffer[..read]).iter().find_map(|event| {
                match event {
                    FrameEvent::Started { header_end, header }
                        if header.kind == FRAME_TYPE_HEADERS && header.stream_id != 0 =>
                    {
                        // A frame header split across reads has its first bytes passed on
                        // already; the client still never gets a whole frame.
                        Some(header_end.saturating_sub(FRAME_HEADER_LENGTH))
                    }
                    _ => None,
                }
            });
            if let Some(start) = response_start {
                passed = start;
                withholding = true;
            }
        }
        to_client.write_all(&buffer[..passed]).await?;
        if withholding {
            responses_withheld.send_modify(|count| *count += 1);
        }
    }
}

/// The client connection preface (RFC 9113 §3.4).
const CLIENT_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LENGTH: usize = 9;
const FRAME_TYPE_DATA: u8 = 0x0;
const FRAME_TYPE_HEADERS: u8 = 0x1;
const FLAG_END_STREAM: u8 = 0x1;

/// One HTTP/2 frame header (RFC 9113 §4.1).
#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    kind: u8,
    flags: u8,
    stream_id: u32,
}

#[derive(Debug)]
enum FrameEvent {
    /// A frame header was complete at `header_end` (an index into the bytes scanned).
    Started {
        header_end: usize,
        header: FrameHeader,
    },
    /// The frame's payload was complete.
    Ended { header: FrameHeader },
}

/// Follows one direction of an HTTP/2 connection across reads: an optional preface, then
/// frames of a 9-byte header and a payload.
struct Http2FrameScanner {
    preface_left: usize,
    header: Vec<u8>,
    current: Option<FrameHeader>,
    payload_left: usize,
}

impl Http2FrameScanner {
    fn after_preface(preface_length: usize) -> Self {
        Self {
            preface_left: preface_length,
            header: Vec::with_capacity(FRAME_HEADER_LENGTH),
            current: None,
            payload_left: 0,
        }
    }

    /// Consume `bytes`; the frames that started and ended in them, in order.
    fn scan(&mut self, bytes: &[u8]) -> Vec<FrameEvent> {
        let mut events = Vec::new();
        let mut position = self.preface_left.min(bytes.len());
        self.preface_left -= position;
        while position < bytes.len() {
            if let Some(header) = self.current {
                let taken = self.payload_left.min(bytes.len() - position);
                self.payload_left -= taken;
                position += taken;
                if self.payload_left == 0 {
                    events.push(FrameEvent::Ended { header });
                    self.current = None;
                }
                continue;
            }
            let taken = (FRAME_HEADER_LENGTH - self.header.len()).min(bytes.len() - position);
            self.header
                .extend_from_slice(&bytes[position..position + taken]);
            position += taken;
            if self.header.len() == FRAME_HEADER_LENGTH {
                let raw = std::mem::take(&mut self.header);
                let header = FrameHeader {
                    kind: raw[3],
                    flags: raw[4],
                    stream_id: u32::from_be_bytes([raw[5], raw[6], raw[7], raw[8]]) & 0x7fff_ffff,
                };
                self.payload_left = u32::from_be_bytes([0, raw[0], raw[1], raw[2]]) as usize;
                events.push(FrameEvent::Started {
                    header_end: position,
                    header,
                });
                if self.payload_left == 0 {
                    events.push(FrameEvent::Ended { header });
                } else {
                    self.current = Some(header);
                }
            }
        }
        events
    }
}
