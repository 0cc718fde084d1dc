//! Clock rules over real gRPC (DESIGN §4 "Clocks"): the server accepts skewed phone clocks
//! within tolerance, clamps HLCs more than 5 minutes ahead, and refuses a batch with any HLC
//! more than 24 h ahead with a typed "device clock wrong" status, storing nothing and never
//! letting the refused clock advance its own HLC.

use fieldsync_model::hlc::{Hlc, unix_millis};
use fieldsync_model::register::FieldTarget;
use fieldsync_proto::v1;
use fieldsync_server::grpc::{DEVICE_CLOCK_WRONG, ERROR_KIND_METADATA, SERVER_TIME_METADATA};
use fieldsync_tests::{TestServer, authorized, client_info, pull_all};
use tonic::Code;

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

fn now_millis() -> u64 {
    unix_millis(time::OffsetDateTime::now_utc())
}

/// A push of one phone-number edit with the given HLC.
fn phone_edit(
    device_id: &str,
    seq: u64,
    household_id: &str,
    phone: &str,
    hlc: Hlc,
) -> v1::PushRequest {
    v1::PushRequest {
        device_id: device_id.into(),
        batch_id: uuid::Uuid::now_v7().to_string(),
        first_seq: seq,
        mutations: vec![v1::Mutation {
            seq,
            mutation_id: uuid::Uuid::now_v7().to_string(),
            hlc: hlc.as_u64(),
            payload: Some(v1::mutation::Payload::EditField(v1::FieldEdit {
                household_id: household_id.into(),
                member_id: String::new(),
                field: "phone".into(),
                value_json: format!("\"{phone}\""),
                base_seq: 0,
            })),
        }],
        client: Some(client_info()),
        heartbeat: Some(v1::DeviceHeartbeat {
            unsent_mutations: 1,
            device_time: Some(fieldsync_proto::convert::instant_to_wire(
                time::OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(hlc.millis()) * 1_000_000,
                )
                .expect("device time in range"),
            )),
            ..Default::default()
        }),
    }
}

struct Phone {
    server: TestServer,
    device: String,
    token: String,
    household_id: String,
}

async fn phone() -> Phone {
    let server = TestServer::start().await;
    let device = uuid::Uuid::now_v7().to_string();
    let token = server.login("cadre01", &device).await;
    let (households, _, _) = pull_all(server.channel().await, &token).await;
    let household_id = households
        .first()
        .expect("cadre01 has paired households")
        .household_id
        .clone();
    Phone {
        server,
        device,
        token,
        household_id,
    }
}

impl Phone {
    async fn push(
        &self,
        seq: u64,
        phone: &str,
        hlc: Hlc,
    ) -> Result<v1::PushResponse, tonic::Status> {
        let mut sync = v1::sync_client::SyncClient::new(self.server.channel().await);
        sync.push(authorized(
            phone_edit(&self.device, seq, &self.household_id, phone, hlc),
            &self.token,
        ))
        .await
        .map(tonic::Response::into_inner)
    }

    async fn history(&self) -> Vec<fieldsync_model::register::RegisterWrite> {
        self.server
            .state
            .store
            .register_history(&self.household_id, &FieldTarget::Household, "phone")
            .await
            .expect("register history")
    }
}

fn applied(response: &v1::PushResponse) -> bool {
    response.results.len() == 1
        && response.results[0].outcome == v1::MutationOutcome::Applied as i32
}

#[tokio::test]
async fn an_hour_slow_or_a_day_slow_is_accepted_as_sent() {
    let phone = phone().await;
    let hour_slow = Hlc::from_parts(now_millis() - HOUR, 2);
    let response = phone.push(1, "13800000001", hour_slow).await.expect("push");
    assert!(applied(&response), "{response:?}");
    let day_slow = Hlc::from_parts(now_millis() - DAY, 5);
    let response = phone.push(2, "13800000002", day_slow).await.expect("push");
    assert!(applied(&response), "{response:?}");
    let stored: Vec<Hlc> = phone
        .history()
        .await
        .iter()
        .map(|write| write.stamp.hlc)
        .collect();
    assert_eq!(
        stored,
        vec![hour_slow, day_slow],
        "slow clocks are stored as sent"
    );
    assert!(
        Hlc::from_u64(response.server_hlc).millis() >= now_millis() - MINUTE,
        "the server answers with its own time for the phone to catch up"
    );
}

#[tokio::test]
async fn an_hour_fast_is_accepted_and_clamped_to_five_minutes_ahead_of_the_server() {
    let phone = phone().await;
    let before = now_millis();
    let hour_fast = Hlc::from_parts(before + HOUR, 7);
    let response = phone.push(1, "13800000003", hour_fast).await.expect("push");
    let after = now_millis();
    assert!(applied(&response), "{response:?}");
    let history = phone.history().await;
    assert_eq!(history.len(), 1);
    let stored = history[0].stamp.hlc;
    let ceiling = fieldsync_model::hlc::CLAMP_AHEAD_MILLIS;
    assert!(
        (before + ceiling..=after + ceiling).contains(&stored.millis()),
        "stored {} not clamped into [{before}, {after}] + 5 min",
        stored.millis()
    );
    assert!(stored < hour_fast);
    let server_hlc = Hlc::from_u64(response.server_hlc);
    assert!(
        server_hlc > stored,
        "the server HLC moved past the committed write"
    );
    assert!(
        server_hlc.millis() <= after + ceiling + 1,
        "but no further than the clamp ceiling, never to the phone's wrong time"
    );
}

#[tokio::test]
async fn a_day_fast_is_refused_with_a_typed_error_and_nothing_is_stored() {
    let phone = phone().await;
    let before_hlc = phone.server.state.current_hlc();
    let day_fast = Hlc::from_parts(now_millis() + 25 * HOUR + 5 * MINUTE, 0);
    let status = phone
        .push(1, "13800000004", day_fast)
        .await
        .expect_err("a clock 25 h ahead is refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().starts_with("device clock wrong:"),
        "{}",
        status.message()
    );
    assert!(status.message().contains("手机时间不正确，请校准后再同步"));
    assert!(status.message().contains("25 h"), "{}", status.message());
    let metadata = status.metadata();
    assert_eq!(
        metadata
            .get(ERROR_KIND_METADATA)
            .and_then(|value| value.to_str().ok()),
        Some(DEVICE_CLOCK_WRONG)
    );
    let server_time: u64 = metadata
        .get(SERVER_TIME_METADATA)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("server time in the metadata");
    assert!(server_time.abs_diff(now_millis()) < MINUTE);

    assert!(
        phone.history().await.is_empty(),
        "nothing of the batch is stored"
    );
    assert_eq!(
        phone.server.state.current_hlc(),
        before_hlc,
        "a refused batch does not move the server HLC"
    );
    // The queue is intact: the same seq goes through once the clock is fixed.
    let fixed = phone
        .push(1, "13800000004", Hlc::from_parts(now_millis(), 0))
        .await
        .expect("push after fixing the clock");
    assert!(applied(&fixed), "{fixed:?}");
    assert!(Hlc::from_u64(fixed.server_hlc) < day_fast);
}

#[tokio::test]
async fn a_phone_set_to_2099_is_refused() {
    let phone = phone().await;
    let year_2099 = Hlc::from_parts(4_070_908_800_000, 0);
    let status = phone
        .push(1, "13800000005", year_2099)
        .await
        .expect_err("2099 is refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status
            .metadata()
            .get(ERROR_KIND_METADATA)
            .and_then(|value| value.to_str().ok()),
        Some(DEVICE_CLOCK_WRONG)
    );
    assert!(phone.history().await.is_empty());
    assert!(phone.server.state.current_hlc() < year_2099);
    // The heartbeat still arrives, so the supervisor sees the phone's wrong clock.
    let backlog = phone
        .server
        .state
        .store
        .device_backlog(&township_of(&phone).await)
        .await
        .expect("backlog");
    let row = backlog
        .iter()
        .find(|row| row.device_id == phone.device)
        .expect("the refused phone reported in");
    assert!(
        row.heartbeat
            .device_time
            .is_some_and(|time| time.year() == 2099)
    );
}

async fn township_of(phone: &Phone) -> String {
    phone
        .server
        .state
        .store
        .get_household(&phone.household_id)
        .await
        .expect("household")
        .expect("exists")
        .township_id
}
