//! Small pure formatting helpers shared by the console's pages: Beijing-time timestamps,
//! distances and the Chinese words for tri-state checks. Kept free of HTML so they are easy
//! to test.

use fieldsync_model::access::birth_year_beside_masked_id;
use fieldsync_model::time_util::BEIJING;
use fieldsync_model::visit::CheckResult;
use time::OffsetDateTime;

pub use fieldsync_model::time_util::beijing_minutes;

/// `YYYY-MM-DD HH:MM` in Beijing time, or a dash when the instant is unknown.
pub fn beijing_minutes_or_dash(instant: Option<OffsetDateTime>) -> String {
    instant.map_or_else(|| "—".to_owned(), beijing_minutes)
}

/// The wall-clock part of an HLC as `YYYY-MM-DD HH:MM` Beijing time.
pub fn hlc_beijing_minutes(hlc: fieldsync_model::hlc::Hlc) -> String {
    let nanos = i128::from(hlc.millis()) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map_or_else(|_| "—".to_owned(), beijing_minutes)
}

/// Whole days between two instants (0 when `earlier` is not earlier).
pub fn whole_days(earlier: OffsetDateTime, later: OffsetDateTime) -> i64 {
    (later - earlier).whole_days().max(0)
}

/// How the console names the device that made an edit: its model as it gave it at login
/// and the last four characters of its id (enough to tell a cadre's two phones apart, and to
/// find it on 在用设备), or 网页审核台 for the console's own writes.
pub fn device_label(device_id: &str, device_name: &str) -> String {
    if device_id == super::CONSOLE_DEVICE_ID {
        return "网页审核台".to_owned();
    }
    let tail_start = device_id
        .char_indices()
        .rev()
        .nth(3)
        .map_or(0, |(index, _)| index);
    let tail = &device_id[tail_start..];
    match device_name.trim() {
        "" => format!("设备尾号 {tail}"),
        name => format!("{name}（尾号 {tail}）"),
    }
}

/// A clock difference in words: "快 3 小时 5 分" / "慢 40 分" / "准确".
pub fn skew_zh(skew: time::Duration) -> String {
    // Rounded to the nearest minute: a report sent "10 minutes fast" arrives a moment
    // later and must not read as 9.
    let seconds = skew.whole_seconds();
    let minutes = (seconds.unsigned_abs() + 30) / 60;
    if minutes == 0 {
        return "准确".to_owned();
    }
    let direction = if seconds > 0 { "快" } else { "慢" };
    match (minutes / (24 * 60), (minutes / 60) % 24, minutes % 60) {
        (0, 0, minutes) => format!("{direction} {minutes} 分"),
        (0, hours, minutes) => format!("{direction} {hours} 小时 {minutes} 分"),
        (days, hours, _) => format!("{direction} {days} 天 {hours} 小时"),
    }
}

/// The business month (`YYYY年MM月`) an instant falls in, Beijing time.
pub fn beijing_month_label(instant: OffsetDateTime) -> String {
    let local = instant.to_offset(BEIJING);
    format!("{:04}年{:02}月", local.year(), u8::from(local.month()))
}

/// A distance as the flags write it (whole 米 below 1 km, 公里 with one decimal above), or a
/// dash when it could not be computed (no fix, no household location, or mismatched
/// coordinate systems).
pub fn metres(distance_m: Option<f64>) -> String {
    match distance_m {
        Some(distance) if distance.is_finite() => fieldsync_model::geo::distance_zh(distance),
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

/// A member's birth year as staff pages show it (`1949年`), beside their masked ID number:
/// the full date is what the mask hides ([`birth_year_beside_masked_id`]).
pub fn birth_year_zh(birth_date: &str) -> String {
    let year = birth_year_beside_masked_id(birth_date);
    if year.is_empty() {
        year
    } else {
        format!("{year}年")
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
    fn a_device_is_named_by_model_and_the_last_four_of_its_id() {
        let id = "0193a5b2-7c41-7d2e-9f00-5e8a1c2d9b7f";
        assert_eq!(
            device_label(id, "Redmi Note 12"),
            "Redmi Note 12（尾号 9b7f）"
        );
        assert_eq!(device_label(id, "  "), "设备尾号 9b7f");
        assert_eq!(device_label("ab", "X"), "X（尾号 ab）");
        assert_eq!(device_label("console", "web console"), "网页审核台");
    }

    #[test]
    fn distances_round_to_metres_and_unknown_is_not_far() {
        assert_eq!(metres(Some(299.6)), "300 米");
        assert_eq!(metres(Some(11_724_302.0)), "11724.3 公里");
        assert_eq!(metres(None), "—");
        assert_eq!(metres(Some(f64::NAN)), "—");
        assert!(is_beyond(Some(300.5), 300.0));
        assert!(!is_beyond(Some(300.0), 300.0));
        assert!(!is_beyond(None, 300.0));
    }

    #[test]
    fn hlcs_and_skews_read_in_beijing_time_and_words() {
        let hlc = fieldsync_model::hlc::Hlc::from_parts(
            u64::try_from(datetime!(2026-03-10 02:00 UTC).unix_timestamp() * 1000).unwrap_or(0),
            3,
        );
        assert_eq!(hlc_beijing_minutes(hlc), "2026-03-10 10:00");
        assert_eq!(skew_zh(time::Duration::seconds(20)), "准确");
        assert_eq!(skew_zh(time::Duration::minutes(-40)), "慢 40 分");
        assert_eq!(skew_zh(time::Duration::seconds(599)), "快 10 分");
        assert_eq!(skew_zh(time::Duration::minutes(185)), "快 3 小时 5 分");
        assert_eq!(skew_zh(time::Duration::hours(50)), "快 2 天 2 小时");
        assert_eq!(
            whole_days(
                datetime!(2026-03-01 00:00 UTC),
                datetime!(2026-03-10 01:00 UTC)
            ),
            9
        );
    }

    #[test]
    fn check_results_have_chinese_labels() {
        assert_eq!(check_result_label(CheckResult::Pass), "达标");
        assert_eq!(check_result_label(CheckResult::Fail), "不达标");
        assert_eq!(check_result_label(CheckResult::NotChecked), "未检查");
    }
}
