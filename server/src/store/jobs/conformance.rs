//! Conformance checks of [`crate::store::jobs::JobsStore`]: a lease is one holder's until it
//! expires, its holder may renew it, and jobs are leased apart. A backend runs them all with
//! one `jobs_conformance_tests!` line.

use time::Duration;

use crate::store::Store;
use crate::store::conformance::VISIT_TIME;

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
            [a_lease_is_one_holders_until_it_expires]
        );
    };
}
#[cfg(test)]
pub(crate) use jobs_conformance_tests;
