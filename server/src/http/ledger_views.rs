//! HTML of the monthly ledger (月台账) pages: the dashboard (工作台), the ledger list, the
//! silent-cadre list and the month-close form. Every number on the dashboard is a link to
//! the list it counts, built with [`super::ledger::ledger_link`] so the two cannot drift.

use fieldsync_model::CodeList;
use fieldsync_model::codes::{Role, VisitMode};
use fieldsync_model::ledger::{BusinessMonth, CoverageCounts, SlotState};
use maud::{Markup, html};
use time::OffsetDateTime;

use super::display::{beijing_minutes, beijing_minutes_or_dash};
use super::ledger::{DASHBOARD_PATH, LEDGER_PATH, ledger_link};
use super::views::{Nav, layout};
use crate::ledger::{
    CLOSE_CONFIRM_TEXT, CoverageRow, Dashboard, LedgerFilter, LedgerRow, MonthLedger,
    NO_PRIMARY_CADRE, SilentCadre, StateFilter,
};
use crate::store::{MonthClosure, Principal};

/// How many overdue households of the previous month the dashboard lists inline.
const DASHBOARD_OVERDUE_ROWS: usize = 20;
/// Cadres listed on the dashboard: the ones with the lowest 入户率 first. A township of
/// 5,000 households has hundreds of cadres; the full table is one link away
/// (`?cadres=all`), so the dashboard stays short and fast.
const DASHBOARD_CADRE_ROWS: usize = 30;
/// How many silent cadres the dashboard lists inline.
const DASHBOARD_SILENT_ROWS: usize = 10;

/// Everything the dashboard page shows.
#[derive(Debug)]
pub struct DashboardView<'a> {
    pub principal: &'a Principal,
    pub area_name: &'a str,
    pub dashboard: &'a Dashboard,
    pub now: OffsetDateTime,
    /// List every cadre, not only the [`DASHBOARD_CADRE_ROWS`] with the lowest rate.
    pub all_cadres: bool,
}

/// The cadres the dashboard lists: all of them, or the lowest approved in-person rates first
/// (cadres with nothing due last), at most [`DASHBOARD_CADRE_ROWS`].
fn listed_cadres(rows: &[CoverageRow], all: bool) -> Vec<CoverageRow> {
    if all || rows.len() <= DASHBOARD_CADRE_ROWS {
        return rows.to_vec();
    }
    let mut lowest = rows.to_vec();
    // approved / due compared without division: a/b < c/d ⇔ a·d < c·b for positive b, d.
    lowest.sort_by(|a, b| {
        (a.due == 0)
            .cmp(&(b.due == 0))
            .then_with(|| {
                (u64::from(a.approved_in_person) * u64::from(b.due))
                    .cmp(&(u64::from(b.approved_in_person) * u64::from(a.due)))
            })
            .then_with(|| a.group_name.cmp(&b.group_name))
    });
    lowest.truncate(DASHBOARD_CADRE_ROWS);
    lowest
}

fn rate(counts: &CoverageCounts) -> String {
    counts
        .approved_rate_percent()
        .map_or_else(|| "—".to_owned(), |rate| format!("{rate:.1}%"))
}

fn row_counts(row: &CoverageRow) -> CoverageCounts {
    CoverageCounts {
        due: row.due,
        visited_in_person: row.visited_in_person,
        approved_in_person: row.approved_in_person,
        overdue: row.overdue,
    }
}

fn state_class(state: SlotState) -> &'static str {
    match state {
        SlotState::Approved
        | SlotState::Locked(fieldsync_model::ledger::LockedOutcome::Approved) => "approved",
        SlotState::Returned | SlotState::Overdue | SlotState::Locked(_) => "returned",
        SlotState::Submitted | SlotState::Due => "submitted",
    }
}

fn month_picker(action: &str, month: BusinessMonth, hidden: &[(&str, &str)]) -> Markup {
    html! {
        form method="get" action=(action) {
            label for="month" { "月份：" }
            input #month type="text" name="month" value=(month.to_string()) size="8" pattern="[0-9]{4}-[0-9]{2}" placeholder="YYYY-MM";
            @for (name, value) in hidden {
                input type="hidden" name=(name) value=(value);
            }
            button.secondary type="submit" { "查看" }
        }
        a href=(format!("{action}?month={}", month.previous())) { "← 上月" }
        a href=(format!("{action}?month={}", month.next())) { "下月 →" }
    }
}

/// Table of 入户率 counts; `link` builds the list link of one group and state.
fn coverage_table(
    month: BusinessMonth,
    heading: &str,
    rows: &[CoverageRow],
    by_cadre: bool,
) -> Markup {
    let link = |row: &CoverageRow, state: Option<StateFilter>| {
        if by_cadre {
            ledger_link(month, None, Some(&row.group_id), state)
        } else {
            ledger_link(month, Some(&row.group_id), None, state)
        }
    };
    html! {
        table.coverage {
            thead { tr {
                th { (heading) } th.num { "应走访户数" } th.num { "已入户（含待审核）" }
                th.num { "审核通过" } th.num { "入户率" } th.num { "逾期" }
            } }
            tbody {
                @for row in rows {
                    tr {
                        td {
                            (row.group_name)
                            @if by_cadre {
                                " " a.muted href=(super::sessions::devices_path(&row.group_id)) { "在用设备" }
                            }
                        }
                        td.num { a href=(link(row, None)) { (row.due) } }
                        td.num { a href=(link(row, Some(StateFilter::Visited))) { (row.visited_in_person) } }
                        td.num { a href=(link(row, Some(StateFilter::Approved))) { (row.approved_in_person) } }
                        td.num { (rate(&row_counts(row))) }
                        td.num { a href=(link(row, Some(StateFilter::Overdue))) { (row.overdue) } }
                    }
                }
            }
        }
    }
}

fn closures_notice(closures: &[MonthClosure]) -> Markup {
    html! {
        @for closure in closures {
            div.notice.info role="status" {
                (closure.township_name) " " (closure.month) " 已于 " (beijing_minutes(closure.closed_at))
                " 由 " (closure.closed_by_name) " 月结（" (closure.household_count) " 户），数据已锁定；月结后补报的走访标为“逾期补报”，不改变已锁定的数字。"
            }
        }
    }
}

/// `GET /console/dashboard`.
pub fn dashboard_page(view: &DashboardView<'_>) -> Markup {
    let dashboard = view.dashboard;
    let month = dashboard.month;
    let totals = &dashboard.totals;
    let previous = dashboard.previous_month;
    layout(
        "工作台",
        Some(view.principal),
        Nav::Dashboard,
        html! {
            h1 { (view.area_name) " 工作台 " span.count { "（" (month.label_zh()) "）" } }
            div.toolbar { (month_picker(DASHBOARD_PATH, month, &[])) }
            (closures_notice(&dashboard.closures))
            section.card.totals {
                h2 { "入户率 " (month.label_zh()) }
                div.stats {
                    div.stat { span.label { "应走访" } a.value href=(ledger_link(month, None, None, None)) { (totals.due) } }
                    div.stat { span.label { "已入户（含待审核）" } a.value href=(ledger_link(month, None, None, Some(StateFilter::Visited))) { (totals.visited_in_person) } }
                    div.stat { span.label { "审核通过" } a.value href=(ledger_link(month, None, None, Some(StateFilter::Approved))) { (totals.approved_in_person) } }
                    div.stat { span.label { "入户率" } span.value { (rate(totals)) } }
                    div.stat { span.label { "逾期" } a.value href=(ledger_link(month, None, None, Some(StateFilter::Overdue))) { (totals.overdue) } }
                }
                p.muted { "入户率 = 当月有审核通过的入户走访的农户 ÷ 应走访农户；电话、微信走访不计入。" }
            }
            div.grid2 {
                section.card {
                    h2 { "按村" }
                    (coverage_table(month, "村", &dashboard.coverage.by_village, false))
                }
                section.card {
                    h2 { "按第一帮扶责任人" }
                    @let cadres = &dashboard.coverage.by_cadre;
                    @let listed = listed_cadres(cadres, view.all_cadres);
                    @if listed.len() < cadres.len() {
                        p.muted {
                            "入户率最低的 " (listed.len()) " 名（共 " (cadres.len()) " 名） "
                            a href=(format!("{DASHBOARD_PATH}?month={month}&cadres=all")) { "查看全部 →" }
                        }
                    }
                    (coverage_table(month, "帮扶干部", &listed, true))
                }
            }
            div.grid2 {
                section.card {
                    h2 {
                        "上月（" (previous.label_zh()) "）逾期未走访 "
                        a href=(ledger_link(previous, None, None, Some(StateFilter::Overdue))) { (dashboard.previous_overdue.len()) " 户" }
                    }
                    @if dashboard.previous_overdue.is_empty() {
                        p.muted { "无逾期农户。" }
                    } @else {
                        (ledger_table(&dashboard.previous_overdue[..dashboard.previous_overdue.len().min(DASHBOARD_OVERDUE_ROWS)], false))
                        @if dashboard.previous_overdue.len() > DASHBOARD_OVERDUE_ROWS {
                            p { a href=(ledger_link(previous, None, None, Some(StateFilter::Overdue))) { "查看全部 " (dashboard.previous_overdue.len()) " 户 →" } }
                        }
                    }
                }
                section.card {
                    h2 { "待审核走访的核验提示" }
                    @if view.principal.role != Role::Township {
                        p.muted { "由各乡镇审核员在审核队列中处理。" }
                    }
                    @if dashboard.flags.is_empty() {
                        p.muted { "待审核走访中没有核验提示。" }
                    } @else {
                        table {
                            thead { tr { th { "核验提示" } th.num { "走访数" } } }
                            tbody {
                                @for flag in &dashboard.flags {
                                    tr {
                                        td { (flag.label_zh) }
                                        td.num {
                                            // The review queue is the township's (乡镇审核); county
                                            // staff see the count without a link they cannot open.
                                            @if view.principal.role == Role::Township {
                                                a href=(format!("/console/queue?flag={}", flag.code)) { (flag.visits) }
                                            } @else {
                                                (flag.visits)
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    h2 {
                        (dashboard.silent_days) " 天以上未同步的干部 "
                        a href="/console/ledger/silent" { (dashboard.silent_cadres.len()) " 人" }
                    }
                    @if dashboard.silent_cadres.is_empty() {
                        p.muted { "所有干部近期都有同步。" }
                    } @else {
                        (silent_table(&dashboard.silent_cadres[..dashboard.silent_cadres.len().min(DASHBOARD_SILENT_ROWS)]))
                    }
                }
            }
            p.muted { "页面时间：" (beijing_minutes(view.now)) "（北京时间）" }
        },
    )
}

fn silent_table(silent: &[SilentCadre]) -> Markup {
    html! {
        table {
            thead { tr { th { "干部" } th { "最近同步" } th.num { "未同步天数" } } }
            tbody {
                @for cadre in silent {
                    tr {
                        td { (cadre.cadre.display_name) }
                        td { (beijing_minutes_or_dash(cadre.cadre.last_sync_at)) }
                        td.num {
                            @match cadre.days_silent {
                                Some(days) => (days),
                                None => "从未同步",
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Household rows with their slot and visits; `with_township` adds the township column
/// (county view).
fn ledger_table(rows: &[LedgerRow], with_township: bool) -> Markup {
    html! {
        table.ledger {
            thead { tr {
                th { "户主" }
                @if with_township { th { "乡镇" } }
                th { "村" } th { "第一帮扶责任人" } th { "状态" } th { "当月走访" }
            } }
            tbody {
                @for row in rows {
                    @let household = &row.household;
                    tr {
                        td { (super::views::household_name_link(&household.household_id, &household.head_name)) }
                        @if with_township { td { (household.township_id) } }
                        td { (household.village_name) }
                        td { (household.primary_cadre_name.as_deref().unwrap_or("—")) }
                        td { span.badge.(state_class(row.slot.state)) { (row.slot.state.label_zh()) } }
                        td {
                            @if row.visits.is_empty() { span.muted { "无" } }
                            @for visit in &row.visits {
                                div {
                                    a href=(format!("/console/visits/{}", visit.visit_id)) {
                                        (beijing_minutes(visit.checkin_at)) " " (visit.mode.label_zh())
                                    }
                                    " · " (visit.state.label_zh()) " · " (visit.author_name)
                                    @if visit.mode != VisitMode::InPerson { " " span.muted { "（不计入入户率）" } }
                                    @if visit.late_after_close { " " span.badge.flag { "逾期补报" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Everything the ledger list shows.
#[derive(Debug)]
pub struct LedgerView<'a> {
    pub principal: &'a Principal,
    pub area_name: &'a str,
    pub ledger: &'a MonthLedger,
    pub filter: &'a LedgerFilter,
    pub month_has_ended: bool,
    pub just_closed: bool,
}

/// `GET /console/ledger`.
pub fn ledger_page(view: &LedgerView<'_>) -> Markup {
    let ledger = view.ledger;
    let month = ledger.month;
    let rows: Vec<LedgerRow> = ledger
        .rows
        .iter()
        .filter(|row| view.filter.matches(row))
        .cloned()
        .collect();
    // Villages and cadres to filter by, from the month's rows (names as the ledger has them).
    let mut villages: Vec<(&str, &str)> = ledger
        .rows
        .iter()
        .map(|row| {
            (
                row.household.village_id.as_str(),
                row.household.village_name.as_str(),
            )
        })
        .collect();
    villages.sort_unstable();
    villages.dedup();
    let mut cadres: Vec<(&str, &str)> = ledger
        .rows
        .iter()
        .map(|row| {
            match (
                &row.household.primary_cadre_user_id,
                &row.household.primary_cadre_name,
            ) {
                (Some(id), Some(name)) => (name.as_str(), id.as_str()),
                (Some(id), None) => (id.as_str(), id.as_str()),
                (None, _) => ("（未落实第一帮扶责任人）", NO_PRIMARY_CADRE),
            }
        })
        .collect();
    cadres.sort_unstable();
    cadres.dedup();
    let is_county = view.principal.role != Role::Township;
    let township_closed = ledger
        .closures
        .iter()
        .any(|closure| closure.township_id == view.principal.area_id);
    layout(
        "月台账",
        Some(view.principal),
        Nav::Dashboard,
        html! {
            h1 { (view.area_name) " " (month.label_zh()) " 月台账 " span.count { "（" (rows.len()) " 户）" } }
            @if view.just_closed {
                div.notice.info role="status" { (month.label_zh()) " 已月结。" }
            }
            (closures_notice(&ledger.closures))
            div.toolbar {
                form method="get" action=(LEDGER_PATH) {
                    label for="month" { "月份：" }
                    input #month type="text" name="month" value=(month.to_string()) size="8" placeholder="YYYY-MM";
                    label for="village" { "村：" }
                    select #village name="village" {
                        option value="" selected[view.filter.village_id.is_none()] { "全部村" }
                        @for (id, name) in &villages {
                            option value=(id) selected[view.filter.village_id.as_deref() == Some(*id)] { (name) }
                        }
                    }
                    label for="cadre" { "干部：" }
                    select #cadre name="cadre" {
                        option value="" selected[view.filter.cadre_id.is_none()] { "全部干部" }
                        @for (name, id) in &cadres {
                            option value=(id) selected[view.filter.cadre_id.as_deref() == Some(*id)] { (name) }
                        }
                    }
                    label for="state" { "状态：" }
                    select #state name="state" {
                        option value="" selected[view.filter.state.is_none()] { "全部" }
                        @for filter in StateFilter::ALL {
                            option value=(filter.as_str()) selected[view.filter.state == Some(filter)] { (filter.label_zh()) }
                        }
                    }
                    button.secondary type="submit" { "筛选" }
                }
                a href=(format!("{DASHBOARD_PATH}?month={month}")) { "← 返回工作台" }
            }
            @if rows.is_empty() {
                section.card { p.muted { "没有符合条件的农户。" } }
            } @else {
                (ledger_table(&rows, is_county))
            }
            @if view.principal.role == Role::Township && !township_closed {
                section.card.close-month {
                    h2 { "月结" }
                    @if view.month_has_ended {
                        p { "月结后本月各户状态锁定，之后补报的走访仍会保存，但标为“逾期补报”，不改变已锁定的数字。请输入“" (CLOSE_CONFIRM_TEXT) "”确认。" }
                        form method="post" action="/console/ledger/close" {
                            (super::csrf::form_field())
                            input type="hidden" name="month" value=(month.to_string());
                            input type="text" name="confirm" placeholder=(CLOSE_CONFIRM_TEXT) required;
                            button.primary type="submit" { "确认月结 " (month.label_zh()) }
                        }
                    } @else {
                        p.muted { (month.label_zh()) " 尚未结束，月末（北京时间）之后才能月结。" }
                    }
                }
            }
        },
    )
}

/// `GET /console/ledger/silent`.
pub fn silent_page(principal: &Principal, silent: &[SilentCadre], days: u32) -> Markup {
    layout(
        "长期未同步的干部",
        Some(principal),
        Nav::Dashboard,
        html! {
            h1 { (days) " 天以上未同步的干部 " span.count { "（" (silent.len()) " 人）" } }
            p.muted { "最近同步 = 该干部任一设备最近一次上传或心跳（北京时间）。" }
            @if silent.is_empty() {
                section.card { p.muted { "所有干部近期都有同步。" } }
            } @else {
                (silent_table(silent))
            }
            p { a href=(DASHBOARD_PATH) { "← 返回工作台" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cadre(name: &str, due: u32, approved: u32) -> CoverageRow {
        CoverageRow {
            group_id: name.to_owned(),
            group_name: name.to_owned(),
            due,
            visited_in_person: approved,
            approved_in_person: approved,
            overdue: due - approved,
        }
    }

    #[test]
    fn the_dashboard_lists_the_lowest_rates_first_and_everyone_on_request() {
        // 40 cadres with 8 households each and 0..=8 approved.
        let mut rows: Vec<CoverageRow> = (0..40u32)
            .map(|index| cadre(&format!("干部{index:02}"), 8, index % 9))
            .collect();
        rows.push(cadre("无户干部", 0, 0));
        let listed = listed_cadres(&rows, false);
        assert_eq!(listed.len(), DASHBOARD_CADRE_ROWS);
        assert!(
            listed
                .windows(2)
                .all(|pair| pair[0].approved_in_person <= pair[1].approved_in_person),
            "lowest rate first (all due 8 here)"
        );
        assert_eq!(listed[0].approved_in_person, 0);
        assert!(
            !listed.iter().any(|row| row.due == 0),
            "nothing due sorts last"
        );
        assert_eq!(listed_cadres(&rows, true).len(), rows.len());
        assert_eq!(listed_cadres(&rows[..5], false).len(), 5);
    }
}
