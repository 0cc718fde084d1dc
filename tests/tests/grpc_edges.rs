//! The gRPC edge against a real server on a real socket: authentication, push outcomes
//! (applied, duplicate, rejected out of scope), malformed requests, health and reflection.

use fieldsync_proto::v1;
use fieldsync_tests::{TestServer, authorized, client_info, pull_all};
use tonic::Code;

fn in_person_visit(household_id: &str) -> v1::Visit {
    let now = time::OffsetDateTime::now_utc();
    let wire_now = fieldsync_proto::convert::instant_to_wire(now);
    v1::Visit {
        visit_id: uuid::Uuid::now_v7().to_string(),
        revision: 1,
        household_id: household_id.into(),
        mode: v1::VisitMode::InPerson as i32,
        r#type: v1::VisitType::Routine as i32,
        checkin_at: Some(fieldsync_proto::convert::instant_to_wire(
            now - time::Duration::minutes(45),
        )),
        checkout_at: Some(wire_now),
        observed_situation: "户主在家，秋粮已收，家中老人身体尚可。".into(),
        gps: Some(v1::GpsFix {
            lat: 26.4,
            lon: 107.4,
            crs: v1::Crs::Wgs84 as i32,
            accuracy_m: 10.0,
            ..Default::default()
        }),
        recorded_at_device: Some(wire_now),
        ..Default::default()
    }
}

fn push_of(device_id: &str, first_seq: u64, visits: Vec<v1::Visit>) -> v1::PushRequest {
    v1::PushRequest {
        device_id: device_id.into(),
        batch_id: uuid::Uuid::now_v7().to_string(),
        first_seq,
        mutations: visits
            .into_iter()
            .enumerate()
            .map(|(index, visit)| v1::Mutation {
                seq: first_seq + index as u64,
                mutation_id: uuid::Uuid::now_v7().to_string(),
                hlc: 1,
                payload: Some(v1::mutation::Payload::SubmitVisit(visit)),
            })
            .collect(),
        client: Some(client_info()),
        ..Default::default()
    }
}

async fn queue_length(server: &TestServer, supervisor_token: &str) -> usize {
    let mut review = v1::review_client::ReviewClient::new(server.channel().await);
    review
        .list_queue(authorized(
            v1::ListQueueRequest {
                page_size: 200,
                ..Default::default()
            },
            supervisor_token,
        ))
        .await
        .expect("queue")
        .into_inner()
        .items
        .len()
}

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let server = TestServer::start().await;
    let mut sync = v1::sync_client::SyncClient::new(server.channel().await);
    let status = sync
        .pull(tonic::Request::new(v1::PullRequest {
            cursor: String::new(),
            client: Some(client_info()),
            ..Default::default()
        }))
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = sync
        .push(authorized(
            push_of(&uuid::Uuid::now_v7().to_string(), 1, vec![]),
            "forged-token",
        ))
        .await
        .expect_err("bad token");
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut review = v1::review_client::ReviewClient::new(server.channel().await);
    let status = review
        .list_queue(v1::ListQueueRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);

    let mut auth = v1::auth_client::AuthClient::new(server.channel().await);
    let status = auth
        .login(v1::LoginRequest {
            username: "cadre01".into(),
            password: "wrong".into(),
            device_id: uuid::Uuid::now_v7().to_string(),
            device_name: "test".into(),
            client: Some(client_info()),
            wants_refresh_token: false,
        })
        .await
        .expect_err("wrong password");
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_resent_batch_is_duplicate_and_stores_nothing_new() {
    let server = TestServer::start().await;
    let device = uuid::Uuid::now_v7().to_string();
    let token = server.login("cadre01", &device).await;
    let supervisor = server
        .login("township1", &uuid::Uuid::now_v7().to_string())
        .await;
    let (households, _, _) = pull_all(server.channel().await, &token).await;
    let household = households.first().expect("cadre01 has paired households");
    let mut sync = v1::sync_client::SyncClient::new(server.channel().await);

    let request = push_of(&device, 1, vec![in_person_visit(&household.household_id)]);
    let first = sync
        .push(authorized(request.clone(), &token))
        .await
        .expect("push")
        .into_inner();
    assert_eq!(
        first.results[0].outcome,
        v1::MutationOutcome::Applied as i32
    );
    assert_eq!(first.last_processed_seq, 1);
    let queued = queue_length(&server, &supervisor).await;
    assert_eq!(queued, 1);

    // The same batch again (a retry after a lost response) gets the same answer, even
    // though its heartbeat (a report about the moment of sending) changed.
    let mut retried = request.clone();
    retried.heartbeat = Some(v1::DeviceHeartbeat {
        unsent_mutations: 1,
        ..Default::default()
    });
    let retry = sync
        .push(authorized(retried, &token))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(retry.results, first.results);
    // The same (device, seq) under a new batch id is a duplicate.
    let mut resent = request.clone();
    resent.batch_id = uuid::Uuid::now_v7().to_string();
    let again = sync
        .push(authorized(resent, &token))
        .await
        .expect("resend")
        .into_inner();
    assert_eq!(
        again.results[0].outcome,
        v1::MutationOutcome::Duplicate as i32
    );
    assert_eq!(again.last_processed_seq, 1);
    assert_eq!(
        queue_length(&server, &supervisor).await,
        queued,
        "nothing new stored"
    );

    // Reusing a batch id for different content is refused outright.
    let mut reused = push_of(&device, 2, vec![in_person_visit(&household.household_id)]);
    reused.batch_id = request.batch_id.clone();
    let status = sync
        .push(authorized(reused, &token))
        .await
        .expect_err("reused batch id");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(queue_length(&server, &supervisor).await, queued);
}

#[tokio::test]
async fn a_visit_for_an_unpaired_household_is_rejected_with_a_clear_code() {
    let server = TestServer::start().await;
    let device = uuid::Uuid::now_v7().to_string();
    let token = server.login("cadre01", &device).await;
    let supervisor = server
        .login("township1", &uuid::Uuid::now_v7().to_string())
        .await;
    let (own, _, _) = pull_all(server.channel().await, &token).await;
    let (township, _, _) = pull_all(server.channel().await, &supervisor).await;
    let stranger = township
        .iter()
        .find(|household| {
            own.iter()
                .all(|mine| mine.household_id != household.household_id)
        })
        .expect("a household cadre01 is not paired with");

    let mut sync = v1::sync_client::SyncClient::new(server.channel().await);
    let response = sync
        .push(authorized(
            push_of(&device, 1, vec![in_person_visit(&stranger.household_id)]),
            &token,
        ))
        .await
        .expect("push")
        .into_inner();
    let result = &response.results[0];
    assert_eq!(result.outcome, v1::MutationOutcome::Rejected as i32);
    assert_eq!(result.reject_code, "household_out_of_scope");
    assert!(result.reject_message.contains(&stranger.household_id));
    // A permanent rejection still consumes the seq, so the queue behind it moves on.
    assert_eq!(response.last_processed_seq, 1);
    assert_eq!(queue_length(&server, &supervisor).await, 0);

    // An id that does not exist at all gets the same answer and reveals nothing.
    let response = sync
        .push(authorized(
            push_of(&device, 2, vec![in_person_visit("no-such-household")]),
            &token,
        ))
        .await
        .expect("push")
        .into_inner();
    assert_eq!(response.results[0].reject_code, "household_out_of_scope");
}

#[tokio::test]
async fn a_malformed_push_is_invalid_argument_naming_the_field() {
    let server = TestServer::start().await;
    let device = uuid::Uuid::now_v7().to_string();
    let token = server.login("cadre01", &device).await;
    let (households, _, _) = pull_all(server.channel().await, &token).await;
    let household_id = households[0].household_id.clone();
    let mut sync = v1::sync_client::SyncClient::new(server.channel().await);

    let mut visit = in_person_visit(&household_id);
    visit.checkin_at = None;
    let status = sync
        .push(authorized(push_of(&device, 1, vec![visit]), &token))
        .await
        .expect_err("malformed");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("mutations[0].submit_visit.checkin_at"),
        "{}",
        status.message()
    );

    let mut gap = push_of(
        &device,
        1,
        vec![
            in_person_visit(&household_id),
            in_person_visit(&household_id),
        ],
    );
    gap.mutations[1].seq = 3;
    let status = sync.push(authorized(gap, &token)).await.expect_err("gap");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("mutations[1].seq"),
        "{}",
        status.message()
    );

    let other_device = push_of(
        &uuid::Uuid::now_v7().to_string(),
        1,
        vec![in_person_visit(&household_id)],
    );
    let status = sync
        .push(authorized(other_device, &token))
        .await
        .expect_err("device mismatch");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("device_id"),
        "{}",
        status.message()
    );

    // A well-formed record that breaks a domain rule is rejected on its own, not the batch.
    let mut too_short = in_person_visit(&household_id);
    too_short.observed_situation = "好".into();
    let response = sync
        .push(authorized(push_of(&device, 1, vec![too_short]), &token))
        .await
        .expect("push")
        .into_inner();
    assert_eq!(response.results[0].reject_code, "invalid_record");
    assert!(
        response.results[0]
            .reject_message
            .contains("observed_situation")
    );

    // An app older than the server's minimum schema is told to upgrade.
    let mut old_app = push_of(&device, 2, vec![in_person_visit(&household_id)]);
    old_app.client = Some(v1::ClientInfo {
        schema_version: 0,
        app_version: "0.0.1".into(),
    });
    let status = sync
        .push(authorized(old_app, &token))
        .await
        .expect_err("old app");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("upgrade required"));
}

#[tokio::test]
async fn health_and_reflection_answer_on_the_same_port() {
    let server = TestServer::start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let response = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "fieldsync.v1.Sync".into(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        response.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Reflection lists the fieldsync services, so grpcurl-style tools work without protos.
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("frame")
        .expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<String> = list
        .service
        .into_iter()
        .map(|service| service.name)
        .collect();
    for expected in [
        "fieldsync.v1.Auth",
        "fieldsync.v1.Sync",
        "fieldsync.v1.Media",
        "fieldsync.v1.Review",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} missing from {names:?}"
        );
    }

    // The older v1alpha reflection is offered too, for clients that only speak it.
    {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut reflection = ServerReflectionClient::new(server.channel().await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = reflection
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("v1alpha reflection")
            .into_inner();
        let response = responses
            .message()
            .await
            .expect("frame")
            .expect("one response");
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected v1alpha reflection answer {response:?}");
        };
        assert!(
            list.service
                .iter()
                .any(|service| service.name == "fieldsync.v1.Sync"),
            "{list:?}"
        );
    }

    // The console shares the port.
    let page = reqwest::get(format!("{}/console/login", server.url()))
        .await
        .expect("console");
    assert!(page.status().is_success());
    assert!(page.text().await.expect("body").contains("登录"));
}

#[tokio::test]
async fn a_cursor_the_server_never_issued_gets_reset() {
    let server = TestServer::start().await;
    let token = server
        .login("cadre01", &uuid::Uuid::now_v7().to_string())
        .await;
    // The cursor the server issues names the cadre's township: `v2:<township>=<seq>`.
    let (households, _, issued) = pull_all(server.channel().await, &token).await;
    let township = &households[0].township_id;
    assert!(issued.starts_with(&format!("v2:{township}=")), "{issued:?}");
    let cursors = [
        // A position the township never reached (a server restored from an older backup).
        (format!("v2:{township}=999999999"), true),
        // A township this server never wrote to.
        ("v2:no-such-township=5".to_owned(), true),
        // A v1 cursor (the global sequence before per-scope sequences), an unknown version
        // and garbage.
        ("999999999".to_owned(), true),
        ("v9:whatever".to_owned(), true),
        ("v2:broken".to_owned(), true),
        ("not-a-cursor".to_owned(), true),
        ("-5".to_owned(), true),
        // The cursor the server issued is served.
        (issued, false),
    ];
    for (cursor, expect_reset) in cursors {
        let mut sync = v1::sync_client::SyncClient::new(server.channel().await);
        let mut stream = sync
            .pull(authorized(
                v1::PullRequest {
                    cursor: cursor.clone(),
                    client: Some(client_info()),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .expect("pull")
            .into_inner();
        let frame = stream.message().await.expect("frame").expect("a frame");
        let reset = matches!(frame.frame, Some(v1::pull_response::Frame::Reset(_)));
        assert_eq!(reset, expect_reset, "cursor {cursor:?} got {frame:?}");
    }
}

/// `LoginResponse.area_id` as documented in auth.proto: a supervisor's township, and for a
/// cadre the township whose supervisors review their visits (not empty).
#[tokio::test]
async fn login_names_the_area_of_supervisors_and_cadres() {
    let server = TestServer::start().await;
    let townships: Vec<String> = server
        .state
        .store
        .list_areas(Some(fieldsync_server::demo::DEMO_COUNTY_ID))
        .await
        .expect("areas")
        .into_iter()
        .map(|area| area.area_id)
        .collect();
    let channel = server.channel().await;
    let area_of = |username: &'static str| {
        let mut auth = v1::auth_client::AuthClient::new(channel.clone());
        async move {
            let response = auth
                .login(v1::LoginRequest {
                    username: username.into(),
                    password: fieldsync_tests::DEMO_PASSWORD.into(),
                    device_id: uuid::Uuid::now_v7().to_string(),
                    device_name: "test".into(),
                    client: Some(client_info()),
                    wants_refresh_token: false,
                })
                .await
                .expect("login")
                .into_inner();
            (response.role, response.area_id)
        }
    };
    let (role, supervisor_area) = area_of("township1").await;
    assert_eq!(role, v1::Role::Township as i32);
    assert!(townships.contains(&supervisor_area), "{supervisor_area}");
    let (role, cadre_area) = area_of("cadre01").await;
    assert_eq!(role, v1::Role::Cadre as i32);
    assert!(
        townships.contains(&cadre_area),
        "a cadre's area is their township: {cadre_area:?} in {townships:?}"
    );
}
