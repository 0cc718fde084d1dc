//! Reassigning a household over real gRPC pulls (DESIGN §4): the old cadre's next pull
//! lists it in `removed_household_ids` with no household data, the new cadre's next pull
//! delivers it, and the old cadre can no longer push for it.

use fieldsync_proto::v1;
use fieldsync_tests::{TestServer, authorized, client_info, pull_all};

/// Pull from `cursor`: (households, removed ids, next cursor).
async fn pull_from(
    server: &TestServer,
    token: &str,
    cursor: &str,
) -> (Vec<v1::Household>, Vec<String>, String) {
    let mut sync = v1::sync_client::SyncClient::new(server.channel().await);
    let mut stream = sync
        .pull(authorized(
            v1::PullRequest {
                cursor: cursor.into(),
                client: Some(client_info()),
                ..Default::default()
            },
            token,
        ))
        .await
        .expect("pull")
        .into_inner();
    let (mut households, mut removed) = (Vec::new(), Vec::new());
    while let Some(frame) = stream.message().await.expect("frame") {
        match frame.frame {
            Some(v1::pull_response::Frame::Page(page)) => {
                households.extend(page.households);
                removed.extend(page.removed_household_ids);
            }
            Some(v1::pull_response::Frame::Checkpoint(checkpoint)) => {
                return (households, removed, checkpoint.cursor);
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    panic!("pull ended without a checkpoint")
}

#[tokio::test]
async fn the_old_cadre_purges_a_reassigned_household_and_the_new_cadre_receives_it() {
    let server = TestServer::start().await;
    let old_token = server
        .login("cadre01", &uuid::Uuid::now_v7().to_string())
        .await;
    let new_token = server
        .login("cadre02", &uuid::Uuid::now_v7().to_string())
        .await;
    let (old_households, _, old_cursor) = pull_all(server.channel().await, &old_token).await;
    let (new_households, _, new_cursor) = pull_all(server.channel().await, &new_token).await;
    let moved = old_households
        .first()
        .expect("cadre01 has households")
        .clone();
    assert!(
        new_households
            .iter()
            .all(|household| household.household_id != moved.household_id)
    );

    let new_cadre = server
        .state
        .store
        .find_user_by_username("cadre02")
        .await
        .expect("lookup")
        .expect("cadre02 exists");
    server
        .state
        .store
        .reassign_household(
            &moved.household_id,
            &new_cadre.user_id,
            time::OffsetDateTime::now_utc(),
        )
        .await
        .expect("reassign");

    let (households, removed, _) = pull_from(&server, &old_token, &old_cursor).await;
    assert_eq!(removed, vec![moved.household_id.clone()]);
    assert!(
        households.is_empty(),
        "no household data goes to the old cadre"
    );
    let (households, removed, _) = pull_from(&server, &new_token, &new_cursor).await;
    assert!(removed.is_empty());
    assert_eq!(
        households
            .iter()
            .map(|household| household.household_id.as_str())
            .collect::<Vec<_>>(),
        vec![moved.household_id.as_str()]
    );
    let (all_old, _, _) = pull_all(server.channel().await, &old_token).await;
    assert!(
        all_old
            .iter()
            .all(|household| household.household_id != moved.household_id),
        "a fresh pull of the old cadre no longer contains it"
    );
}

#[tokio::test]
async fn a_phone_behind_the_tombstone_horizon_is_reset_and_its_outbox_survives() {
    use fieldsync_client::{Client, NewVisit};
    use fieldsync_model::codes::VisitMode;

    let server = TestServer::start().await;
    let folder = tempfile::tempdir().expect("temp dir");
    let phone = Client::open(folder.path(), &server.url()).expect("open");
    phone
        .login("cadre01", fieldsync_tests::DEMO_PASSWORD)
        .await
        .expect("login");
    phone.sync().await.expect("first sync");
    let households = phone.households().expect("households");
    let (moved, kept) = (&households[0], &households[1]);
    let stale_cursor = phone
        .pull_cursor()
        .expect("cursor")
        .expect("a cursor after sync");

    // The phone goes quiet with an unsent visit; meanwhile one household moves to another
    // cadre and, months later, its tombstone expires.
    let now = time::OffsetDateTime::now_utc();
    let visit_id = phone
        .record_visit(NewVisit {
            observed_situation: "户主外出务工，妻子在家照顾老人。".into(),
            ..NewVisit::new(
                &kept.household_id,
                VisitMode::InPerson,
                now - time::Duration::minutes(30),
                now,
            )
        })
        .expect("record offline");
    let cadre02 = server
        .state
        .store
        .find_user_by_username("cadre02")
        .await
        .expect("store")
        .expect("cadre02");
    server
        .state
        .store
        .reassign_household(&moved.household_id, &cadre02.user_id, now)
        .await
        .expect("reassign");
    let compaction = server
        .state
        .store
        .compact_change_log(now + time::Duration::days(1))
        .await
        .expect("compact");
    assert_eq!(compaction.tombstones_deleted, 1);

    // Over the wire, the stale cursor gets RESET, not a silent gap.
    let token = server
        .login("cadre01", &uuid::Uuid::now_v7().to_string())
        .await;
    let mut sync = v1::sync_client::SyncClient::new(server.channel().await);
    let mut stream = sync
        .pull(authorized(
            v1::PullRequest {
                cursor: stale_cursor,
                client: Some(client_info()),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("pull")
        .into_inner();
    let frame = stream.message().await.expect("frame").expect("one frame");
    assert!(
        matches!(frame.frame, Some(v1::pull_response::Frame::Reset(_))),
        "{frame:?}"
    );

    // The client core re-downloads its scope, keeps its outbox, and drops the moved
    // household (PII included) even though the tombstone itself is gone.
    let report = phone.sync().await.expect("sync after the horizon");
    assert_eq!(report.resets, 1);
    let after: Vec<String> = phone
        .households()
        .expect("households")
        .into_iter()
        .map(|household| household.household_id)
        .collect();
    assert!(!after.contains(&moved.household_id));
    assert!(after.contains(&kept.household_id));
    assert!(
        phone
            .household(&moved.household_id)
            .expect("read")
            .is_none()
    );
    assert_eq!(
        phone.status().expect("status").unsent_mutations,
        0,
        "the visit went out"
    );
    assert_eq!(
        phone.visit(&visit_id).expect("read").expect("visit").state,
        fieldsync_client::VisitState::Submitted
    );
}
