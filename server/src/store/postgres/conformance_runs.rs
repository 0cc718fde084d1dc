//! Every area's conformance checks against PostgreSQL, one line per area, each check on a
//! fresh schema of this test binary's database ([`super::testing::fresh_store`]). Without
//! `FIELDSYNC_TEST_DATABASE_URL` each check prints that it was skipped.

use super::testing::fresh_store;

mod accounts {
    use super::fresh_store;
    crate::store::accounts::conformance::accounts_conformance_tests!(async fresh_store);
}
mod areas {
    use super::fresh_store;
    crate::store::areas::conformance::areas_conformance_tests!(async fresh_store);
}
mod export {
    use super::fresh_store;
    crate::store::export::conformance::export_conformance_tests!(async fresh_store);
}
mod households {
    use super::fresh_store;
    crate::store::households::conformance::households_conformance_tests!(async fresh_store);
}
mod jobs {
    use super::fresh_store;
    crate::store::jobs::conformance::jobs_conformance_tests!(async fresh_store);
}
mod ledger {
    use super::fresh_store;
    crate::store::ledger::conformance::ledger_conformance_tests!(async fresh_store);
}
mod media {
    use super::fresh_store;
    crate::store::media::conformance::media_conformance_tests!(async fresh_store);
}
mod pairings {
    use super::fresh_store;
    crate::store::pairings::conformance::pairings_conformance_tests!(async fresh_store);
}
mod review {
    use super::fresh_store;
    crate::store::review::conformance::review_conformance_tests!(async fresh_store);
}
mod roster {
    use super::fresh_store;
    crate::store::roster::conformance::roster_conformance_tests!(async fresh_store);
}
mod search {
    use super::fresh_store;
    crate::store::search::conformance::search_conformance_tests!(async fresh_store);
}
mod sessions {
    use super::fresh_store;
    crate::store::sessions::conformance::sessions_conformance_tests!(async fresh_store);
}
mod sync {
    use super::fresh_store;
    crate::store::sync::conformance::sync_conformance_tests!(async fresh_store);
}
