//! HTML of the console, written with maud so that every interpolated value is escaped:
//! names, addresses and free text come from phones and must never become markup. No
//! external resources; the stylesheet is inlined, and the only script is the same-origin
//! keyboard-shortcut file (`console.js`), which no page needs to work.

use axum::http::StatusCode;
use fieldsync_model::codes::CodeList;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use time::OffsetDateTime;

use super::display::beijing_minutes;
use super::fields::{field_label_zh, value_zh};
use crate::error::ServiceError;
use crate::store::{ConflictRecord, DeviceBacklog, Principal, UnvisitedHousehold};
use fieldsync_model::register::{FieldTarget, RegisterWrite};

const CONSOLE_CSS: &str = include_str!("console.css");

/// Which navigation entry is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Nav {
    /// 工作台 (ledger.rs).
    Dashboard,
    Queue,
    /// 收入监测 (households.rs).
    Income,
    /// 两不愁三保障 (households.rs).
    Wellbeing,
    /// 标准线, county admin only (households.rs).
    Thresholds,
    Unvisited,
    Conflicts,
    Devices,
    /// 台账导出 (exports.rs).
    Exports,
    /// 结对管理, county admin only (pairings.rs).
    Pairings,
    /// 花名册导入, county admin only (roster.rs).
    Import,
    /// 账号管理, county admin only (accounts.rs).
    Accounts,
    /// 行政区划 and its import, county admin only (areas.rs).
    Areas,
    None,
}

/// The frame around every page: header with navigation and the user, then `content`.
pub(super) fn layout(
    title: &str,
    principal: Option<&Principal>,
    active: Nav,
    content: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · fieldsync 走访审核" }
                // The session's CSRF token, for scripts that post (csrf.rs).
                (super::csrf::meta_tag())
                style { (PreEscaped(CONSOLE_CSS)) }
                // Keyboard shortcuts only; every page works without it (review_views.rs).
                script src=(super::CONSOLE_JS_PATH) defer {}
            }
            body {
                header.top {
                    a.brand href="/console/dashboard" { "fieldsync 走访审核" }
                    @if let Some(principal) = principal {
                        @if super::STAFF_ROLES.contains(&principal.role) {
                            (super::search::search_form(""))
                        }
                        // The menu toggle for phones: a checkbox and its label, so the
                        // navigation opens and closes without the script (console.css).
                        input.nav-toggle #nav-toggle type="checkbox" aria-label="展开或收起菜单";
                        label.nav-toggle-label for="nav-toggle" { "菜单" }
                        div.nav-panel {
                            (navigation(principal, active))
                            div.account {
                                span.user { (principal.display_name) " · " (principal.role.label_zh()) }
                                a href="/console/password" { "修改密码" }
                                form method="post" action="/console/logout" {
                                    (super::csrf::form_field())
                                    button.link type="submit" { "退出登录" }
                                }
                            }
                        }
                    }
                }
                main {
                    (super::audit_banner::banner(principal))
                    (content)
                }
            }
        }
    }
}

/// Path of a household's page (户档案).
pub(super) fn household_path(household_id: &str) -> String {
    format!("/console/households/{household_id}")
}

/// A household's name as a link to its page (户档案): every household name in the console
/// is one.
pub(super) fn household_name_link(household_id: &str, name: &str) -> Markup {
    html! { a.household href=(household_path(household_id)) { (name) } }
}

/// The navigation entries the principal's role may open; `active` is highlighted.
fn navigation(principal: &Principal, active: Nav) -> Markup {
    html! {
        nav {
            a.active[active == Nav::Dashboard] href="/console/dashboard" { "工作台" }
            // Review pages are the township supervisor's (the `Reviewer`
            // extractor); other roles would only meet a 403 there.
            @if principal.role == fieldsync_model::codes::Role::Township {
                a.active[active == Nav::Queue] href="/console/queue" { "待审核" }
                a.active[active == Nav::Unvisited] href="/console/unvisited" { "本月未入户走访" }
                a.active[active == Nav::Conflicts] href="/console/conflicts" { "冲突记录" }
                a.active[active == Nav::Devices] href="/console/devices" { "设备未上传数据" }
            }
            a.active[active == Nav::Income] href="/console/income" { "收入监测" }
            a.active[active == Nav::Wellbeing] href="/console/wellbeing" { "两不愁三保障" }
            @if principal.role == fieldsync_model::codes::Role::County {
                a.active[active == Nav::Thresholds] href="/console/thresholds" { "标准线" }
            }
            a.active[active == Nav::Exports] href="/console/exports" { "台账导出" }
            @if principal.role == fieldsync_model::codes::Role::County {
                a.active[active == Nav::Pairings] href="/console/pairings" { "结对管理" }
                a.active[active == Nav::Areas] href="/console/areas" { "行政区划" }
                a.active[active == Nav::Import] href="/console/import" { "花名册导入" }
                a.active[active == Nav::Accounts] href="/console/accounts" { "账号管理" }
            }
            // The auditor reads the county's set-up (read-only).
            @if principal.role == fieldsync_model::codes::Role::Auditor {
                a.active[active == Nav::Areas] href="/console/areas" { "行政区划" }
                a.active[active == Nav::Accounts] href="/console/accounts" { "账号管理" }
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
        ServiceError::Unauthenticated(_) | ServiceError::SessionEnded { .. } => {
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
        ServiceError::Throttled { retry_after_secs } => (
            "登录尝试过多",
            format!("登录尝试过多，请 {retry_after_secs} 秒后再试。"),
        ),
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

// The queue and submission pages live in `review_views.rs`.

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
                                        td { (household_name_link(&household.household_id, &household.head_name)) }
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
    (author, device_name): (&str, &str),
    current: Option<&RegisterWrite>,
) -> Markup {
    let shown = current.is_some_and(|current| current.stamp == write.stamp);
    html! {
        tr {
            th { (label) }
            td.text { (value_zh(field, &write.value)) }
            td { (author) }
            td.device { (super::display::device_label(&write.stamp.device_id, device_name)) }
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
            p.muted { "两部手机在不知道对方修改的情况下，把同一项改成了不同的值。系统暂按时间较晚的一方生效，请核实后选定正确的值。设备按登录时报告的型号和设备编号后四位显示。时间为北京时间。" }
            @if view.conflicts.is_empty() {
                section.card { p.muted { "暂无待处理的冲突。" } }
            }
            @for conflict in view.conflicts {
                @let field = conflict.field.as_str();
                @let current = conflict.current.as_ref();
                @let other_current = current.filter(|write| write.stamp != conflict.first.stamp && write.stamp != conflict.second.stamp);
                section.card {
                    h2 {
                        (household_name_link(&conflict.household_id, &conflict.head_name)) " · " (conflict.village_name) " — "
                        @if let FieldTarget::Member(_) = conflict.target {
                            "成员 " (conflict.member_name.as_deref().unwrap_or("（未知成员）")) " 的 "
                        }
                        (field_label_zh(field))
                    }
                    table {
                        thead { tr { th {} th { "填写的值" } th { "填写人" } th { "设备" } th { "修改时间" } th { "状态" } } }
                        tbody {
                            (conflict_write_row("值 A", field, &conflict.first, (&conflict.first_author_name, &conflict.first_device_name), current))
                            (conflict_write_row("值 B", field, &conflict.second, (&conflict.second_author_name, &conflict.second_device_name), current))
                            @if let Some(write) = other_current {
                                tr {
                                    th { "当前值" }
                                    td.text { (value_zh(field, &write.value)) }
                                    td.muted { "之后的修改" }
                                    td { (super::display::device_label(&write.stamp.device_id, "")) }
                                    td { (super::display::hlc_beijing_minutes(write.stamp.hlc)) }
                                    td { span.badge.approved { "当前生效" } }
                                }
                            }
                        }
                    }
                    form method="post" action="/console/conflicts/resolve" {
                        (super::csrf::form_field())
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
