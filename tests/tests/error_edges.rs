//! Errors that never wedge a phone, over a real socket against a real server: a record with
//! an absurd time is rejected on its own and the queue moves on; seqs SQLite cannot hold are
//! INVALID_ARGUMENT naming the field (never the retryable UNAVAILABLE); bytes that do not
//! decode as protobuf are INVALID_ARGUMENT on every service (never the retryable INTERNAL).

use fieldsync_proto::v1;
use fieldsync_tests::{TestServer, authorized, client_info, pull_all, wire_in_person_visit};
use prost::bytes::{Buf, BufMut};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;

fn push_of(device_id: &str, first_seq: u64, visits: Vec<v1::Visit>) -> v1::PushRequest {
    v1::PushRequest {
        device_id: device_id.into(),
        batch_id: uuid::Uuid::now_v7().to_string(),
        first_seq,
        mutations: visits
            .into_iter()
            .enumerate()
            .map(|(index, visit)| v1::Mutation {
                seq: first_seq.wrapping_add(index as u64),
                mutation_id: uuid::Uuid::now_v7().to_string(),
                hlc: 1,
                payload: Some(v1::mutation::Payload::SubmitVisit(visit)),
            })
            .collect(),
        client: Some(client_info()),
        ..Default::default()
    }
}

/// A cadre's device, token and one of the cadre's paired households.
async fn cadre_on(server: &TestServer) -> (String, String, String) {
    let device = uuid::Uuid::now_v7().to_string();
    let token = server.login("cadre01", &device).await;
    let (households, _, _) = pull_all(server.channel().await, &token).await;
    (device, token, households[0].household_id.clone())
}

#[tokio::test]
async fn a_visit_at_the_end_of_time_is_rejected_on_its_own_and_the_queue_moves_on() {
    let server = TestServer::start().await;
    let (device, token, household_id) = cadre_on(&server).await;
    let mut sync = v1::sync_client::SyncClient::new(server.channel().await);

    // 9999-12-31T23:46:40Z: inside the `time` crate's range, but with no Beijing-time
    // counterpart; it used to panic the server while computing the business month.
    let end_of_time = prost_types::Timestamp {
        seconds: 253_402_300_000,
        nanos: 0,
    };
    let mut absurd = wire_in_person_visit(&household_id);
    absurd.checkin_at = Some(end_of_time);
    absurd.checkout_at = Some(end_of_time);
    let mut from_1970 = wire_in_person_visit(&household_id);
    from_1970.checkin_at = Some(prost_types::Timestamp::default());
    let response = sync
        .push(authorized(
            push_of(
                &device,
                1,
                vec![absurd, from_1970, wire_in_person_visit(&household_id)],
            ),
            &token,
        ))
        .await
        .expect("a bad record is an outcome, not a failed call")
        .into_inner();
    let outcomes: Vec<(i32, &str)> = response
        .results
        .iter()
        .map(|result| (result.outcome, result.reject_code.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (v1::MutationOutcome::Rejected as i32, "invalid_record"),
            (v1::MutationOutcome::Rejected as i32, "invalid_record"),
            (v1::MutationOutcome::Applied as i32, ""),
        ]
    );
    assert!(
        response.results[0].reject_message.contains("checkin_at"),
        "{}",
        response.results[0].reject_message
    );
    assert!(
        response.results[0].reject_message.contains("2000..=2100"),
        "{}",
        response.results[0].reject_message
    );
    // Rejected records consume their seqs, so the phone's next batch goes on from 4.
    assert_eq!(response.last_processed_seq, 3);
    let response = sync
        .push(authorized(
            push_of(&device, 4, vec![wire_in_person_visit(&household_id)]),
            &token,
        ))
        .await
        .expect("next batch")
        .into_inner();
    assert_eq!(
        response.results[0].outcome,
        v1::MutationOutcome::Applied as i32
    );
    assert_eq!(response.last_processed_seq, 4);
}

#[tokio::test]
async fn seqs_sqlite_cannot_hold_are_invalid_argument_naming_the_field() {
    let server = TestServer::start().await;
    let (device, token, household_id) = cadre_on(&server).await;
    let mut sync = v1::sync_client::SyncClient::new(server.channel().await);

    let cases = [
        (1u64 << 63, 1, "first_seq"),
        (u64::MAX, 1, "first_seq"),
        // The first seq fits; the second is one past i64::MAX.
        (i64::MAX as u64, 2, "mutations[1].seq"),
    ];
    for (first_seq, count, field) in cases {
        let visits = (0..count)
            .map(|_| wire_in_person_visit(&household_id))
            .collect();
        let status = sync
            .push(authorized(push_of(&device, first_seq, visits), &token))
            .await
            .expect_err("a seq past i64::MAX is refused");
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "first_seq {first_seq}: {status:?}"
        );
        assert!(
            status.message().starts_with(field),
            "first_seq {first_seq}: {}",
            status.message()
        );
    }
    // Nothing advanced; the device's real queue still starts at 1.
    let response = sync
        .push(authorized(
            push_of(&device, 1, vec![wire_in_person_visit(&household_id)]),
            &token,
        ))
        .await
        .expect("good batch")
        .into_inner();
    assert_eq!(
        response.results[0].outcome,
        v1::MutationOutcome::Applied as i32
    );
}

/// Sends and receives raw bytes, so a test can put undecodable bytes on the wire.
#[derive(Debug, Clone, Copy, Default)]
struct RawBytesCodec;

impl Codec for RawBytesCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytesCodec;
    type Decoder = RawBytesCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for RawBytesCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawBytesCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

#[tokio::test]
async fn undecodable_bytes_are_invalid_argument_on_every_service() {
    let server = TestServer::start().await;
    let unary_methods = [
        "/fieldsync.v1.Auth/Login",
        "/fieldsync.v1.Sync/Push",
        "/fieldsync.v1.Media/StartUpload",
        "/fieldsync.v1.Media/PutChunk",
        "/fieldsync.v1.Media/CompleteUpload",
        "/fieldsync.v1.Media/UploadStatus",
        "/fieldsync.v1.Review/ListQueue",
        "/fieldsync.v1.Review/GetVisit",
        "/fieldsync.v1.Review/Decide",
    ];
    let garbage: [&[u8]; 3] = [
        // Field 1, length-delimited, claims 5 bytes but carries 1.
        &[0x0a, 0x05, 0x01],
        // Wire type 7 does not exist.
        &[0xff],
        // A varint that never ends.
        &[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
    ];
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    for method in unary_methods {
        for bytes in garbage {
            grpc.ready().await.expect("ready");
            let status = grpc
                .unary::<_, Vec<u8>, _>(
                    tonic::Request::new(bytes.to_vec()),
                    PathAndQuery::from_static(method),
                    RawBytesCodec,
                )
                .await
                .expect_err("garbage is refused");
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{method} {bytes:?}: {status:?}"
            );
            assert!(
                status
                    .message()
                    .starts_with(fieldsync_proto::codec::UNDECODABLE_MESSAGE),
                "{method}: {}",
                status.message()
            );
        }
    }
    // The streaming Pull decodes its one request the same way.
    grpc.ready().await.expect("ready");
    let status = grpc
        .server_streaming::<_, Vec<u8>, _>(
            tonic::Request::new(vec![0x0a, 0x05, 0x01]),
            PathAndQuery::from_static("/fieldsync.v1.Sync/Pull"),
            RawBytesCodec,
        )
        .await
        .expect_err("garbage is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // Well-formed bytes on the same channel still work: a real login.
    let (_, token, _) = cadre_on(&server).await;
    assert!(!token.is_empty());
}
