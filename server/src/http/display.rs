//! Small pure formatting helpers shared by the console's pages: Beijing-time timestamps,
//! distances and the Chinese words for tri-state checks. Kept free of HTML so they are easy
//! to test.

use fieldsync_model::time_util::BEIJING;
use fieldsync_model::visit::CheckResult;
use time::OffsetDateTime;

pub use fieldsync_model::time_util::beijing_minutes;

/// `YYYY-MM-DD HH:MM` in Beijing time, or a dash when the instant is unknown.
pub fn beijing_minutes_or_dash(instant: Option<OffsetDateTime>) -> String {
    instant.map_or_else(|| "—".to_owned(), beijing_minutes)
}

/// The business month (`YYYY年MM月`) an instant falls in, Beijing time.
pub fn beijing_month_label(instant: OffsetDateTime) -> String {
    let local = instant.to_offset(BEIJING);
    format!("{:04}年{:02}月", local.year(), u8::from(local.month()))
}

/// Whole metres, or a dash when the distance could not be computed (no fix, no household
/// location, or mismatched coordinate systems).
pub fn metres(distance_m: Option<f64>) -> String {
    match distance_m {
        Some(distance) if distance.is_finite() => format!("{distance:.0} m"),
        _ => "—".to_owned(),
    }
}

/// True when a distance is beyond `limit_m`. An unknown distance is not "far": the missing
/// fix is flagged separately.
pub fn is_beyond(distance_m: Option<f64>, limit_m: f64) -> bool {
    matches!(distance_m, Some(distance) if distance.is_finite() && distance > limit_m)
}

/// 达标 / 不达标 / 未检查 for one 两不愁三保障 item.
pub fn check_result_label(result: CheckResult) -> &'static str {
    match result {
        CheckResult::Pass => "达标",
        CheckResult::Fail => "不达标",
        CheckResult::NotChecked => "未检查",
    }
}

/// CSS class for a check result, so failures stand out.
pub fn check_result_class(result: CheckResult) -> &'static str {
    match result {
        CheckResult::Pass => "ok",
        CheckResult::Fail => "bad",
        CheckResult::NotChecked => "muted",
    }
}

/// 是 / 否.
pub fn yes_no(value: bool) -> &'static str {
    if value { "是" } else { "否" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn times_are_shown_in_beijing_time_to_the_minute() {
        assert_eq!(
            beijing_minutes(datetime!(2026-10-31 15:59:59 UTC)),
            "2026-10-31 23:59"
        );
        assert_eq!(
            beijing_minutes(datetime!(2026-10-31 16:00 UTC)),
            "2026-11-01 00:00"
        );
        assert_eq!(
            beijing_minutes(datetime!(2026-03-05 08:07 +08:00)),
            "2026-03-05 08:07"
        );
        assert_eq!(beijing_minutes_or_dash(None), "—");
        assert_eq!(
            beijing_month_label(datetime!(2026-10-31 16:00 UTC)),
            "2026年11月"
        );
    }

    #[test]
    fn distances_round_to_metres_and_unknown_is_not_far() {
        assert_eq!(metres(Some(299.6)), "300 m");
        assert_eq!(metres(None), "—");
        assert_eq!(metres(Some(f64::NAN)), "—");
        assert!(is_beyond(Some(300.5), 300.0));
        assert!(!is_beyond(Some(300.0), 300.0));
        assert!(!is_beyond(None, 300.0));
    }

    #[test]
    fn check_results_have_chinese_labels() {
        assert_eq!(check_result_label(CheckResult::Pass), "达标");
        assert_eq!(check_result_label(CheckResult::Fail), "不达标");
        assert_eq!(check_result_label(CheckResult::NotChecked), "未检查");
    }
}
