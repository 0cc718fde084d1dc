//! HTML of the console, written with maud so that every interpolated value is escaped:
//! names, addresses and free text come from phones and must never become markup. No
//! JavaScript and no external resources; the stylesheet is inlined.

use axum::http::StatusCode;
use fieldsync_model::codes::{CodeList, ReviewState, VisitMode};
use fieldsync_model::evidence::EvidenceFlag;
use fieldsync_model::household::GeoPoint;
use fieldsync_model::id_number;
use fieldsync_model::review::{RETURN_REASON_CODES, return_reason_label};
use fieldsync_model::visit::GpsFix;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use time::OffsetDateTime;

use super::display::{
    beijing_minutes, beijing_minutes_or_dash, check_result_class, check_result_label, is_beyond,
    metres, yes_no,
};
use super::fields::{field_label_zh, value_zh};
use crate::error::ServiceError;
use crate::store::{
    Area, ConflictRecord, DeviceBacklog, Principal, QueueItem, UnvisitedHousehold, VisitDetail,
};
use fieldsync_model::register::{FieldTarget, RegisterWrite};

const CONSOLE_CSS: &str = include_str!("console.css");

/// Which navigation entry is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nav {
    Queue,
    Unvisited,
    Conflicts,
    Devices,
    None,
}

/// The frame around every page: header with navigation and the user, then `content`.
fn layout(title: &str, principal: Option<&Principal>, active: Nav, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · fieldsync 走访审核" }
                style { (PreEscaped(CONSOLE_CSS)) }
            }
            body {
                header.top {
                    a.brand href="/console/queue" { "fieldsync 走访审核" }
                    @if let Some(principal) = principal {
                        nav {
                            a.active[active == Nav::Queue] href="/console/queue" { "待审核" }
                            a.active[active == Nav::Unvisited] href="/console/unvisited" { "本月未入户走访" }
                            a.active[active == Nav::Conflicts] href="/console/conflicts" { "冲突记录" }
                            a.active[active == Nav::Devices] href="/console/devices" { "设备未上传数据" }
                        }
                        span.user { (principal.display_name) " · " (principal.role.label_zh()) }
                        form method="post" action="/console/logout" {
                            button.link type="submit" { "退出登录" }
                        }
                    }
                }
                main { (content) }
            }
        }
    }
}

/// The login page, with the username kept and an optional error line.
pub fn login_page(username: &str, error: Option<&str>) -> Markup {
    layout(
        "登录",
        None,
        Nav::None,
        html! {
            section.card.login {
                h1 { "审核员登录" }
                @if let Some(error) = error {
                    div.notice.error role="alert" { (error) }
                }
                form method="post" action="/console/login" {
                    label { "用户名" input type="text" name="username" value=(username) autocomplete="username" required autofocus; }
                    label { "密码" input type="password" name="password" autocomplete="current-password" required; }
                    button.primary type="submit" { "登录" }
                }
            }
        },
    )
}

/// Chinese title and message for an error page.
pub fn error_text(error: &ServiceError) -> (&'static str, String) {
    match error {
        ServiceError::Unauthenticated(_) => {
            ("请先登录", "未登录或登录已过期，请重新登录。".to_owned())
        }
        ServiceError::PermissionDenied(message) => ("无权访问", message.clone()),
        ServiceError::InvalidArgument { .. } => {
            ("提交内容有误", format!("请检查后重新提交：{error}"))
        }
        ServiceError::NotFound(_) => (
            "未找到",
            "该记录不存在，或不在您负责的乡镇范围内。".to_owned(),
        ),
        ServiceError::FailedPrecondition(message) | ServiceError::AlreadyExists(message) => (
            "记录已变化",
            format!(
                "该走访记录已被更新或已由他人审核，您看到的不是最新版本。请重新打开该记录，核对最新内容后再审核。（{message}）"
            ),
        ),
        ServiceError::DeviceClockWrong { .. } => ("设备时间不正确", error.to_string()),
        ServiceError::Internal | ServiceError::Unavailable => ("服务暂时不可用", error.to_string()),
    }
}

/// A full error page.
pub fn error_page(status: StatusCode, title: &str, message: &str, back_to: Option<&str>) -> Markup {
    layout(
        title,
        None,
        Nav::None,
        html! {
            section.card {
                h1 { (title) }
                div.notice.error role="alert" { (message) }
                p {
                    @if let Some(back_to) = back_to {
                        a href=(back_to) { "返回" }
                        " · "
                    }
                    a href="/console/queue" { "待审核列表" }
                }
                p.muted { "HTTP " (status.as_u16()) }
            }
        },
    )
}

/// Everything the queue page shows.
#[derive(Debug)]
pub struct QueueView<'a> {
    pub principal: &'a Principal,
    pub township_name: &'a str,
    pub villages: &'a [Area],
    pub selected_village: Option<&'a str>,
    /// The evidence flag code the queue is filtered by.
    pub selected_flag: Option<&'a str>,
    pub items: &'a [QueueItem],
    pub radius_m: f64,
    pub decided: Option<&'static str>,
    pub truncated: bool,
}

/// `GET /console/queue`.
pub fn queue_page(view: &QueueView<'_>) -> Markup {
    layout(
        "待审核走访",
        Some(view.principal),
        Nav::Queue,
        html! {
            h1 { (view.township_name) " 待审核走访 " span.count { "（" (view.items.len()) " 条）" } }
            @if let Some(notice) = view.decided {
                div.notice.info role="status" { (notice) }
            }
            div.toolbar {
                form method="get" action="/console/queue" {
                    label for="village" { "村：" }
                    select #village name="village" {
                        option value="" selected[view.selected_village.is_none()] { "全部村" }
                        @for village in view.villages {
                            option value=(village.area_id) selected[view.selected_village == Some(village.area_id.as_str())] { (village.name) }
                        }
                    }
                    @if let Some(flag) = view.selected_flag {
                        input type="hidden" name="flag" value=(flag);
                    }
                    button.secondary type="submit" { "筛选" }
                }
                @if let Some(flag) = view.selected_flag {
                    span {
                        "仅显示核验提示：" strong { (flag_label(view.items, flag)) } " "
                        a href=(queue_link(view.selected_village, None)) { "清除" }
                    }
                }
                a href="/console/unvisited" { "查看本月未入户走访农户 →" }
            }
            @if view.items.is_empty() {
                section.card { p.muted { "暂无待审核的走访记录。" } }
            } @else {
                table {
                    thead { tr {
                        th { "户主" } th { "村" } th { "帮扶干部" } th { "走访方式" } th { "提交时间" }
                        th.num { "距离" } th.num { "照片数" } th { "核验提示" } th {}
                    } }
                    tbody {
                        @for item in view.items {
                            @let far = is_beyond(item.distance_m, view.radius_m);
                            @let in_person = item.mode == VisitMode::InPerson;
                            tr {
                                td { a href={ "/console/visits/" (item.visit_id) } { (item.head_name) } }
                                td { (item.village_name) }
                                td { (item.cadre_name) }
                                td.warn-text[!in_person] { (item.mode.label_zh()) }
                                td { (beijing_minutes(item.submitted_at)) }
                                td.num.far[far] title=[far.then_some("超出核验半径")] { (metres(item.distance_m)) }
                                td.num.bad[in_person && item.photo_count == 0] { (item.photo_count) }
                                td {
                                    @for flag in &item.flags {
                                        a.badge.flag.info[flag.is_informational()] href=(queue_link(view.selected_village, Some(flag.code()))) title=(flag.detail()) { (flag.label_zh()) }
                                        " "
                                    }
                                }
                                td { a href={ "/console/visits/" (item.visit_id) } { "审核" } }
                            }
                        }
                    }
                }
                @if view.truncated {
                    p.muted { "仅显示最早提交的 " (view.items.len()) " 条；审核后其余记录会依次显示。" }
                }
            }
            p.muted { "距离为定位点与农户登记位置的直线距离；超过 " (format!("{:.0}", view.radius_m)) " 米标红。核验提示仅供审核参考，不会自动退回；点击提示可筛选同类记录。时间为北京时间。" }
        },
    )
}

/// Everything the detail page shows.
#[derive(Debug)]
pub struct DetailView<'a> {
    pub principal: &'a Principal,
    pub detail: &'a VisitDetail,
    pub radius_m: f64,
    pub decided: Option<&'static str>,
    pub today: OffsetDateTime,
}

/// Distance between the fix and the household pin: the stored one, else computed when both
/// points share a coordinate system.
fn fix_distance(detail: &VisitDetail) -> Option<f64> {
    detail.distance_m.or_else(|| {
        let gps = detail.visit.gps?;
        let home = detail.household.location?;
        fieldsync_model::geo::distance_between(
            &GeoPoint {
                lat: gps.lat,
                lon: gps.lon,
                crs: gps.crs,
            },
            &home,
        )
    })
}

/// The queue page's link with the given filters.
fn queue_link(village: Option<&str>, flag: Option<&str>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(village) = village {
        query.append_pair("village", village);
    }
    if let Some(flag) = flag {
        query.append_pair("flag", flag);
    }
    let query = query.finish();
    if query.is_empty() {
        "/console/queue".to_owned()
    } else {
        format!("/console/queue?{query}")
    }
}

/// The label of a flag code, taken from an item carrying it (the filtered queue's items all
/// do); the code itself when none is shown.
fn flag_label<'a>(items: &[QueueItem], code: &'a str) -> &'a str {
    items
        .iter()
        .flat_map(|item| &item.flags)
        .find(|flag| flag.code() == code)
        .map_or(code, |flag| flag.label_zh())
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
    let pending = detail
        .visit
        .photo_ids
        .iter()
        .filter(|id| !detail.photo_ids_received.contains(id))
        .count();
    if pending > 0 {
        notes.push(format!(
            "{pending} 张照片尚未上传完成，照片相关核验将在上传后进行。"
        ));
    }
    notes
}

/// The 核验提示 box: the visit's evidence flags (DESIGN §5), each with its label and the
/// numbers behind it. They inform the reviewer; they never reject or block a decision.
fn evidence_box(detail: &VisitDetail) -> Markup {
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
                                " " (flag.detail())
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

/// `GET /console/visits/{visit_id}`.
pub fn detail_page(view: &DetailView<'_>) -> Markup {
    let detail = view.detail;
    let visit = &detail.visit;
    let household = &detail.household;
    let distance = fix_distance(detail);
    let limit = view.radius_m + visit.gps.map_or(0.0, |gps| gps.accuracy_m.max(0.0));
    let title = format!("走访审核：{}", household.head_name);
    layout(
        &title,
        Some(view.principal),
        Nav::Queue,
        html! {
            @if let Some(notice) = view.decided {
                div.notice.info role="status" { (notice) }
            }
            h1 { (title) " " span.count { (household.village_name) } " " (state_badge(detail.state)) }
            (evidence_box(detail))
            div.grid2 {
                section.card {
                    h2 { "农户信息" }
                    table.kv {
                        tr { th { "户主" } td { (household.head_name) } }
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
                section.card {
                    h2 { "定位核验" }
                    @match &visit.gps {
                        Some(gps) => {
                            table.kv {
                                (gps_rows(gps))
                                tr { th { "距农户位置" } td.far[is_beyond(distance, limit)] {
                                    (metres(distance))
                                    @if is_beyond(distance, limit) { " （超出 " (format!("{limit:.0}")) " 米核验范围）" }
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
                        th { "姓名" } th { "与户主关系" } th { "性别" } th { "出生日期" } th { "身份证号" }
                        th { "健康状况" } th { "劳动能力" } th { "在校情况" } th { "残疾" } th { "医保" }
                    } }
                    tbody {
                        @for member in household.current_members() {
                            tr {
                                td { (member.name) }
                                td { (member.relation.label_zh()) }
                                td { (member.sex.label_zh()) }
                                td { (member.birth_date) }
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
            section.card {
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
                    tr { th { "生产生活情况" } td.text { (visit.observed_situation) } }
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
            section.card {
                h2 { "走访照片 " span.count { "（" (visit.photo_ids.len()) " 张）" } }
                @if visit.photo_ids.is_empty() {
                    p.muted { "无照片" }
                } @else {
                    div.photos {
                        @for photo_id in &visit.photo_ids {
                            @let record = detail.photos.iter().find(|photo| &photo.photo_id == photo_id);
                            @let received = detail.photo_ids_received.contains(photo_id);
                            div.photo {
                                @if received {
                                    a href={ "/console/photos/" (photo_id) "/display" } target="_blank" {
                                        img src={ "/console/photos/" (photo_id) "/thumb" } alt="走访照片" loading="lazy";
                                    }
                                } @else {
                                    div.pending { "上传中" }
                                }
                                @if let Some(record) = record {
                                    div { (record.subject.map_or("照片", |subject| subject.label_zh())) }
                                    div.muted { "拍摄：" (beijing_minutes_or_dash(record.captured_at_device)) }
                                    @if !record.in_app_camera { div.warn-text { "非应用内拍摄" } }
                                }
                            }
                        }
                    }
                }
            }
            section.card {
                h2 { "审核 " (state_badge(detail.state)) }
                @if detail.status.decided_at.is_some() {
                    table.kv {
                        tr { th { "审核人" } td { (detail.status.reviewer_name) } }
                        tr { th { "审核时间" } td { (beijing_minutes_or_dash(detail.status.decided_at)) } }
                        @if !detail.status.reasons.is_empty() {
                            tr { th { "退回原因" } td {
                                (detail.status.reasons.iter().map(|reason| return_reason_label(&reason.code)).collect::<Vec<_>>().join("、"))
                            } }
                        }
                        @if !detail.status.note.is_empty() { tr { th { "说明" } td.text { (detail.status.note) } } }
                        @if !detail.status.deadline.is_empty() { tr { th { "整改期限" } td { (detail.status.deadline) } } }
                    }
                }
                @if detail.state == ReviewState::Submitted {
                    (decision_form(detail, view.today))
                } @else {
                    p.muted { "该版本已审核，无需操作。" }
                }
            }
        },
    )
}

/// The approve / return form. Both buttons post the same form; the server ignores ticked
/// reasons on an approval. `revision` and `content_hash` pin the exact version reviewed.
fn decision_form(detail: &VisitDetail, today: OffsetDateTime) -> Markup {
    let today = today.to_offset(fieldsync_model::time_util::BEIJING).date();
    let today_text = format!(
        "{:04}-{:02}-{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    );
    html! {
        form method="post" action={ "/console/visits/" (detail.visit.visit_id) "/decision" } {
            input type="hidden" name="revision" value=(detail.visit.revision);
            input type="hidden" name="content_hash" value=(detail.content_hash);
            fieldset {
                legend { "退回原因（退回时至少选择一项或填写说明）" }
                @for (code, label) in RETURN_REASON_CODES {
                    label.check { input type="checkbox" name="reasons" value=(code); (label) }
                }
            }
            label.block { "说明" textarea name="note" rows="3" maxlength="2000" placeholder="退回时请写明需要补充或更正的内容" {} }
            label.block { "整改期限 " input type="date" name="deadline" min=(today_text); }
            div.actions {
                button.approve type="submit" name="decision" value="approve" { "通过" }
                button.return type="submit" name="decision" value="return" { "退回" }
            }
        }
    }
}

/// One village's unvisited households.
#[derive(Debug)]
pub struct VillageGroup<'a> {
    pub village_id: &'a str,
    pub village_name: &'a str,
    pub households: Vec<&'a UnvisitedHousehold>,
}

/// Group households by village, keeping the store's village order (first appearance).
pub fn group_by_village(households: &[UnvisitedHousehold]) -> Vec<VillageGroup<'_>> {
    let mut groups: Vec<VillageGroup<'_>> = Vec::new();
    for household in households {
        match groups
            .iter_mut()
            .find(|group| group.village_id == household.village_id)
        {
            Some(group) => group.households.push(household),
            None => groups.push(VillageGroup {
                village_id: &household.village_id,
                village_name: &household.village_name,
                households: vec![household],
            }),
        }
    }
    groups
}

/// Everything the unvisited page shows.
#[derive(Debug)]
pub struct UnvisitedView<'a> {
    pub principal: &'a Principal,
    pub month_label: String,
    pub groups: &'a [VillageGroup<'a>],
    pub total: usize,
}

/// `GET /console/unvisited`.
pub fn unvisited_page(view: &UnvisitedView<'_>) -> Markup {
    layout(
        "本月未入户走访",
        Some(view.principal),
        Nav::Unvisited,
        html! {
            h1 { (view.month_label) " 未入户走访农户 " span.count { "（共 " (view.total) " 户）" } }
            p.muted { "本月尚无已提交或已通过的入户走访的农户；电话、视频等非入户走访不计入。" }
            @if view.groups.is_empty() {
                section.card { p.ok { "本月所有农户均已入户走访。" } }
            } @else {
                ul.village-index {
                    @for group in view.groups {
                        li { a href={ "#village-" (group.village_id) } { (group.village_name) } " " span.count { (group.households.len()) " 户" } }
                    }
                }
                @for group in view.groups {
                    section.card id={ "village-" (group.village_id) } {
                        h2 { (group.village_name) " " span.count { "（" (group.households.len()) " 户）" } }
                        table {
                            thead { tr { th { "户主" } th { "帮扶干部" } } }
                            tbody {
                                @for household in &group.households {
                                    tr {
                                        td { (household.head_name) }
                                        td {
                                            @if household.cadre_names.is_empty() { span.bad { "未结对" } }
                                            @else { (household.cadre_names.join("、")) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unvisited(village: &str, head: &str) -> UnvisitedHousehold {
        UnvisitedHousehold {
            household_id: format!("h-{head}"),
            head_name: head.to_owned(),
            village_id: village.to_owned(),
            village_name: format!("{village}村"),
            cadre_names: vec!["李干部".to_owned()],
        }
    }

    #[test]
    fn households_group_by_village_in_first_seen_order() {
        let households = vec![
            unvisited("b", "张三"),
            unvisited("a", "李四"),
            unvisited("b", "王五"),
        ];
        let groups = group_by_village(&households);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].village_name, "b村");
        assert_eq!(groups[0].households.len(), 2);
        assert_eq!(groups[1].households[0].head_name, "李四");
    }

    #[test]
    fn names_from_phones_are_escaped() {
        let page = login_page("<script>alert(1)</script>", Some("用户名或密码错误")).into_string();
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains(r#"lang="zh-CN""#));
        assert!(page.contains("用户名或密码错误"));
    }
}

/// Everything the conflict page shows.
#[derive(Debug)]
pub struct ConflictsView<'a> {
    pub principal: &'a Principal,
    pub conflicts: &'a [ConflictRecord],
    pub resolved: bool,
}

/// One write of a conflict as a table row: value, author, time, and whether it is shown.
fn conflict_write_row(
    label: &str,
    field: &str,
    write: &RegisterWrite,
    author: &str,
    current: Option<&RegisterWrite>,
) -> Markup {
    let shown = current.is_some_and(|current| current.stamp == write.stamp);
    html! {
        tr {
            th { (label) }
            td.text { (value_zh(field, &write.value)) }
            td { (author) }
            td { (super::display::hlc_beijing_minutes(write.stamp.hlc)) }
            td { @if shown { span.badge.approved { "当前生效" } } @else { span.muted { "未生效" } } }
        }
    }
}

/// `GET /console/conflicts`: concurrent edits with different values, for the supervisor to
/// pick one or type the right value.
pub fn conflicts_page(view: &ConflictsView<'_>) -> Markup {
    layout(
        "冲突记录",
        Some(view.principal),
        Nav::Conflicts,
        html! {
            h1 { "冲突记录 " span.count { "（" (view.conflicts.len()) " 条待处理）" } }
            @if view.resolved {
                div.notice.info role="status" { "已处理。所选的值会在帮扶干部下次同步时下发到手机。" }
            }
            p.muted { "两部手机在不知道对方修改的情况下，把同一项改成了不同的值。系统暂按时间较晚的一方生效，请核实后选定正确的值。时间为北京时间。" }
            @if view.conflicts.is_empty() {
                section.card { p.muted { "暂无待处理的冲突。" } }
            }
            @for conflict in view.conflicts {
                @let field = conflict.field.as_str();
                @let current = conflict.current.as_ref();
                @let other_current = current.filter(|write| write.stamp != conflict.first.stamp && write.stamp != conflict.second.stamp);
                section.card {
                    h2 {
                        (conflict.head_name) " · " (conflict.village_name) " — "
                        @if let FieldTarget::Member(_) = conflict.target {
                            "成员 " (conflict.member_name.as_deref().unwrap_or("（未知成员）")) " 的 "
                        }
                        (field_label_zh(field))
                    }
                    table {
                        thead { tr { th {} th { "填写的值" } th { "填写人" } th { "修改时间" } th { "状态" } } }
                        tbody {
                            (conflict_write_row("值 A", field, &conflict.first, &conflict.first_author_name, current))
                            (conflict_write_row("值 B", field, &conflict.second, &conflict.second_author_name, current))
                            @if let Some(write) = other_current {
                                tr {
                                    th { "当前值" }
                                    td.text { (value_zh(field, &write.value)) }
                                    td.muted { "之后的修改" }
                                    td { (super::display::hlc_beijing_minutes(write.stamp.hlc)) }
                                    td { span.badge.approved { "当前生效" } }
                                }
                            }
                        }
                    }
                    form method="post" action="/console/conflicts/resolve" {
                        input type="hidden" name="conflict_key" value=(conflict.conflict_key);
                        fieldset {
                            legend { "选定正确的值" }
                            label.check { input type="radio" name="choice" value="first" required; "值 A：" (value_zh(field, &conflict.first.value)) }
                            label.check { input type="radio" name="choice" value="second"; "值 B：" (value_zh(field, &conflict.second.value)) }
                            label.check { input type="radio" name="choice" value="custom"; "其他值：" input type="text" name="custom_value" maxlength="200"; }
                        }
                        button.primary type="submit" { "确认处理" }
                    }
                }
            }
        },
    )
}

/// Everything the devices page shows.
#[derive(Debug)]
pub struct DevicesView<'a> {
    pub principal: &'a Principal,
    pub devices: &'a [DeviceBacklog],
    pub now: OffsetDateTime,
}

/// Clock differences beyond this are highlighted: the server clamps HLCs from 5 minutes.
const SKEW_WARNING: time::Duration = time::Duration::minutes(5);

/// `GET /console/devices`: cadres' phones holding data not yet uploaded, oldest first.
pub fn devices_page(view: &DevicesView<'_>) -> Markup {
    use super::display::{skew_zh, whole_days};
    layout(
        "设备未上传数据",
        Some(view.principal),
        Nav::Devices,
        html! {
            h1 { "设备未上传数据" }
            p.muted { "每次同步时手机会报告尚未上传的记录。长期未上传的数据可能随手机丢失，请提醒相关帮扶干部尽快联网同步。时间为北京时间。" }
            @if view.devices.is_empty() {
                section.card { p.muted { "暂无设备报告。" } }
            } @else {
                table {
                    thead { tr {
                        th { "设备" } th { "帮扶干部" } th.num { "未上传记录" } th.num { "待传照片" }
                        th.num { "最早未上传" } th { "最近同步" } th { "手机时间" } th { "最近错误" }
                    } }
                    tbody {
                        @for device in view.devices {
                            @let heartbeat = &device.heartbeat;
                            @let skew = heartbeat.device_time.map(|time| time - device.last_seen_at);
                            @let skewed = skew.is_some_and(|skew| skew.abs() > SKEW_WARNING);
                            @let age = heartbeat.oldest_unsent_at.map(|oldest| whole_days(oldest, view.now));
                            tr {
                                td {
                                    @if device.device_name.is_empty() { (short_id(&device.device_id)) } @else { (device.device_name) }
                                    br; span.muted { (short_id(&device.device_id)) " · " (heartbeat.app_version) }
                                }
                                td { (device.cadre_name) }
                                td.num.bad[heartbeat.unsent_mutations > 0] { (heartbeat.unsent_mutations) }
                                td.num { (heartbeat.pending_uploads) }
                                td.num.bad[age.is_some_and(|days| days >= 3)] {
                                    @match age { Some(days) => { (days) " 天" }, None => "—" }
                                }
                                td { (beijing_minutes(device.last_seen_at)) }
                                td.bad[skewed] title=[skewed.then_some("手机时间与服务器相差超过5分钟，请提醒校准")] {
                                    @match skew { Some(skew) => (skew_zh(skew)), None => "—" }
                                }
                                td.text { (heartbeat.last_error) }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The first 8 characters of an id: enough to tell devices apart on screen.
fn short_id(id: &str) -> &str {
    id.char_indices()
        .nth(8)
        .map_or(id, |(index, _)| &id[..index])
}
