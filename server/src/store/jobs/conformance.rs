//! Conformance checks of [`crate::store::jobs::JobsStore`]: a lease is one holder's until it
//! expires, its holder may renew it, and jobs are leased apart; an import job is written
//! only by its runner, read only in its county, claimed for an apply once, sealed at rest,
//! and purged by age. A backend runs them all with one `jobs_conformance_tests!` line.

use time::Duration;

use crate::store::Store;
use crate::store::conformance::VISIT_TIME;
use crate::store::jobs::{ImportJobRecord, ImportJobWrite};

fn ready_job(job_id: &str, runner: &str) -> ImportJobRecord {
    ImportJobRecord {
        job_id: job_id.to_owned(),
        kind: "roster".to_owned(),
        county_id: "county-1".to_owned(),
        runner: runner.to_owned(),
        phase: "ready".to_owned(),
        created_at: VISIT_TIME,
        heartbeat_at: VISIT_TIME,
        view_json: r#"{"file_name":"花名册.xlsx","id_number":"110101199003070011"}"#.to_owned(),
        plan_json: Some(r#"{"new_households":[]}"#.to_owned()),
    }
}

pub async fn an_import_job_is_read_back_in_its_county_and_kind_only(store: &dyn Store) {
    let job = ready_job("job-1", "runner-a");
    assert_eq!(
        store.save_import_job(&job).await.expect("insert"),
        ImportJobWrite::Written
    );
    let read = store
        .import_job("roster", "county-1", "job-1")
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(read, job, "every field comes back, the sealed ones opened");
    for (kind, county, job_id) in [
        ("areas", "county-1", "job-1"),
        ("roster", "county-2", "job-1"),
        ("roster", "county-1", "job-2"),
    ] {
        assert_eq!(
            store.import_job(kind, county, job_id).await.expect("read"),
            None,
            "{kind} {county} {job_id}"
        );
    }
}

pub async fn only_the_runner_rewrites_an_import_job(store: &dyn Store) {
    let mut job = ready_job("job-1", "runner-a");
    job.phase = "validating".to_owned();
    job.plan_json = None;
    store.save_import_job(&job).await.expect("insert");
    let mut progress = job.clone();
    progress.heartbeat_at = VISIT_TIME + Duration::seconds(1);
    progress.view_json = r#"{"rows_read":500}"#.to_owned();
    assert_eq!(
        store.save_import_job(&progress).await.expect("progress"),
        ImportJobWrite::Written
    );
    let mut intruder = progress.clone();
    intruder.runner = "runner-b".to_owned();
    intruder.phase = "failed".to_owned();
    assert_eq!(
        store.save_import_job(&intruder).await.expect("refused"),
        ImportJobWrite::NotOurs
    );
    let read = store
        .import_job("roster", "county-1", "job-1")
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(read, progress, "the other runner's write changed nothing");
}

pub async fn a_ready_import_job_is_claimed_once_and_its_plan_leaves_the_store(store: &dyn Store) {
    let mut job = ready_job("job-1", "runner-a");
    job.phase = "comparing".to_owned();
    job.plan_json = None;
    store.save_import_job(&job).await.expect("insert");
    let now = VISIT_TIME + Duration::seconds(5);
    assert_eq!(
        store
            .claim_import_apply("roster", "county-1", "job-1", "runner-b", now)
            .await
            .expect("not ready"),
        None,
        "a job still comparing cannot be applied"
    );
    let ready = ready_job("job-1", "runner-a");
    store.save_import_job(&ready).await.expect("ready");
    assert_eq!(
        store
            .claim_import_apply("roster", "county-2", "job-1", "runner-b", now)
            .await
            .expect("other county"),
        None,
        "another county's administrator cannot apply it"
    );
    let claimed = store
        .claim_import_apply("roster", "county-1", "job-1", "runner-b", now)
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(
        claimed.plan_json, ready.plan_json,
        "the plan is handed over"
    );
    assert_eq!(
        (claimed.phase.as_str(), claimed.runner.as_str()),
        ("applying", "runner-b")
    );
    assert_eq!(claimed.heartbeat_at, now);
    assert_eq!(
        store
            .claim_import_apply("roster", "county-1", "job-1", "runner-c", now)
            .await
            .expect("second claim"),
        None,
        "a second apply of the same dry run gets nothing"
    );
    let stored = store
        .import_job("roster", "county-1", "job-1")
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.plan_json, None, "the plan is no longer stored");
    assert_eq!(stored.phase, "applying");
    assert_eq!(
        store.save_import_job(&ready).await.expect("old runner"),
        ImportJobWrite::NotOurs,
        "the dry run's runner can no longer rewrite the claimed job"
    );
}

pub async fn import_jobs_are_purged_by_age(store: &dyn Store) {
    let old = ready_job("job-old", "runner-a");
    let mut new = ready_job("job-new", "runner-a");
    new.created_at = VISIT_TIME + Duration::days(8);
    store.save_import_job(&old).await.expect("old");
    store.save_import_job(&new).await.expect("new");
    assert_eq!(
        store
            .purge_import_jobs(VISIT_TIME + Duration::days(1))
            .await
            .expect("purge"),
        1
    );
    assert_eq!(
        store
            .import_job("roster", "county-1", "job-old")
            .await
            .expect("read"),
        None
    );
    assert!(
        store
            .import_job("roster", "county-1", "job-new")
            .await
            .expect("read")
            .is_some()
    );
}

pub async fn a_lease_is_one_holders_until_it_expires(store: &dyn Store) {
    let now = VISIT_TIME;
    let until = now + Duration::hours(23);
    assert!(
        store
            .take_job_lease("compaction", "replica-a", now, until)
            .await
            .expect("take")
    );
    assert!(
        !store
            .take_job_lease("compaction", "replica-b", now + Duration::hours(1), until)
            .await
            .expect("refused while held"),
        "another replica may not take a lease that has not expired"
    );
    assert!(
        store
            .take_job_lease(
                "compaction",
                "replica-a",
                now + Duration::hours(2),
                until + Duration::hours(2)
            )
            .await
            .expect("renew"),
        "the holder renews its own lease"
    );
    assert!(
        store
            .take_job_lease(
                "upload-expiry",
                "replica-b",
                now + Duration::hours(2),
                until
            )
            .await
            .expect("another job"),
        "each job has its own lease"
    );
    let after_expiry = until + Duration::hours(2);
    assert!(
        store
            .take_job_lease(
                "compaction",
                "replica-b",
                after_expiry,
                after_expiry + Duration::hours(23)
            )
            .await
            .expect("take over"),
        "an expired lease is taken over"
    );
    assert!(
        !store
            .take_job_lease(
                "compaction",
                "replica-a",
                after_expiry + Duration::minutes(1),
                after_expiry + Duration::hours(23)
            )
            .await
            .expect("refused to the old holder"),
        "the old holder lost it"
    );
}

/// Registers every check above as one `#[tokio::test]` of the invoking backend, each on the
/// fresh store (and its guard) that `$fresh_store()` returns, or, written `async $fresh_store`,
/// on the store that `$fresh_store(test_name).await` returns (skipped when it is `None`).
#[cfg(test)]
macro_rules! jobs_conformance_tests {
    ($($fresh_store:tt)+) => {
        $crate::store::conformance::checks_as_tests!(
            $($fresh_store)+,
            jobs,
            [
                a_lease_is_one_holders_until_it_expires,
                an_import_job_is_read_back_in_its_county_and_kind_only,
                only_the_runner_rewrites_an_import_job,
                a_ready_import_job_is_claimed_once_and_its_plan_leaves_the_store,
                import_jobs_are_purged_by_age
            ]
        );
    };
}
#[cfg(test)]
pub(crate) use jobs_conformance_tests;
