//! The difference between two revisions of a visit, field by field: what a cadre changed
//! when correcting a returned visit (整改后重新提交), so the supervisor sees old → new beside
//! the reasons the visit was returned for. Also the Chinese names of the visit's fields,
//! which return reasons point at (`ReturnReason::field`) and which the phone and the console
//! show.

use time::OffsetDateTime;

use crate::codes::CodeList;
use crate::time_util::beijing_minutes;
use crate::visit::{CheckResult, GpsFix, Visit};

/// The visit fields a reason can point at, with their Chinese names, in the order the
/// console shows a visit. The names are the `Visit` field names (the protocol's spelling).
pub const VISIT_FIELDS: &[(&str, &str)] = &[
    ("mode", "走访方式"),
    ("exception_reason", "非入户原因"),
    ("visit_type", "走访类型"),
    ("checkin_at", "入户时间"),
    ("checkout_at", "离开时间"),
    ("observed_situation", "生产生活情况"),
    ("plan_progress", "帮扶计划实施情况"),
    ("problems", "存在问题"),
    ("actions", "帮扶措施"),
    ("needs", "农户需求"),
    ("policies_explained", "宣讲政策"),
    ("wellbeing", "两不愁三保障"),
    ("proposed_changes", "信息变更申请"),
    ("gps", "定位"),
    ("photo_ids", "走访照片"),
    ("household_id", "走访对象"),
];

/// Chinese name of a visit field ("observed_situation" → "生产生活情况"); "整体" (the visit as
/// a whole) for an empty name, and the name itself for one this version does not know.
pub fn visit_field_label(field: &str) -> &str {
    if field.is_empty() {
        return "整体";
    }
    VISIT_FIELDS
        .iter()
        .find(|(known, _)| *known == field)
        .map_or(field, |(_, label)| label)
}

/// One field whose value differs between two revisions, as text a person reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// The `Visit` field name (see [`VISIT_FIELDS`]); return reasons name the same fields.
    pub field: &'static str,
    /// Chinese name of what changed; for a 两不愁三保障 item, the item ("两不愁三保障：不愁吃").
    pub label_zh: String,
    /// The value in the older revision ("（空）" when empty).
    pub old: String,
    /// The value in the newer revision.
    pub new: String,
}

/// What changed from one revision to a later one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VisitDiff {
    /// Changed fields in [`VISIT_FIELDS`] order.
    pub changes: Vec<FieldChange>,
    /// Photo ids in the newer revision only, in its order.
    pub photos_added: Vec<String>,
    /// Photo ids in the older revision only, in its order.
    pub photos_removed: Vec<String>,
}

impl VisitDiff {
    /// True when the two revisions have the same content.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.photos_added.is_empty() && self.photos_removed.is_empty()
    }

    /// True when the field changed (for photos: one was added or removed).
    pub fn touches(&self, field: &str) -> bool {
        if field == "photo_ids" {
            return !self.photos_added.is_empty() || !self.photos_removed.is_empty();
        }
        self.changes.iter().any(|change| change.field == field)
    }
}

/// Shown for an empty value, so "nothing → something" reads as a change.
pub const EMPTY_VALUE: &str = "（空）";

fn text_or_empty(text: &str) -> String {
    if text.trim().is_empty() {
        EMPTY_VALUE.to_owned()
    } else {
        text.to_owned()
    }
}

fn time_text(instant: OffsetDateTime) -> String {
    format!("{}（北京时间）", beijing_minutes(instant))
}

fn check_text(result: CheckResult) -> &'static str {
    match result {
        CheckResult::Pass => "达标",
        CheckResult::Fail => "不达标",
        CheckResult::NotChecked => "未检查",
    }
}

/// A fix as "纬度, 经度（坐标系，精度 N 米）", plus the mock flag when set.
fn gps_text(gps: Option<&GpsFix>) -> String {
    match gps {
        None => "无定位".to_owned(),
        Some(gps) => format!(
            "{:.6}, {:.6}（{}，精度 {:.0} 米{}）",
            gps.lat,
            gps.lon,
            gps.crs.label_zh(),
            gps.accuracy_m,
            if gps.is_mock { "，模拟定位" } else { "" }
        ),
    }
}

/// Field-by-field difference from `old` to `new` (normally the returned revision and its
/// correction). Ids, revision numbers and the device's save time are bookkeeping, not
/// content, and are not compared.
pub fn diff_visits(old: &Visit, new: &Visit) -> VisitDiff {
    let mut changes = Vec::new();
    let mut push = |field: &'static str, label: String, old: String, new: String| {
        if old != new {
            changes.push(FieldChange {
                field,
                label_zh: label,
                old,
                new,
            });
        }
    };
    let label = |field: &'static str| visit_field_label(field).to_owned();
    push(
        "mode",
        label("mode"),
        old.mode.label_zh().to_owned(),
        new.mode.label_zh().to_owned(),
    );
    let reason = |visit: &Visit| {
        visit
            .exception_reason
            .map_or(EMPTY_VALUE.to_owned(), |reason| {
                reason.label_zh().to_owned()
            })
    };
    push(
        "exception_reason",
        label("exception_reason"),
        reason(old),
        reason(new),
    );
    push(
        "visit_type",
        label("visit_type"),
        old.visit_type.label_zh().to_owned(),
        new.visit_type.label_zh().to_owned(),
    );
    push(
        "checkin_at",
        label("checkin_at"),
        time_text(old.checkin_at),
        time_text(new.checkin_at),
    );
    push(
        "checkout_at",
        label("checkout_at"),
        time_text(old.checkout_at),
        time_text(new.checkout_at),
    );
    for (field, old_text, new_text) in [
        (
            "observed_situation",
            &old.observed_situation,
            &new.observed_situation,
        ),
        ("plan_progress", &old.plan_progress, &new.plan_progress),
        ("problems", &old.problems, &new.problems),
        ("actions", &old.actions, &new.actions),
        ("needs", &old.needs, &new.needs),
    ] {
        push(
            field,
            label(field),
            text_or_empty(old_text),
            text_or_empty(new_text),
        );
    }
    push(
        "policies_explained",
        label("policies_explained"),
        text_or_empty(&old.policies_explained.join("、")),
        text_or_empty(&new.policies_explained.join("、")),
    );
    for ((name, old_result), (_, new_result)) in
        old.wellbeing.items().into_iter().zip(new.wellbeing.items())
    {
        push(
            "wellbeing",
            format!("两不愁三保障：{name}"),
            check_text(old_result).to_owned(),
            check_text(new_result).to_owned(),
        );
    }
    push(
        "wellbeing",
        "两不愁三保障：说明".to_owned(),
        text_or_empty(&old.wellbeing.note),
        text_or_empty(&new.wellbeing.note),
    );
    let proposed = |visit: &Visit| {
        text_or_empty(
            &visit
                .proposed_changes
                .iter()
                .map(|change| {
                    format!(
                        "{} {}：{} → {}（{}）",
                        change.target,
                        change.field,
                        change.old_value,
                        change.new_value,
                        change.reason
                    )
                })
                .collect::<Vec<_>>()
                .join("；"),
        )
    };
    push(
        "proposed_changes",
        label("proposed_changes"),
        proposed(old),
        proposed(new),
    );
    push(
        "gps",
        label("gps"),
        gps_text(old.gps.as_ref()),
        gps_text(new.gps.as_ref()),
    );
    VisitDiff {
        changes,
        photos_added: new
            .photo_ids
            .iter()
            .filter(|id| !old.photo_ids.contains(id))
            .cloned()
            .collect(),
        photos_removed: old
            .photo_ids
            .iter()
            .filter(|id| !new.photo_ids.contains(id))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::{Crs, VisitMode, VisitType};
    use crate::visit::WellbeingCheck;
    use time::macros::datetime;

    fn returned_visit() -> Visit {
        Visit {
            visit_id: "0192f0c4-0000-7000-8000-000000000001".into(),
            revision: 1,
            supersedes_revision: 0,
            household_id: "h-1".into(),
            mode: VisitMode::InPerson,
            exception_reason: None,
            visit_type: VisitType::Routine,
            checkin_at: datetime!(2026-03-10 02:00 UTC),
            checkout_at: datetime!(2026-03-10 02:40 UTC),
            observed_situation: "户主在家。".into(),
            plan_progress: "养羊项目正常。".into(),
            problems: String::new(),
            actions: String::new(),
            needs: String::new(),
            policies_explained: vec!["医保政策".into()],
            wellbeing: WellbeingCheck::default(),
            proposed_changes: Vec::new(),
            photo_ids: vec!["p-1".into(), "p-2".into()],
            gps: Some(GpsFix {
                lat: 34.1,
                lon: 108.2,
                crs: Crs::Wgs84,
                accuracy_m: 8.0,
                provider: None,
                is_mock: false,
                fix_time: None,
            }),
            recorded_at_device: datetime!(2026-03-10 02:41 UTC),
        }
    }

    #[test]
    fn identical_content_has_no_difference_whatever_the_bookkeeping() {
        let old = returned_visit();
        let mut new = old.clone();
        new.revision = 2;
        new.supersedes_revision = 1;
        new.recorded_at_device = datetime!(2026-03-12 09:00 UTC);
        let diff = diff_visits(&old, &new);
        assert!(diff.is_empty(), "{diff:?}");
        assert!(!diff.touches("observed_situation"));
    }

    #[test]
    fn changed_text_fields_read_old_to_new_in_field_order() {
        let old = returned_visit();
        let mut new = old.clone();
        new.observed_situation = "户主在家，本季度务工收入增加约3000元。".into();
        new.problems = "屋顶漏雨".into();
        new.wellbeing.housing_safety = CheckResult::Fail;
        let diff = diff_visits(&old, &new);
        let fields: Vec<&str> = diff.changes.iter().map(|change| change.field).collect();
        assert_eq!(fields, ["observed_situation", "problems", "wellbeing"]);
        assert_eq!(diff.changes[0].label_zh, "生产生活情况");
        assert_eq!(diff.changes[0].old, "户主在家。");
        assert!(diff.changes[0].new.contains("3000元"));
        assert_eq!(diff.changes[1].old, EMPTY_VALUE, "empty reads as （空）");
        assert_eq!(diff.changes[2].label_zh, "两不愁三保障：住房安全有保障");
        assert_eq!(
            (diff.changes[2].old.as_str(), diff.changes[2].new.as_str()),
            ("未检查", "不达标")
        );
        assert!(diff.touches("problems"));
    }

    #[test]
    fn photos_added_and_removed_keep_their_order() {
        let old = returned_visit();
        let mut new = old.clone();
        new.photo_ids = vec!["p-2".into(), "p-3".into(), "p-4".into()];
        let diff = diff_visits(&old, &new);
        assert_eq!(diff.photos_added, ["p-3", "p-4"]);
        assert_eq!(diff.photos_removed, ["p-1"]);
        assert!(diff.changes.is_empty());
        assert!(diff.touches("photo_ids"));
    }

    #[test]
    fn a_new_fix_and_times_are_shown_in_words_and_beijing_time() {
        let old = returned_visit();
        let mut new = old.clone();
        new.gps = None;
        new.checkin_at = datetime!(2026-03-10 03:00 UTC);
        let diff = diff_visits(&old, &new);
        let checkin = &diff.changes[0];
        assert_eq!(checkin.field, "checkin_at");
        assert_eq!(checkin.old, "2026-03-10 10:00（北京时间）");
        assert_eq!(checkin.new, "2026-03-10 11:00（北京时间）");
        let gps = diff.changes.iter().find(|change| change.field == "gps");
        let gps = gps.expect("gps change");
        assert!(gps.old.starts_with("34.100000, 108.200000"), "{}", gps.old);
        assert_eq!(gps.new, "无定位");
    }

    #[test]
    fn field_labels_cover_reason_fields_and_fall_back() {
        assert_eq!(visit_field_label("observed_situation"), "生产生活情况");
        assert_eq!(visit_field_label("photo_ids"), "走访照片");
        assert_eq!(visit_field_label("gps"), "定位");
        assert_eq!(visit_field_label(""), "整体");
        assert_eq!(visit_field_label("future_field"), "future_field");
    }
}
