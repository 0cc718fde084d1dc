//! HTML of the review loop (审核闭环): the queue with its filter bar (village, cadre,
//! evidence flag, days waiting, with counts), and the submission page (走访审核) with the
//! form content, this visit's photos beside the household's earlier months, the offline
//! location plot, the correction diff against the returned revision with that decision's
//! reasons beside the fields, and the approve / return form with reasons attached to fields.
//!
//! Pages work without JavaScript; `console.js` only adds keyboard shortcuts to the links
//! and buttons rendered here (ids `approve-button`, `next-item`, `return-reasons`,
//! `shortcut-help`, rows with `data-visit-href`).

use fieldsync_model::codes::{CodeList, ReviewState, VisitMode};
use fieldsync_model::evidence::{EvidenceFlag, FlagNames};
use fieldsync_model::household::GeoPoint;
use fieldsync_model::id_number;
use fieldsync_model::review::{ReturnReason, return_reason_label};
use fieldsync_model::visit::GpsFix;
use fieldsync_model::visit_diff::visit_field_label;
use maud::{Markup, html};
use time::OffsetDateTime;

use super::display::{
    beijing_minutes, beijing_minutes_or_dash, check_result_class, check_result_label, is_beyond,
    metres, yes_no,
};
use super::map::{MapInput, location_map};
use super::views::{Nav, layout};
use crate::review::{AGE_FILTER_CHOICES, Correction, QueueFilters, days_waiting};
use crate::store::{Area, HouseholdPhoto, Principal, QueueFacets, QueueItem, VisitDetail};

use super::views::household_path;

/// A console path with the queue's filters as its query.
fn with_filters(path: &str, filters: &QueueFilters) -> String {
    let query = filters.query_string();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// The submission page of a visit, keeping the queue's filters (so "next" follows them).
pub fn visit_path(visit_id: &str, filters: &QueueFilters) -> String {
    with_filters(&format!("/console/visits/{visit_id}"), filters)
}

/// The queue with `filters`.
pub fn queue_path(filters: &QueueFilters) -> String {
    with_filters(super::QUEUE_PATH, filters)
}

/// The shortcut help box and the hint that opens it, hidden until the script runs.
fn shortcut_help(on_detail: bool) -> Markup {
    html! {
        p.muted.shortcut-hint hidden { "快捷键：按 ? 查看" }
        div.card.shortcut-help #shortcut-help hidden role="dialog" aria-label="键盘快捷键" {
            strong { "键盘快捷键" }
            ul {
                @if on_detail {
                    li { kbd { "a" } " 通过（仅当“通过”按钮可用时）" }
                    li { kbd { "n" } " / " kbd { "j" } " 下一条（按当前筛选条件）" }
                    li { kbd { "r" } " 跳到退回原因" }
                } @else {
                    li { kbd { "n" } " / " kbd { "j" } " 选中下一条，" kbd { "k" } " 上一条" }
                    li { kbd { "Enter" } " / " kbd { "o" } " 打开选中的走访" }
                }
                li { kbd { "?" } " 显示或隐藏本帮助，" kbd { "Esc" } " 关闭" }
            }
        }
    }
}

/// Everything the queue page shows.
#[derive(Debug)]
pub struct QueueView<'a> {
    pub principal: &'a Principal,
    pub township_name: &'a str,
    pub villages: &'a [Area],
    pub filters: &'a QueueFilters,
    pub facets: &'a QueueFacets,
    pub items: &'a [QueueItem],
    pub radius_m: f64,
    pub decided: Option<&'static str>,
    pub truncated: bool,
    pub now: OffsetDateTime,
}

/// `GET /console/queue`.
pub fn queue_page(view: &QueueView<'_>) -> Markup {
    let filters = view.filters;
    let facets = view.facets;
    let village_count = |village_id: &str| {
        facets
            .by_village
            .iter()
            .find(|facet| facet.key == village_id)
            .map_or(0, |facet| facet.count)
    };
    let selected_cadre_missing = filters
        .cadre_user_id
        .as_deref()
        .is_some_and(|cadre| !facets.by_cadre.iter().any(|facet| facet.key == cadre));
    let selected_flag_missing = filters
        .flag
        .as_deref()
        .is_some_and(|flag| !facets.by_flag.iter().any(|facet| facet.key == flag));
    layout(
        "待审核走访",
        Some(view.principal),
        Nav::Queue,
        html! {
            h1 { (view.township_name) " 待审核走访 " span.count #queue-total { "（" (facets.total) " 条）" } }
            @if let Some(notice) = view.decided {
                div.notice.info role="status" { (notice) }
            }
            form.filter-bar #queue-filters method="get" action="/console/queue" {
                label { "村 "
                    select name="village" {
                        option value="" selected[filters.village_id.is_none()] { "全部村" }
                        @for village in view.villages {
                            option value=(village.area_id) selected[filters.village_id.as_deref() == Some(village.area_id.as_str())] {
                                (village.name) "（" (village_count(&village.area_id)) "）"
                            }
                        }
                    }
                }
                label { "帮扶干部 "
                    select name="cadre" {
                        option value="" selected[filters.cadre_user_id.is_none()] { "全部干部" }
                        @for cadre in &facets.by_cadre {
                            option value=(cadre.key) selected[filters.cadre_user_id.as_deref() == Some(cadre.key.as_str())] {
                                (cadre.label) "（" (cadre.count) "）"
                            }
                        }
                        @if selected_cadre_missing {
                            option value=(filters.cadre_user_id.as_deref().unwrap_or_default()) selected { "所选干部（0）" }
                        }
                    }
                }
                label { "核验提示 "
                    select name="flag" {
                        option value="" selected[filters.flag.is_none()] { "全部" }
                        @for flag in &facets.by_flag {
                            option value=(flag.key) selected[filters.flag.as_deref() == Some(flag.key.as_str())] {
                                (flag.label) "（" (flag.count) "）"
                            }
                        }
                        @if selected_flag_missing {
                            option value=(filters.flag.as_deref().unwrap_or_default()) selected { (filters.flag.as_deref().unwrap_or_default()) "（0）" }
                        }
                    }
                }
                label { "等待 "
                    select name="age" {
                        option value="" selected[filters.min_age_days.is_none()] { "不限" }
                        @for (days, count) in AGE_FILTER_CHOICES.iter().zip(&facets.by_age) {
                            option value=(days) selected[filters.min_age_days == Some(*days)] { "≥ " (days) " 天（" (count) "）" }
                        }
                        @if let Some(days) = filters.min_age_days.filter(|days| !AGE_FILTER_CHOICES.contains(days)) {
                            option value=(days) selected { "≥ " (days) " 天" }
                        }
                    }
                }
                button.secondary type="submit" { "筛选" }
                @if !filters.is_empty() {
                    a #clear-filters href="/console/queue" { "清除筛选" }
                }
                a.right href="/console/unvisited" { "本月未入户走访农户 →" }
            }
            (shortcut_help(false))
            @if view.items.is_empty() {
                section.card { p.muted #queue-empty {
                    @if filters.is_empty() { "暂无待审核的走访记录。" } @else { "没有符合筛选条件的待审核走访。" }
                } }
            } @else {
                table #queue-table {
                    thead { tr {
                        th { "户主" } th { "村" } th { "帮扶干部" } th { "走访方式" } th { "提交时间" }
                        th.num { "等待" } th.num { "距离" } th.num { "照片数" } th { "核验提示" } th {}
                    } }
                    tbody {
                        @for item in view.items {
                            @let far = is_beyond(item.distance_m, view.radius_m);
                            @let in_person = item.mode == VisitMode::InPerson;
                            @let href = visit_path(&item.visit_id, filters);
                            @let waited = days_waiting(item.submitted_at, view.now);
                            tr data-visit-href=(href) data-visit-id=(item.visit_id) {
                                td { (super::views::household_name_link(&item.household_id, &item.head_name)) }
                                td { (item.village_name) }
                                td { (item.cadre_name) }
                                td.warn-text[!in_person] { (item.mode.label_zh()) }
                                td { (beijing_minutes(item.submitted_at)) }
                                td.num.bad[waited >= 7] { (waited) " 天" }
                                td.num.far[far] title=[far.then_some("超出核验半径")] { (metres(item.distance_m)) }
                                td.num.bad[in_person && item.photo_count == 0] { (item.photo_count) }
                                td {
                                    @for flag in &item.flags {
                                        @let flag_filters = QueueFilters { flag: Some(flag.code().to_owned()), ..filters.clone() };
                                        a.badge.flag.info[flag.is_informational()] href=(queue_path(&flag_filters)) title=(flag.detail()) { (flag.label_zh()) }
                                        " "
                                    }
                                }
                                td { a href=(href) { "审核" } }
                            }
                        }
                    }
                }
                @if view.truncated {
                    p.muted { "仅显示最早提交的 " (view.items.len()) " 条；审核后其余记录会依次显示。" }
                }
            }
            p.muted { "距离为定位点与农户登记位置的直线距离；超过 " (format!("{:.0}", view.radius_m)) " 米标红。等待天数从最近一次提交算起，满 7 天标红。核验提示仅供审核参考，不会自动退回；点击提示可筛选同类记录。括号内为按该条件筛选后的条数。时间为北京时间。" }
        },
    )
}

/// Everything the submission page shows.
#[derive(Debug)]
pub struct DetailView<'a> {
    pub principal: &'a Principal,
    pub detail: &'a VisitDetail,
    pub radius_m: f64,
    pub decided: Option<&'static str>,
    pub now: OffsetDateTime,
    /// The queue filters the reviewer came with; "next" and "back" keep them.
    pub filters: &'a QueueFilters,
    /// The next visit of the filtered queue, if any other waits.
    pub next_visit_id: Option<&'a str>,
    /// The returned revision this one corrects, and the difference.
    pub correction: Option<&'a Correction>,
    /// Received photos of the household's other visits, newest month first.
    pub history: &'a [HouseholdPhoto],
    /// EXIF GPS points of this visit's photos: (photo number, lat, lon).
    pub photo_points: &'a [(usize, f64, f64)],
    /// What the flag texts call the photos and visits they mention.
    pub flag_names: &'a FlagNames,
}

/// Distance between the fix and the household pin, measured as the gps_far flag measures it:
/// great-circle between the two points converted to WGS-84, so the page and the flag show
/// the same number.
fn fix_distance(detail: &VisitDetail) -> Option<f64> {
    let gps = detail.visit.gps?;
    let home = detail.household.location?;
    Some(fieldsync_model::geo::distance_normalised(
        &GeoPoint {
            lat: gps.lat,
            lon: gps.lon,
            crs: gps.crs,
        },
        &home,
    ))
}

/// Notes beside the evidence flags that are not flags: the state of the checks themselves.
fn evidence_notes(detail: &VisitDetail) -> Vec<String> {
    let mut notes = Vec::new();
    if detail.flags.is_none() {
        notes.push("核验尚未完成，请稍后刷新。".to_owned());
    }
    if detail.household.location.is_none() {
        notes.push("农户未登记位置，无法核验距离。".to_owned());
    }
    let pending = pending_photos(detail);
    if pending > 0 {
        notes.push(format!(
            "{pending} 张照片尚未上传完成，照片相关核验将在上传后进行。"
        ));
    }
    notes
}

/// Photos of the latest revision whose bytes have not arrived yet.
fn pending_photos(detail: &VisitDetail) -> usize {
    detail
        .visit
        .photo_ids
        .iter()
        .filter(|id| !detail.photo_ids_received.contains(id))
        .count()
}

/// The 核验提示 box: the visit's evidence flags (DESIGN §5), each with its label and the
/// numbers behind it. They inform the reviewer; they never reject or block a decision.
fn evidence_box(detail: &VisitDetail, names: &FlagNames) -> Markup {
    let flags: &[EvidenceFlag] = detail.flags.as_deref().unwrap_or_default();
    let notes = evidence_notes(detail);
    let warns = flags.iter().any(|flag| !flag.is_informational());
    html! {
        @if !flags.is_empty() || !notes.is_empty() {
            div.notice.warn[warns].info[!warns] #evidence-flags {
                strong { "核验提示" }
                @if !flags.is_empty() {
                    ul.flags {
                        @for flag in flags {
                            li data-flag=(flag.code()) {
                                span.badge.flag.info[flag.is_informational()] { (flag.label_zh()) }
                                " " (flag.detail_named(names))
                            }
                        }
                    }
                }
                @for note in &notes { p.muted { (note) } }
                @if !flags.is_empty() {
                    p.muted { "以上提示仅供审核参考，不会自动退回，也不影响通过。" }
                }
            }
        }
    }
}

fn state_badge(state: ReviewState) -> Markup {
    html! { span.badge.(state.as_str()) { (state.label_zh()) } }
}

fn gps_rows(gps: &GpsFix) -> Markup {
    html! {
        tr { th { "纬度" } td { (format!("{:.6}", gps.lat)) } }
        tr { th { "经度" } td { (format!("{:.6}", gps.lon)) } }
        tr { th { "坐标系" } td { (gps.crs.label_zh()) } }
        tr { th { "定位精度" } td { (format!("{:.0} 米", gps.accuracy_m)) } }
        tr { th { "定位来源" } td { (gps.provider.map_or("未知", |provider| provider.label_zh())) } }
        tr { th { "模拟定位" } td {
            @if gps.is_mock { span.bad { "模拟定位！" } } @else { span.ok { "否" } }
        } }
        tr { th { "定位时间" } td { (beijing_minutes_or_dash(gps.fix_time)) } }
    }
}

/// Reasons as "label（field）" text.
fn reasons_text(reasons: &[&ReturnReason]) -> String {
    reasons
        .iter()
        .map(|reason| return_reason_label(&reason.code).to_owned())
        .collect::<Vec<_>>()
        .join("、")
}

/// One photo thumbnail (or "uploading"), linking to the display copy.
fn photo_tile(photo_id: &str, received: bool, caption: Markup) -> Markup {
    html! {
        div.photo data-photo-id=(photo_id) {
            @if received {
                a href={ "/console/photos/" (photo_id) "/display" } target="_blank" {
                    img src={ "/console/photos/" (photo_id) "/thumb" } alt="走访照片" loading="lazy";
                }
            } @else {
                div.pending { "上传中" }
            }
            (caption)
        }
    }
}

/// The correction section: returned revision → this one, field by field, with the return's
/// reasons beside the fields they point at (also beside unchanged ones, so an ignored
/// reason stands out).
fn correction_section(detail: &VisitDetail, correction: &Correction) -> Markup {
    let returned = &correction.returned;
    let diff = &correction.diff;
    let reasons = &returned.status.reasons;
    let reasons_for = |field: &str| -> Vec<&ReturnReason> {
        reasons
            .iter()
            .filter(|reason| reason.field == field)
            .collect()
    };
    // Reason fields the diff has no row for: shown as "未修改" rows.
    let mut untouched: Vec<&str> = Vec::new();
    for reason in reasons {
        if !reason.field.is_empty()
            && !diff.touches(&reason.field)
            && !untouched.contains(&reason.field.as_str())
        {
            untouched.push(&reason.field);
        }
    }
    // After a correction the returned revision's state is "superseded"; what matters here
    // is that it was returned.
    let returned_label =
        if returned.status.decided_at.is_some() && returned.state == ReviewState::Superseded {
            ReviewState::Returned.label_zh()
        } else {
            returned.state.label_zh()
        };
    let overall = reasons_for("");
    // A field's reasons go beside its first changed row (wellbeing has one row per item).
    let mut seen_fields: Vec<&str> = Vec::new();
    let rows: Vec<_> = diff
        .changes
        .iter()
        .map(|change| {
            let first = !seen_fields.contains(&change.field);
            seen_fields.push(change.field);
            let field_reasons = if first {
                reasons_for(change.field)
            } else {
                Vec::new()
            };
            (change, field_reasons)
        })
        .collect();
    html! {
        section.card.correction #correction {
            h2 {
                "整改对比 " span.count { "第 " (returned.visit.revision) " 版（" (returned_label) "）→ 第 " (detail.visit.revision) " 版" }
            }
            table.kv {
                tr { th { "上次审核" } td { (returned.status.reviewer_name) " · " (beijing_minutes_or_dash(returned.status.decided_at)) } }
                @if !returned.status.note.is_empty() { tr { th { "退回说明" } td.text #returned-note { (returned.status.note) } } }
                @if !returned.status.deadline.is_empty() { tr { th { "整改期限" } td #returned-deadline { (returned.status.deadline) } } }
                @if !overall.is_empty() { tr { th { "整体问题" } td { span.badge.returned { (reasons_text(&overall)) } } } }
            }
            @if diff.is_empty() && untouched.is_empty() {
                p.warn-text { "本次重新提交的内容与被退回的版本相同，未作修改。" }
            }
            @if !diff.changes.is_empty() || !untouched.is_empty() {
                table.diff #correction-diff {
                    thead { tr { th { "项目" } th { "原内容（第 " (returned.visit.revision) " 版）" } th { "更正后" } th { "退回原因" } } }
                    tbody {
                        @for (change, field_reasons) in &rows {
                            tr data-field=(change.field) {
                                th { (change.label_zh) }
                                td.text.old { del { (change.old) } }
                                td.text.new { ins { (change.new) } }
                                td { @if !field_reasons.is_empty() { span.badge.returned { (reasons_text(field_reasons)) } } }
                            }
                        }
                        @for field in &untouched {
                            @if *field != "photo_ids" {
                                tr data-field=(field) {
                                    th { (visit_field_label(field)) }
                                    td.muted colspan="2" { "未修改" }
                                    td { span.badge.returned { (reasons_text(&reasons_for(field))) } }
                                }
                            }
                        }
                    }
                }
            }
            @let photo_reasons = reasons_for("photo_ids");
            @if diff.touches("photo_ids") || !photo_reasons.is_empty() {
                h3 {
                    "照片变化 "
                    @if !photo_reasons.is_empty() { span.badge.returned { (reasons_text(&photo_reasons)) } }
                }
                @if !diff.touches("photo_ids") { p.warn-text { "照片未修改。" } }
                @if !diff.photos_added.is_empty() {
                    p { "新增 " (diff.photos_added.len()) " 张：" }
                    div.photos #photos-added {
                        @for photo_id in &diff.photos_added {
                            (photo_tile(photo_id, detail.photo_ids_received.contains(photo_id), html! { div.ok { "新增" } }))
                        }
                    }
                }
                @if !diff.photos_removed.is_empty() {
                    p { "移除 " (diff.photos_removed.len()) " 张：" }
                    div.photos #photos-removed {
                        @for photo_id in &diff.photos_removed {
                            (photo_tile(photo_id, detail.photo_ids_received.contains(photo_id), html! { div.bad { "已移除" } }))
                        }
                    }
                }
            }
        }
    }
}

/// Earlier photos of the household, grouped by month, newest first.
fn history_section(history: &[HouseholdPhoto], this_month: &str) -> Markup {
    let mut months: Vec<&str> = Vec::new();
    for photo in history {
        if !months.contains(&photo.business_month.as_str()) {
            months.push(&photo.business_month);
        }
    }
    html! {
        div #photo-history {
            h3 { "该户近期其他走访照片" }
            @if history.is_empty() {
                p.muted { "近 3 个月该户没有其他走访照片。" }
            }
            @for month in &months {
                div.month-group data-month=(month) {
                    h4 { (month) @if *month == this_month { "（本月其他走访）" } }
                    div.photos {
                        @for photo in history.iter().filter(|photo| photo.business_month == *month) {
                            (photo_tile(&photo.photo.photo_id, true, html! {
                                div { (photo.photo.subject.map_or("照片", |subject| subject.label_zh())) }
                                div.muted { "走访：" (beijing_minutes(photo.checkin_at)) }
                                div { a href={ "/console/visits/" (photo.visit_id) } { "查看该次走访" } " " (state_badge(photo.state)) }
                            }))
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console/visits/{visit_id}`.
pub fn detail_page(view: &DetailView<'_>) -> Markup {
    let detail = view.detail;
    let visit = &detail.visit;
    let household = &detail.household;
    let distance = fix_distance(detail);
    let limit = view.radius_m + visit.gps.map_or(0.0, |gps| gps.accuracy_m.max(0.0));
    let title = format!("走访审核：{}", household.head_name);
    let map = location_map(&MapInput {
        pin: household.location,
        radius_m: view.radius_m,
        fix: visit.gps.map(|gps| {
            (
                GeoPoint {
                    lat: gps.lat,
                    lon: gps.lon,
                    crs: gps.crs,
                },
                gps.accuracy_m,
            )
        }),
        photo_points: view.photo_points.to_vec(),
    });
    let this_month = fieldsync_model::time_util::business_month(visit.checkin_at);
    layout(
        &title,
        Some(view.principal),
        Nav::Queue,
        html! {
            @if let Some(notice) = view.decided {
                div.notice.info role="status" { (notice) }
            }
            div.pager {
                a #back-to-queue href=(queue_path(view.filters)) { "← 返回待审核列表" }
                @match view.next_visit_id {
                    Some(next) => { a #next-item rel="next" href=(visit_path(next, view.filters)) { "下一条 →" } },
                    None => { span.muted { "没有其他待审核的走访" } },
                }
            }
            h1 { "走访审核：" (super::views::household_name_link(&household.household_id, &household.head_name)) " " span.count { (household.village_name) } " " (state_badge(detail.state)) }
            (shortcut_help(true))
            (evidence_box(detail, view.flag_names))
            @if let Some(correction) = view.correction {
                (correction_section(detail, correction))
            }
            div.grid2 {
                section.card {
                    h2 { "农户信息" }
                    table.kv {
                        tr { th { "户主" } td { a #household-link href=(household_path(&household.household_id)) { (household.head_name) } " " a.muted href=(household_path(&household.household_id)) { "农户档案 →" } } }
                        tr { th { "村" } td { (household.village_name) } }
                        tr { th { "地址" } td { (household.address) } }
                        tr { th { "户编号" } td { (household.national_household_number) } }
                        tr { th { "属性" } td { (household.attribute.label_zh()) } }
                        tr { th { "主要致贫原因" } td { (household.main_cause.label_zh()) } }
                        @if !household.secondary_causes.is_empty() {
                            tr { th { "次要致贫原因" } td {
                                (household.secondary_causes.iter().map(|cause| cause.label_zh()).collect::<Vec<_>>().join("、"))
                            } }
                        }
                        tr { th { "住房等级" } td {
                            @match household.housing_danger_level {
                                Some(level) => span.bad[!level.is_safe()] { (level.label_zh()) },
                                None => span.muted { "未鉴定" },
                            }
                        } }
                    }
                }
                section.card #location {
                    h2 { "定位核验" }
                    @if let Some(map) = map {
                        figure.map {
                            (map)
                            figcaption.muted {
                                span.legend-pin { "■" } " 农户登记位置，绿色虚线圈为 " (format!("{:.0}", view.radius_m)) " 米核验半径；"
                                span.legend-fix { "●" } " 定位点及其精度范围；"
                                span.legend-photo { "■" } " 照片拍摄位置（EXIF）。离线绘制，无底图。"
                            }
                        }
                    }
                    @match &visit.gps {
                        Some(gps) => {
                            table.kv {
                                (gps_rows(gps))
                                tr { th { "距农户位置" } td.far[is_beyond(distance, limit)] {
                                    (metres(distance))
                                    @if is_beyond(distance, limit) { " （超出 " (fieldsync_model::geo::distance_zh(limit)) "核验范围）" }
                                } }
                            }
                        },
                        None => p.bad { "无定位" },
                    }
                    @if let Some(home) = &household.location {
                        p.muted { "农户登记位置：" (format!("{:.6}, {:.6}", home.lat, home.lon)) "（" (home.crs.label_zh()) "）" }
                    }
                }
            }
            section.card {
                h2 { "家庭成员" }
                table {
                    thead { tr {
                        th { "姓名" } th { "与户主关系" } th { "性别" } th { "出生年份" } th { "身份证号" }
                        th { "健康状况" } th { "劳动能力" } th { "在校情况" } th { "残疾" } th { "医保" }
                    } }
                    tbody {
                        @for member in household.current_members() {
                            tr {
                                td { (member.name) }
                                td { (member.relation.label_zh()) }
                                td { (member.sex.label_zh()) }
                                td { (super::display::birth_year_zh(&member.birth_date)) }
                                td { code { (id_number::mask(&member.id_number)) } }
                                td { (member.health.label_zh()) }
                                td { (member.labour_capacity.label_zh()) }
                                td { (member.schooling.label_zh()) }
                                td {
                                    (member.disability.label_zh())
                                    @if member.disability_grade > 0 { " " (member.disability_grade) "级" }
                                }
                                td { (yes_no(member.has_medical_insurance)) }
                            }
                        }
                    }
                }
            }
            section.card #visit-record {
                h2 { "走访记录 " span.count { "第 " (visit.revision) " 版" @if visit.supersedes_revision > 0 { "（更正第 " (visit.supersedes_revision) " 版）" } } }
                table.kv {
                    tr { th { "帮扶干部" } td { (detail.cadre_name) } }
                    tr { th { "走访方式" } td {
                        span.warn-text[visit.mode != VisitMode::InPerson] { (visit.mode.label_zh()) }
                        @if let Some(reason) = visit.exception_reason { "（非入户原因：" (reason.label_zh()) "）" }
                    } }
                    tr { th { "走访类型" } td { (visit.visit_type.label_zh()) } }
                    tr { th { "入户时间" } td { (beijing_minutes(visit.checkin_at)) } }
                    tr { th { "离开时间" } td { (beijing_minutes(visit.checkout_at)) } }
                    tr { th { "提交时间" } td { (beijing_minutes(detail.submitted_at)) } }
                    tr { th { "生产生活情况" } td.text #observed-situation { (visit.observed_situation) } }
                    tr { th { "帮扶计划实施情况" } td.text { (visit.plan_progress) } }
                    tr { th { "存在问题" } td.text { (visit.problems) } }
                    tr { th { "帮扶措施" } td.text { (visit.actions) } }
                    tr { th { "农户需求" } td.text { (visit.needs) } }
                    tr { th { "宣讲政策" } td {
                        @if visit.policies_explained.is_empty() { span.muted { "无" } } @else { (visit.policies_explained.join("、")) }
                    } }
                }
                h2 { "两不愁三保障" }
                table.kv {
                    @for (name, result) in visit.wellbeing.items() {
                        tr { th { (name) } td.(check_result_class(result)) { (check_result_label(result)) } }
                    }
                    @if !visit.wellbeing.note.trim().is_empty() {
                        tr { th { "说明" } td.text { (visit.wellbeing.note) } }
                    }
                }
                @if !visit.proposed_changes.is_empty() {
                    h2 { "信息变更申请" }
                    table {
                        thead { tr { th { "对象" } th { "字段" } th { "原值" } th { "新值" } th { "原因" } } }
                        tbody {
                            @for change in &visit.proposed_changes {
                                tr { td { (change.target) } td { (change.field) } td { (change.old_value) } td { (change.new_value) } td { (change.reason) } }
                            }
                        }
                    }
                }
            }
            section.card #photos {
                h2 { "走访照片" }
                div.photo-compare {
                    div #photos-this-visit {
                        h3 { "本次走访 " span.count { "（" (visit.photo_ids.len()) " 张，" (this_month) "）" } }
                        @if visit.photo_ids.is_empty() {
                            p.muted { "无照片" }
                        } @else {
                            div.photos {
                                @for (index, photo_id) in visit.photo_ids.iter().enumerate() {
                                    @let record = detail.photos.iter().find(|photo| &photo.photo_id == photo_id);
                                    (photo_tile(photo_id, detail.photo_ids_received.contains(photo_id), html! {
                                        div { "照片" (index + 1) "：" (record.and_then(|record| record.subject).map_or("照片", |subject| subject.label_zh())) }
                                        @if let Some(record) = record {
                                            div.muted { "拍摄：" (beijing_minutes_or_dash(record.captured_at_device)) }
                                            @if !record.in_app_camera { div.warn-text { "非应用内拍摄" } }
                                        }
                                    }))
                                }
                            }
                        }
                    }
                    (history_section(view.history, &this_month))
                }
            }
            section.card #decision {
                h2 { "审核 " (state_badge(detail.state)) }
                @if detail.status.decided_at.is_some() {
                    table.kv {
                        tr { th { "审核人" } td { (detail.status.reviewer_name) } }
                        tr { th { "审核时间" } td { (beijing_minutes_or_dash(detail.status.decided_at)) } }
                        @if !detail.status.reasons.is_empty() {
                            tr { th { "退回原因" } td {
                                @for (index, reason) in detail.status.reasons.iter().enumerate() {
                                    @if index > 0 { "、" }
                                    (return_reason_label(&reason.code)) "（" (visit_field_label(&reason.field)) "）"
                                }
                            } }
                        }
                        @if !detail.status.note.is_empty() { tr { th { "说明" } td.text { (detail.status.note) } } }
                        @if !detail.status.deadline.is_empty() { tr { th { "整改期限" } td { (detail.status.deadline) } } }
                    }
                }
                @if detail.state == ReviewState::Submitted {
                    (decision_form(detail, view.now, view.filters))
                } @else {
                    p.muted { "该版本已审核，无需操作。" }
                }
            }
        },
    )
}

/// Return reasons offered per visit field: each checkbox attaches its code to that field
/// (`code:field`), so the phone can point the cadre at what to fix.
pub const REASONS_BY_FIELD: &[(&str, &[&str])] = &[
    ("photo_ids", &["photo_not_at_household", "photo_unclear"]),
    ("gps", &["gps_far", "gps_missing"]),
    ("observed_situation", &["content_too_short"]),
    ("plan_progress", &["content_too_short"]),
    ("problems", &["content_too_short"]),
    ("household_id", &["wrong_household"]),
    ("", &["income_inconsistent", "other"]),
];

/// The approve / return form. Both buttons post the same form; the server ignores ticked
/// reasons on an approval. `revision` and `content_hash` pin the exact version reviewed;
/// the filters ride along so the page after the decision is the next of the same list.
fn decision_form(detail: &VisitDetail, now: OffsetDateTime, filters: &QueueFilters) -> Markup {
    let today = now.to_offset(fieldsync_model::time_util::BEIJING).date();
    let today_text = format!(
        "{:04}-{:02}-{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    );
    let pending = pending_photos(detail);
    html! {
        form #decision-form method="post" action=(with_filters(&format!("/console/visits/{}/decision", detail.visit.visit_id), filters)) {
            (super::csrf::form_field())
            input type="hidden" name="revision" value=(detail.visit.revision);
            input type="hidden" name="content_hash" value=(detail.content_hash);
            fieldset #return-reasons tabindex="-1" {
                legend { "退回原因（勾选问题所在的项目；退回时至少选择一项或填写说明）" }
                @for (field, codes) in REASONS_BY_FIELD {
                    div.reason-group data-field=(field) {
                        span.reason-field { (visit_field_label(field)) "：" }
                        @for code in *codes {
                            label.check {
                                input type="checkbox" name="reasons" value={ (code) ":" (field) };
                                (return_reason_label(code))
                            }
                        }
                    }
                }
            }
            label.block { "说明" textarea #return-note name="note" rows="3" maxlength="2000" placeholder="退回时请写明需要补充或更正的内容" {} }
            label.block { "整改期限 " input #return-deadline type="date" name="deadline" min=(today_text); }
            div.actions {
                button.approve #approve-button type="submit" name="decision" value="approve" disabled[pending > 0]
                    title=[(pending > 0).then_some("照片尚未上传完成，暂不能通过")] { "通过" }
                button.return #return-button type="submit" name="decision" value="return" { "退回" }
                @if pending > 0 { span.muted { "照片上传完成后才能通过；可以先退回。" } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_the_queue_filters() {
        let filters = QueueFilters {
            village_id: Some("v 1".into()),
            min_age_days: Some(3),
            ..QueueFilters::default()
        };
        assert_eq!(
            visit_path("abc", &filters),
            "/console/visits/abc?village=v+1&age=3"
        );
        assert_eq!(queue_path(&QueueFilters::default()), "/console/queue");
    }

    #[test]
    fn every_offered_reason_has_a_label_and_a_known_field() {
        for (field, codes) in REASONS_BY_FIELD {
            assert!(
                field.is_empty() || visit_field_label(field) != *field,
                "{field}"
            );
            for code in *codes {
                assert_ne!(return_reason_label(code), *code, "{code} has no label");
            }
        }
    }
}
