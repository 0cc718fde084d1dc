//! Conformance checks of [`SessionsStore`](crate::store::sessions::SessionsStore): sessions
//! found by token digest, touched, ended and listed; refresh tokens rotated, their reuse
//! ending the session. Every backend runs each check once on a fresh store.

use time::Duration;

use crate::store::conformance::{VISIT_TIME, new_id, principal, seeded};
use crate::store::{
    RefreshOutcome, RefreshRotation, SessionEndReason, SessionKind, SessionRecord, Store,
    UserRecord,
};

/// A new session for `user` on `device_id` with access token digest `token` (64 hex chars).
pub(crate) fn session_record(
    user: &UserRecord,
    device_id: &str,
    token: char,
    refresh: Option<char>,
) -> SessionRecord {
    SessionRecord {
        session_id: new_id(),
        kind: SessionKind::Device,
        token_sha256: token.to_string().repeat(64),
        user_id: user.user_id.clone(),
        device_id: device_id.into(),
        device_name: "红米 Note".into(),
        app_version: "1.2.0".into(),
        ip: "10.0.0.7".into(),
        created_at: VISIT_TIME,
        expires_at: VISIT_TIME + Duration::hours(12),
        refresh: refresh.map(|digit| {
            (
                digit.to_string().repeat(64),
                VISIT_TIME + Duration::days(30),
            )
        }),
    }
}

/// A session is found by its access token digest with its principal, expiry and device;
/// ending it keeps the row with the reason; ending someone else's session does nothing.
pub async fn sessions_are_found_ended_and_listed(store: &dyn Store) {
    let fixture = seeded(store).await;
    let record = session_record(&fixture.cadre_a, "device-a", 'a', None);
    store
        .create_session(record.clone())
        .await
        .expect("create session");
    let found = store
        .find_session(&"a".repeat(64))
        .await
        .expect("find session")
        .expect("the session exists");
    assert_eq!(found.principal, principal(&fixture.cadre_a, "device-a"));
    assert_eq!(found.session_id, record.session_id);
    assert_eq!(found.expires_at, record.expires_at);
    assert_eq!((found.ended, found.refreshable), (None, false));
    assert_eq!(found.last_ip, "10.0.0.7");
    assert_eq!(
        store.find_session(&"b".repeat(64)).await.expect("find"),
        None,
        "an unknown token finds nothing"
    );

    // Last seen moves forward only; an empty address keeps the known one.
    let later = VISIT_TIME + Duration::minutes(5);
    store
        .touch_session(&record.session_id, later, "")
        .await
        .expect("touch");
    store
        .touch_session(&record.session_id, VISIT_TIME, "10.0.0.8")
        .await
        .expect("touch");
    let listed = store
        .list_user_sessions(&fixture.cadre_a.user_id, later)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].last_seen_at, later);
    assert_eq!(listed[0].last_ip, "10.0.0.8");
    assert_eq!(
        (
            listed[0].device_name.as_str(),
            listed[0].app_version.as_str()
        ),
        ("红米 Note", "1.2.0")
    );
    assert_eq!(listed[0].created_at, VISIT_TIME);
    assert!(
        store
            .list_user_sessions(&fixture.cadre_a.user_id, record.expires_at)
            .await
            .expect("list")
            .is_empty(),
        "an expired session is not in use"
    );

    assert!(
        !store
            .end_session(
                &fixture.cadre_b.user_id,
                &record.session_id,
                SessionEndReason::Revoked,
                later
            )
            .await
            .expect("end"),
        "another user's session is not ended through this user"
    );
    assert!(
        store
            .end_session(
                &fixture.cadre_a.user_id,
                &record.session_id,
                SessionEndReason::LoggedOut,
                later
            )
            .await
            .expect("end")
    );
    let ended = store
        .find_session(&"a".repeat(64))
        .await
        .expect("find")
        .expect("ended sessions are kept");
    assert_eq!(ended.ended, Some(SessionEndReason::LoggedOut));
    assert!(
        store
            .list_user_sessions(&fixture.cadre_a.user_id, later)
            .await
            .expect("list")
            .is_empty()
    );

    // Ending all of a user's sessions but one.
    let first = session_record(&fixture.cadre_b, "device-b1", 'c', None);
    let second = session_record(&fixture.cadre_b, "device-b2", 'd', None);
    let third = session_record(&fixture.cadre_b, "device-b3", 'e', None);
    for session in [&first, &second, &third] {
        store.create_session(session.clone()).await.expect("create");
    }
    let count = store
        .end_user_sessions(
            &fixture.cadre_b.user_id,
            Some(&second.session_id),
            SessionEndReason::PasswordChanged,
            later,
        )
        .await
        .expect("end all but one");
    assert_eq!(count, 2);
    let left = store
        .list_user_sessions(&fixture.cadre_b.user_id, later)
        .await
        .expect("list");
    assert_eq!(
        left.iter()
            .map(|session| session.device_id.as_str())
            .collect::<Vec<_>>(),
        ["device-b2"]
    );
    let third_found = store
        .find_session(&"e".repeat(64))
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(third_found.ended, Some(SessionEndReason::PasswordChanged));
}

/// A refresh rotates both tokens; the old refresh token presented again is reuse and ends
/// the session; an ended session cannot refresh; an unknown token is unknown.
pub async fn refresh_tokens_rotate_and_reuse_ends_the_session(store: &dyn Store) {
    let fixture = seeded(store).await;
    let record = session_record(&fixture.cadre_a, "device-a", 'a', Some('1'));
    store
        .create_session(record.clone())
        .await
        .expect("create session");
    let rotation = |old: char, new_access: char, new_refresh: char| RefreshRotation {
        old_refresh_sha256: old.to_string().repeat(64),
        new_token_sha256: new_access.to_string().repeat(64),
        new_expires_at: VISIT_TIME + Duration::hours(13),
        new_refresh_sha256: new_refresh.to_string().repeat(64),
        new_refresh_expires_at: VISIT_TIME + Duration::days(31),
        app_version: "1.3.0".into(),
        ip: "10.0.0.9".into(),
        now: VISIT_TIME + Duration::hours(1),
    };
    let RefreshOutcome::Rotated(rotated) = store
        .rotate_refresh(rotation('1', 'b', '2'))
        .await
        .expect("rotate")
    else {
        panic!("the current refresh token rotates");
    };
    assert_eq!(rotated.session_id, record.session_id);
    assert!(rotated.refreshable);
    assert_eq!(rotated.expires_at, VISIT_TIME + Duration::hours(13));
    assert_eq!(
        store.find_session(&"a".repeat(64)).await.expect("find"),
        None
    );
    assert!(
        store
            .find_session(&"b".repeat(64))
            .await
            .expect("find")
            .is_some()
    );

    let reused = store
        .rotate_refresh(rotation('1', 'c', '3'))
        .await
        .expect("reuse");
    let RefreshOutcome::Reused(ended) = reused else {
        panic!("a rotated refresh token is reuse: {reused:?}");
    };
    assert_eq!(ended.ended, Some(SessionEndReason::RefreshReused));
    let current = store
        .rotate_refresh(rotation('2', 'd', '4'))
        .await
        .expect("refresh after reuse");
    assert!(
        matches!(current, RefreshOutcome::Ended(_)),
        "reuse ended the whole session, the newest refresh token too: {current:?}"
    );
    assert_eq!(
        store
            .rotate_refresh(rotation('9', 'e', '5'))
            .await
            .expect("unknown"),
        RefreshOutcome::Unknown
    );
    let session = store
        .find_session(&"b".repeat(64))
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(session.ended, Some(SessionEndReason::RefreshReused));
}

/// Sessions past their last possible use before the cut-off go, with their rotated refresh
/// digests; a session still usable then stays, whatever its access token's expiry.
pub async fn sessions_past_their_last_use_are_purged(store: &dyn Store) {
    let fixture = seeded(store).await;
    // Ended an hour after it opened.
    let ended = session_record(&fixture.cadre_a, "device-a", 'a', None);
    // Never ended; its access token expired after 12 h and it has no refresh token.
    let expired = session_record(&fixture.cadre_a, "device-b", 'b', None);
    // Never ended; its access token expired, but its refresh token lasts 30 days.
    let refreshable = session_record(&fixture.cadre_b, "device-c", 'c', Some('1'));
    // Rotated once (its old refresh digest is kept to catch reuse), then signed out.
    let rotated = session_record(&fixture.cadre_b, "device-d", 'd', Some('2'));
    for record in [&ended, &expired, &refreshable, &rotated] {
        store
            .create_session(record.clone())
            .await
            .expect("create session");
    }
    let rotation = RefreshRotation {
        old_refresh_sha256: "2".repeat(64),
        new_token_sha256: "e".repeat(64),
        new_expires_at: VISIT_TIME + Duration::hours(13),
        new_refresh_sha256: "3".repeat(64),
        new_refresh_expires_at: VISIT_TIME + Duration::days(31),
        app_version: "1.3.0".into(),
        ip: "10.0.0.9".into(),
        now: VISIT_TIME + Duration::hours(1),
    };
    assert!(matches!(
        store
            .rotate_refresh(rotation.clone())
            .await
            .expect("rotate"),
        RefreshOutcome::Rotated(_)
    ));
    for (user, record) in [(&fixture.cadre_a, &ended), (&fixture.cadre_b, &rotated)] {
        assert!(
            store
                .end_session(
                    &user.user_id,
                    &record.session_id,
                    SessionEndReason::LoggedOut,
                    VISIT_TIME + Duration::hours(2),
                )
                .await
                .expect("end session")
        );
    }
    // Before anything's last use: nothing goes.
    assert_eq!(
        store
            .purge_sessions(VISIT_TIME + Duration::minutes(30))
            .await
            .expect("purge"),
        0
    );
    let purged = store
        .purge_sessions(VISIT_TIME + Duration::days(20))
        .await
        .expect("purge");
    assert_eq!(
        purged, 3,
        "the ended, the expired and the rotated-then-ended"
    );
    for token in ['a', 'b', 'e'] {
        assert_eq!(
            store
                .find_session(&token.to_string().repeat(64))
                .await
                .expect("find"),
            None,
            "session of token {token} is gone"
        );
    }
    let kept = store
        .find_session(&"c".repeat(64))
        .await
        .expect("find")
        .expect("the refreshable session stays");
    assert_eq!(kept.session_id, refreshable.session_id);
    // The purged session's old refresh digest went with it: presenting it again is an
    // unknown token now, not a reuse of a live session.
    assert_eq!(
        store.rotate_refresh(rotation).await.expect("old digest"),
        RefreshOutcome::Unknown
    );
    assert_eq!(
        store
            .list_user_sessions(&fixture.cadre_b.user_id, VISIT_TIME + Duration::hours(3))
            .await
            .expect("list")
            .len(),
        1
    );
}

/// Registers every check above as one `#[tokio::test]` of the invoking backend, each on the
/// fresh store (and its guard) that `$fresh_store()` returns, or, written `async $fresh_store`,
/// on the store that `$fresh_store(test_name).await` returns (skipped when it is `None`).
#[cfg(test)]
macro_rules! sessions_conformance_tests {
    ($($fresh_store:tt)+) => {
        $crate::store::conformance::checks_as_tests!(
            $($fresh_store)+,
            sessions,
            [
                sessions_are_found_ended_and_listed,
                refresh_tokens_rotate_and_reuse_ends_the_session,
                sessions_past_their_last_use_are_purged,
            ]
        );
    };
}
#[cfg(test)]
pub(crate) use sessions_conformance_tests;
