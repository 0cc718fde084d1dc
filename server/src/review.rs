//! Review (审核) use cases shared by the gRPC `Review` service and the console: the
//! township's queue, one visit's evidence, and approve/return; the conflict records of the
//! township and their resolution; the devices still holding unsent data. Access is checked
//! here, once, so every boundary enforces the same rules.

use fieldsync_model::access::{
    Channel, SensitiveField, channel_disclosure, disclose_household, disclose_register_value,
    writes_masked_value,
};
use fieldsync_model::codes::{ReviewState, Role};
use fieldsync_model::evidence::{EvidenceFlag, FlagNames};
use fieldsync_model::register::Stamp;
use fieldsync_model::review::{Decision, DecisionRequest};
use serde_json::Value;

use crate::AppState;
use crate::error::ServiceError;
use crate::store::{
    ConflictRecord, ConflictResolution, DeviceBacklog, HouseholdPhoto, Principal, QueueFacets,
    QueueFilter, QueueItem, QueuePosition, StoredDecision, UnvisitedHousehold, VisitDetail,
    VisitRevision,
};
use crate::text::non_empty;
use fieldsync_model::visit_diff::{VisitDiff, diff_visits};
use time::OffsetDateTime;

/// Device id of register writes made in the console (conflict resolutions): the tie-break
/// half of their stamp, and how phones and the history tell them apart.
pub const CONSOLE_WRITER_DEVICE: &str = "console";

/// Largest page of the queue one call returns.
pub const MAX_QUEUE_PAGE: u32 = 200;

/// The township a reviewer may act on, or a permission error for other roles.
pub fn reviewer_township(principal: &Principal) -> Result<&str, ServiceError> {
    match principal.role {
        Role::Township => Ok(&principal.area_id),
        _ => Err(ServiceError::PermissionDenied(
            "只有乡镇审核员可以审核走访 (only township supervisors review visits)".into(),
        )),
    }
}

/// The caller's queue of submitted visits, oldest first.
pub async fn queue(
    state: &AppState,
    principal: &Principal,
    mut filter: QueueFilter,
) -> Result<Vec<QueueItem>, ServiceError> {
    let township = reviewer_township(principal)?;
    filter.limit = filter.limit.clamp(1, MAX_QUEUE_PAGE);
    Ok(state.store.review_queue(township, filter).await?)
}

/// One visit with its evidence, if it belongs to the caller's township. A visit in another
/// township is reported as not found so that ids outside the scope reveal nothing.
pub async fn detail(
    state: &AppState,
    principal: &Principal,
    visit_id: &str,
) -> Result<VisitDetail, ServiceError> {
    let township = reviewer_township(principal)?;
    match state.store.visit_detail(visit_id).await? {
        Some(detail) if detail.household.township_id == township => Ok(detail),
        _ => Err(ServiceError::NotFound(format!(
            "visit {visit_id} not found"
        ))),
    }
}

/// [`detail`] as it leaves the server in `Review.GetVisit`: the household's phone and its
/// members' ID numbers masked, as the console shows them (DESIGN §7: a full value only
/// through the audited export). The console pages mask in their views; the review app's
/// answer is masked here, before it leaves the use case.
pub async fn detail_for_review_app(
    state: &AppState,
    principal: &Principal,
    visit_id: &str,
) -> Result<VisitDetail, ServiceError> {
    let mut detail = detail(state, principal, visit_id).await?;
    let disclosure_of =
        |field| channel_disclosure(principal.role, field, Channel::GrpcReview, false, false);
    disclose_household(
        &mut detail.household,
        disclosure_of(SensitiveField::IdNumber),
        disclosure_of(SensitiveField::Phone),
    );
    Ok(detail)
}

/// Approve or return one exact revision.
pub async fn decide(
    state: &AppState,
    principal: &Principal,
    request: DecisionRequest,
) -> Result<ReviewState, ServiceError> {
    let visit = detail(state, principal, &request.visit_id).await?;
    // Separation of duties (职责分离): the policy module decides, for the author of the
    // revision under review.
    fieldsync_model::policy::check_review_duty(
        principal.role,
        &principal.user_id,
        &visit.cadre_user_id,
    )
    .map_err(|refusal| ServiceError::PermissionDenied(refusal.to_string()))?;
    // A photo is evidence only once all its bytes arrived and verified; approving before
    // that would approve something nobody has seen. Returning is always possible.
    let still_uploading = visit
        .visit
        .photo_ids
        .iter()
        .filter(|photo_id| !visit.photo_ids_received.contains(photo_id))
        .count();
    if request.decision == Decision::Approve && still_uploading > 0 {
        return Err(ServiceError::FailedPrecondition(format!(
            "照片尚未上传完成，暂不能通过 ({still_uploading} photo(s) still uploading; approve after they arrive)"
        )));
    }
    if request.decision == Decision::Return
        && request.reasons.is_empty()
        && request.note.trim().is_empty()
    {
        return Err(ServiceError::invalid(
            "reasons",
            "退回必须说明原因 (a return needs at least one reason or a note)",
        ));
    }
    if !request.deadline.is_empty()
        && time::Date::parse(
            &request.deadline,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .is_err()
    {
        return Err(ServiceError::invalid("deadline", "must be YYYY-MM-DD"));
    }
    let decided_at = state.clock.now();
    Ok(state
        .store
        .decide(StoredDecision {
            request,
            reviewer_user_id: principal.user_id.clone(),
            decided_at,
        })
        .await?)
}

/// Households of the caller's township not yet visited in person this month (Beijing time).
pub async fn unvisited_this_month(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<UnvisitedHousehold>, ServiceError> {
    let township = reviewer_township(principal)?;
    let month = fieldsync_model::time_util::business_month(state.clock.now());
    Ok(state.store.unvisited_households(township, &month).await?)
}

/// Unresolved conflict records of the caller's township, oldest first.
pub async fn open_conflicts(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<ConflictRecord>, ServiceError> {
    let township = reviewer_township(principal)?;
    let mut conflicts = state.store.open_conflicts(township).await?;
    for conflict in &mut conflicts {
        mask_conflict_values(principal.role, conflict);
    }
    Ok(conflicts)
}

/// The values of a conflict over a phone or an ID number as the console shows them: masked
/// (`138****2222`), as on every other console page (DESIGN §7). A supervisor settles it by
/// choosing 值 A or 值 B, which [`resolve_conflict`] reads from the store, not from here.
fn mask_conflict_values(role: Role, conflict: &mut ConflictRecord) {
    let disclosure_of = |field| channel_disclosure(role, field, Channel::ConsolePage, false, false);
    let values = [&mut conflict.first.value, &mut conflict.second.value]
        .into_iter()
        .chain(conflict.current.as_mut().map(|write| &mut write.value));
    for value in values {
        disclose_register_value(&conflict.field, disclosure_of, value);
    }
}

/// Which value a reviewer chose for a conflict.
#[derive(Debug, Clone, PartialEq)]
pub enum ConflictChoice {
    /// The write with the smaller stamp.
    First,
    /// The write with the greater stamp.
    Second,
    /// A value the reviewer typed (already converted to the register's JSON).
    Custom(Value),
}

/// Resolve one open conflict of the caller's township. The choice becomes an ordinary
/// register write by the console, stamped with the server HLC (past every stored write),
/// so it wins, closes every open conflict of the register, and syncs down to the phones.
pub async fn resolve_conflict(
    state: &AppState,
    principal: &Principal,
    conflict_key: &str,
    choice: ConflictChoice,
) -> Result<Stamp, ServiceError> {
    let township = reviewer_township(principal)?.to_owned();
    let not_found = || ServiceError::NotFound(format!("conflict {conflict_key} not found"));
    let conflict = state
        .store
        .open_conflicts(&township)
        .await?
        .into_iter()
        .find(|conflict| conflict.conflict_key == conflict_key)
        .ok_or_else(not_found)?;
    let value = match choice {
        // The list shows phones and ID numbers masked; a masked value typed back (or
        // copied from the list) must not overwrite the real one, as on a phone's push.
        ConflictChoice::Custom(Value::String(text))
            if writes_masked_value(&conflict.field, &text) =>
        {
            return Err(ServiceError::invalid(
                "custom_value",
                "这是打码后的值，请填写完整的值 (a masked value cannot be the settled value)",
            ));
        }
        ConflictChoice::Custom(value) => value,
        ConflictChoice::First => conflict.first.value,
        ConflictChoice::Second => conflict.second.value,
    };
    let stamp = state
        .store
        .resolve_conflict(ConflictResolution {
            conflict_key: conflict_key.to_owned(),
            township_id: township,
            value,
            reviewer_user_id: principal.user_id.clone(),
            stamp: Stamp {
                hlc: state.tick_hlc(),
                device_id: CONSOLE_WRITER_DEVICE.to_owned(),
            },
            resolved_at: state.clock.now(),
        })
        .await?;
    // The store may have moved the stamp past a write the server HLC had not seen (after a
    // restart); keep the server clock ahead of it.
    state.observe_hlc(stamp.hlc);
    Ok(stamp)
}

/// Devices of the caller's township's cadres, oldest unsent data first.
pub async fn device_backlog(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<DeviceBacklog>, ServiceError> {
    let township = reviewer_township(principal)?;
    Ok(state.store.device_backlog(township).await?)
}

// ----- the review loop: queue filters, next item, correction diff, photo history -----

/// Longest wait the age filter accepts, in days (ten years: anything larger is a typo).
pub const MAX_AGE_FILTER_DAYS: u32 = 3_650;

/// Waits offered in the queue's filter bar (days): the township reviews flagged visits
/// within 7 days (domain.md §2.3).
pub const AGE_FILTER_CHOICES: &[u32] = &[1, 3, 7];

/// The queue's filters as the console and its JSON twin take them
/// (`?village=ID&cadre=USER_ID&flag=CODE&age=DAYS`); every one optional, all combinable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueFilters {
    pub village_id: Option<String>,
    pub cadre_user_id: Option<String>,
    pub flag: Option<String>,
    /// Waiting at least this many days since the latest revision arrived.
    pub min_age_days: Option<u32>,
}

impl QueueFilters {
    /// Read the query's values; empty values mean "not filtering". A malformed age is the
    /// caller's mistake (`InvalidArgument` on `age`); unknown ids simply match nothing.
    pub fn parse(
        village: Option<&str>,
        cadre: Option<&str>,
        flag: Option<&str>,
        age: Option<&str>,
    ) -> Result<Self, ServiceError> {
        let min_age_days = match non_empty(age) {
            None => None,
            Some(text) => match text.parse::<u32>() {
                Ok(days) if days <= MAX_AGE_FILTER_DAYS => Some(days),
                _ => {
                    return Err(ServiceError::invalid(
                        "age",
                        format!("等待天数须为 0 到 {MAX_AGE_FILTER_DAYS} 的整数 (got {text:?})"),
                    ));
                }
            },
        };
        Ok(Self {
            village_id: non_empty(village),
            cadre_user_id: non_empty(cadre),
            flag: non_empty(flag),
            min_age_days: min_age_days.filter(|days| *days > 0),
        })
    }

    /// True when nothing is filtered.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The store's filter for one page, with "waiting ≥ N days" as an instant from `now`.
    pub fn to_store_filter(&self, now: OffsetDateTime, limit: u32) -> QueueFilter {
        QueueFilter {
            village_id: self.village_id.clone(),
            limit,
            offset: 0,
            flag: self.flag.clone(),
            cadre_user_id: self.cadre_user_id.clone(),
            submitted_at_or_before: self.min_age_days.map(|days| age_cutoff(now, days)),
            after: None,
        }
    }

    /// The filters as a query string (`village=…&cadre=…`), empty when none; carried from
    /// the queue into the submission page so "next" follows the same list.
    pub fn query_string(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(village) = &self.village_id {
            query.append_pair("village", village);
        }
        if let Some(cadre) = &self.cadre_user_id {
            query.append_pair("cadre", cadre);
        }
        if let Some(flag) = &self.flag {
            query.append_pair("flag", flag);
        }
        if let Some(days) = self.min_age_days {
            query.append_pair("age", &days.to_string());
        }
        query.finish()
    }
}

/// The instant "waiting ≥ `days` days" starts at: a visit submitted at or before it has
/// waited that long at `now`.
pub fn age_cutoff(now: OffsetDateTime, days: u32) -> OffsetDateTime {
    now - time::Duration::days(i64::from(days))
}

/// Whole days a visit submitted at `submitted_at` has waited at `now` (0 for the future).
pub fn days_waiting(submitted_at: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (now - submitted_at).whole_days().max(0)
}

/// One page of the filtered queue, oldest first.
pub async fn filtered_queue(
    state: &AppState,
    principal: &Principal,
    filters: &QueueFilters,
) -> Result<Vec<QueueItem>, ServiceError> {
    queue(
        state,
        principal,
        filters.to_store_filter(state.clock.now(), MAX_QUEUE_PAGE),
    )
    .await
}

/// The counts behind the filter bar: per village, cadre, flag and offered wait.
pub async fn queue_facets(
    state: &AppState,
    principal: &Principal,
    filters: &QueueFilters,
) -> Result<QueueFacets, ServiceError> {
    let township = reviewer_township(principal)?;
    let now = state.clock.now();
    let cutoffs = AGE_FILTER_CHOICES
        .iter()
        .map(|days| age_cutoff(now, *days))
        .collect();
    Ok(state
        .store
        .review_queue_facets(
            township,
            filters.to_store_filter(now, MAX_QUEUE_PAGE),
            cutoffs,
        )
        .await?)
}

/// The visit after `current` in the filtered queue's order, wrapping round to the first
/// waiting item; `None` when nothing else waits. `current` need not be waiting any more
/// (it was just decided), so its place is given by its queue position.
pub async fn next_in_queue(
    state: &AppState,
    principal: &Principal,
    filters: &QueueFilters,
    current: &QueuePosition,
) -> Result<Option<String>, ServiceError> {
    let now = state.clock.now();
    let after = queue(
        state,
        principal,
        QueueFilter {
            limit: 1,
            after: Some(current.clone()),
            ..filters.to_store_filter(now, 1)
        },
    )
    .await?;
    let next = match after.into_iter().next() {
        Some(item) => Some(item),
        None => queue(state, principal, filters.to_store_filter(now, 2))
            .await?
            .into_iter()
            .find(|item| item.visit_id != current.visit_id),
    };
    Ok(next.map(|item| item.visit_id))
}

/// What a correction changed: the returned revision it supersedes, with that decision's
/// reasons, note and deadline, and the field-by-field difference to the correction.
#[derive(Debug, Clone, PartialEq)]
pub struct Correction {
    pub returned: VisitRevision,
    pub diff: VisitDiff,
}

/// The correction shown with a visit whose latest revision supersedes an earlier one;
/// `None` for a first submission. The caller already passed the access check for `detail`.
pub async fn correction(
    state: &AppState,
    detail: &VisitDetail,
) -> Result<Option<Correction>, ServiceError> {
    let visit = &detail.visit;
    if visit.supersedes_revision == 0 {
        return Ok(None);
    }
    let Some(returned) = state
        .store
        .visit_revision(&visit.visit_id, visit.supersedes_revision)
        .await?
    else {
        return Ok(None);
    };
    let diff = diff_visits(&returned.visit, visit);
    Ok(Some(Correction { returned, diff }))
}

/// How many months of earlier photos the submission page shows beside this month's.
pub const PHOTO_HISTORY_MONTHS: u32 = 3;
/// Most earlier photos the submission page shows.
pub const PHOTO_HISTORY_LIMIT: u32 = 36;

/// `month` (YYYY-MM) and the `count` months before it, newest first.
pub fn month_and_previous(month: &str, count: u32) -> Vec<String> {
    let Some((year, month_number)) = month
        .split_once('-')
        .and_then(|(year, number)| Some((year.parse::<i32>().ok()?, number.parse::<u32>().ok()?)))
        .filter(|(_, number)| (1..=12).contains(number))
    else {
        return vec![month.to_owned()];
    };
    let index = year * 12 + (month_number as i32 - 1);
    (0..=count as i32)
        .map(|back| {
            let shifted = index - back;
            format!(
                "{:04}-{:02}",
                shifted.div_euclid(12),
                shifted.rem_euclid(12) + 1
            )
        })
        .collect()
}

/// Received photos of the household's other visits this month and in the previous
/// [`PHOTO_HISTORY_MONTHS`] months (by the visit's check-in month), newest first.
pub async fn photo_history(
    state: &AppState,
    detail: &VisitDetail,
) -> Result<Vec<HouseholdPhoto>, ServiceError> {
    let month = fieldsync_model::time_util::business_month(detail.visit.checkin_at);
    Ok(state
        .store
        .household_photo_history(
            &detail.household.household_id,
            &detail.visit.visit_id,
            month_and_previous(&month, PHOTO_HISTORY_MONTHS),
            PHOTO_HISTORY_LIMIT,
        )
        .await?)
}

/// The names a flag text uses for the photos and visits it mentions
/// ([`fieldsync_model::evidence::FlagNames`]): this visit's photos by position (照片1…, as
/// the page and the location plot number them), this visit as 本次走访, and other visits of
/// the reviewer's township by household name, date and (when another cadre's) cadre name,
/// with their photos by position. A visit outside the township keeps its generic name, so
/// a flag never reveals a household the reviewer may not see.
pub async fn flag_names(
    state: &AppState,
    principal: &Principal,
    detail: &VisitDetail,
) -> Result<FlagNames, ServiceError> {
    let township = reviewer_township(principal)?;
    let mut names = FlagNames::default();
    for (index, photo_id) in detail.visit.photo_ids.iter().enumerate() {
        names
            .photos
            .entry(photo_id.clone())
            .or_insert_with(|| FlagNames::photo_name(index + 1));
    }
    names
        .visits
        .insert(detail.visit.visit_id.clone(), "本次走访".to_owned());
    let mut others: Vec<&str> = Vec::new();
    for flag in detail.flags.iter().flatten() {
        match flag {
            EvidenceFlag::ImpossibleTravel {
                previous_visit_id,
                next_visit_id,
                ..
            } => others.extend([previous_visit_id.as_str(), next_visit_id.as_str()]),
            EvidenceFlag::PhotoReused { other_visit_id, .. }
            | EvidenceFlag::PhotoNearDuplicate { other_visit_id, .. } => {
                others.push(other_visit_id)
            }
            _ => {}
        }
    }
    others.sort_unstable();
    others.dedup();
    for visit_id in others {
        if names.visits.contains_key(visit_id) {
            continue;
        }
        let Some(other) = state.store.visit_detail(visit_id).await? else {
            continue;
        };
        if other.household.township_id != township {
            continue;
        }
        let cadre =
            (other.cadre_user_id != detail.cadre_user_id).then_some(other.cadre_name.as_str());
        names.visits.insert(
            visit_id.to_owned(),
            FlagNames::visit_name(&other.household.head_name, other.visit.checkin_at, cadre),
        );
        for (index, photo_id) in other.visit.photo_ids.iter().enumerate() {
            names
                .photos
                .entry(photo_id.clone())
                .or_insert_with(|| FlagNames::photo_name(index + 1));
        }
    }
    Ok(names)
}

/// EXIF GPS positions (WGS-84) of the visit's received photos, numbered 1.. in the order
/// the page lists the photos.
pub async fn photo_gps_points(
    state: &AppState,
    detail: &VisitDetail,
) -> Result<Vec<(usize, f64, f64)>, ServiceError> {
    let mut points = Vec::new();
    for (index, photo_id) in detail.visit.photo_ids.iter().enumerate() {
        let Some(record) = detail
            .photos
            .iter()
            .find(|photo| &photo.photo_id == photo_id)
        else {
            continue;
        };
        if !detail.photo_ids_received.contains(photo_id) {
            continue;
        }
        if let Some(meta) = state.store.photo_meta(&record.sha256).await?
            && let Some((lat, lon)) = meta.exif_gps
        {
            points.push((index + 1, lat, lon));
        }
    }
    Ok(points)
}

#[cfg(test)]
mod review_loop_tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn queue_filters_parse_trim_and_refuse_bad_ages() {
        let filters =
            QueueFilters::parse(Some(" v-1 "), Some(""), Some("gps_far"), Some("3")).expect("ok");
        assert_eq!(filters.village_id.as_deref(), Some("v-1"));
        assert_eq!(filters.cadre_user_id, None);
        assert_eq!(filters.min_age_days, Some(3));
        assert_eq!(filters.query_string(), "village=v-1&flag=gps_far&age=3");
        assert!(
            QueueFilters::parse(None, None, None, Some("0"))
                .expect("0")
                .is_empty()
        );
        for bad in ["-1", "abc", "3.5", "99999"] {
            let error = QueueFilters::parse(None, None, None, Some(bad)).expect_err(bad);
            assert!(
                matches!(&error, ServiceError::InvalidArgument { field, .. } if field == "age"),
                "{error:?}"
            );
        }
    }

    #[test]
    fn ages_count_whole_days_from_the_injected_now() {
        let now = datetime!(2026-03-10 02:00 UTC);
        assert_eq!(age_cutoff(now, 3), datetime!(2026-03-07 02:00 UTC));
        assert_eq!(days_waiting(datetime!(2026-03-07 02:00 UTC), now), 3);
        assert_eq!(days_waiting(datetime!(2026-03-07 02:01 UTC), now), 2);
        assert_eq!(days_waiting(datetime!(2026-03-11 00:00 UTC), now), 0);
    }

    #[test]
    fn previous_months_cross_the_year() {
        assert_eq!(
            month_and_previous("2026-02", 3),
            ["2026-02", "2026-01", "2025-12", "2025-11"]
        );
        assert_eq!(month_and_previous("2026-12", 1), ["2026-12", "2026-11"]);
        assert_eq!(month_and_previous("garbage", 3), ["garbage"]);
    }
}
