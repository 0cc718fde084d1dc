//! HTML of the household pages (maud, every value escaped): the income page (收入监测), the
//! 两不愁三保障 checklist counts, the county admin's thresholds (标准线), one household's page
//! with an inline SVG income chart, and the printable 明白卡 (its own document with
//! `@media print` rules: A4, no navigation, black on white).
//!
//! Masking: member ID numbers (`id_number::mask`) and phone numbers (`access::mask_phone`)
//! are always masked here, except the paired cadre's phone on the 明白卡, which exists so the
//! household can call its cadre (shown in full to township and county staff, masked for
//! auditors, who never see full values).

use fieldsync_model::CodeList;
use fieldsync_model::access::mask_phone;
use fieldsync_model::codes::{ReviewState, Role};
use fieldsync_model::household::Household;
use fieldsync_model::id_number;
use fieldsync_model::income::{IncomeRegistration, ResolvedLine};
use fieldsync_model::wellbeing::{ItemStatus, WellbeingItem};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::display::{beijing_minutes, birth_year_zh};
use super::views::{Nav, layout};
use crate::households::{
    HouseholdPage, IncomeOverview, ThresholdsView, WellbeingOverview, YearIncome,
};
use crate::store::{PairedCadre, Principal};

const CONSOLE_CSS: &str = include_str!("console.css");

/// `12,345.67` from fen; negative amounts keep their sign.
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let absolute = fen.unsigned_abs();
    let whole = (absolute / 100).to_string();
    let mut grouped = String::new();
    for (index, digit) in whole.chars().enumerate() {
        if index > 0 && (whole.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped}.{:02}", absolute % 100)
}

/// Whole yuan with thousands separators (lines are whole yuan).
fn whole_yuan(yuan_amount: i64) -> String {
    let text = yuan(yuan_amount.saturating_mul(100));
    text.trim_end_matches(".00").to_owned()
}

fn optional_yuan(fen: Option<i64>) -> String {
    fen.map_or_else(|| "—".to_owned(), yuan)
}

/// "全国" / "本县 522731000000" / "省级 520000000000": where a line comes from.
fn region_label(region: &str, county_id: Option<&str>) -> String {
    if region == fieldsync_model::income::NATIONAL_REGION {
        "全国".to_owned()
    } else if Some(region) == county_id {
        format!("本县（{region}）")
    } else if region.ends_with("0000000000") {
        format!("省级（{region}）")
    } else {
        format!("县级（{region}）")
    }
}

fn line_text(line: &ResolvedLine) -> String {
    format!(
        "{} {} 元（{}）",
        line.kind.label_zh(),
        whole_yuan(line.yuan),
        region_label(&line.region, None)
    )
}

fn margin_percent(margin: f64) -> String {
    let basis_points = fieldsync_model::income::margin_basis_points(margin);
    let text = format!("{:.2}", basis_points as f64 / 100.0);
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

fn flag_badge(income: &YearIncome, margin: f64) -> Markup {
    html! {
        @if let Some(flag) = &income.flag {
            span.badge.flagged title=(format!("预计人均纯收入 {} 元，低于 {} 元", yuan(flag.projected_per_capita_net_fen), yuan(flag.threshold_fen))) {
                "低于" (flag.line.kind.label_zh()) "×(1+" (margin_percent(margin)) ")"
            }
        }
    }
}

/// The line a row is judged by: the flagged line, else the highest line it cleared.
fn line_used(income: &YearIncome) -> Option<&ResolvedLine> {
    income
        .flag
        .as_ref()
        .map(|flag| &flag.line)
        .or_else(|| income.lines.iter().max_by_key(|line| line.yuan))
}

// ----- income page -----

fn income_link(year: i32, village: Option<&str>) -> String {
    match village {
        Some(village) => format!("/console/income?year={year}&village={village}"),
        None => format!("/console/income?year={year}"),
    }
}

/// `GET /console/income`.
pub fn income_page(principal: &Principal, view: &IncomeOverview) -> Markup {
    let registered = view
        .rows
        .iter()
        .filter(|row| !row.income.annual.quarters.is_empty())
        .count();
    layout(
        "收入监测",
        Some(principal),
        Nav::Income,
        html! {
            h1 { (view.year) "年 收入监测 " span.count { "（季登记 · 年汇总）" } }
            div.toolbar {
                form method="get" action="/console/income" {
                    label for="year" { "年度：" }
                    input #year type="text" name="year" value=(view.year) size="5" inputmode="numeric";
                    label for="village" { "村：" }
                    select #village name="village" {
                        option value="" selected[view.village.is_none()] { "全部村" }
                        @for village in &view.villages {
                            option value=(village.area_id) selected[view.village.as_deref() == Some(village.area_id.as_str())] { (village.name) }
                        }
                    }
                    button.secondary type="submit" { "筛选" }
                }
                a href=(income_link(view.year - 1, view.village.as_deref())) { "← " (view.year - 1) "年" }
                a href=(income_link(view.year + 1, view.village.as_deref())) { (view.year + 1) "年 →" }
            }
            @if view.lines.is_empty() {
                div.notice.warn role="status" {
                    "未设置" (view.year) "年的贫困线或防止返贫监测线，无法预警。"
                    @if principal.role == Role::County {
                        a href="/console/thresholds" { "设置标准线" }
                    } @else {
                        "请县级管理员在“标准线”页面设置。"
                    }
                }
            } @else {
                div.notice.info role="status" {
                    "对照标准线："
                    @for (index, line) in view.lines.iter().enumerate() {
                        @if index > 0 { "；" }
                        (line_text(line))
                    }
                    "。预计全年人均纯收入低于 标准线×(1+" (margin_percent(view.margin)) ") 的农户列在最前并标红。"
                    "预计方法：已登记季度的纯收入按季度数折算为全年（×4÷已登记季度数），除以现有家庭人口。"
                }
            }
            p {
                "共 " strong { (view.rows.len()) } " 户，已登记收入 " strong { (registered) } " 户，预警 "
                strong.bad { (view.flagged_count()) } " 户。"
            }
            table.income {
                thead { tr {
                    th { "户主" } th { "村" } th.num { "人口" }
                    th.num { "一季度" } th.num { "二季度" } th.num { "三季度" } th.num { "四季度" }
                    th.num { "已登记纯收入" } th.num { "预计全年人均纯收入" } th { "对照标准线" } th { "预警" }
                } }
                tbody {
                    @for row in &view.rows {
                        @let annual = &row.income.annual;
                        tr.flagged[row.income.flag.is_some()] {
                            td { a href=(super::views::household_path(&row.household.household_id)) { (row.household.head_name) } }
                            td { (row.household.village_name) }
                            td.num { (annual.household_size) }
                            @for quarter in 1..=4u32 {
                                td.num {
                                    @match annual.quarters.iter().find(|registration| registration.quarter == quarter) {
                                        Some(registration) => (yuan(registration.net_fen)),
                                        None => span.muted { "未登记" },
                                    }
                                }
                            }
                            td.num { @if annual.quarters.is_empty() { span.muted { "—" } } @else { (yuan(annual.net_fen)) } }
                            td.num { (optional_yuan(annual.projected_per_capita_net_fen)) }
                            td { @if let Some(line) = line_used(&row.income) { (line.kind.label_zh()) " " (whole_yuan(line.yuan)) } @else { span.muted { "—" } } }
                            td {
                                (flag_badge(&row.income, view.margin))
                                @if !row.income.replacements.is_empty() {
                                    " " span.badge.warn title="有季度的两份登记互不知情，请核实" { "登记不一致" }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

// ----- 两不愁三保障 page -----

fn wellbeing_link(village: Option<&str>, item: Option<WellbeingItem>) -> String {
    let mut parameters = Vec::new();
    if let Some(village) = village {
        parameters.push(format!("village={village}"));
    }
    match item {
        Some(item) => parameters.push(format!("item={}", item.code())),
        // Without a village the link must still ask for the list.
        None if village.is_none() => {
            parameters.push(format!("item={}", crate::households::ANY_ITEM))
        }
        None => {}
    }
    format!("/console/wellbeing?{}", parameters.join("&"))
}

fn count_cell(count: u32, village: Option<&str>, item: Option<WellbeingItem>) -> Markup {
    html! {
        td.num {
            @if count == 0 { span.muted { "0" } }
            @else { a.bad href=(wellbeing_link(village, item)) { (count) } }
        }
    }
}

/// `GET /console/wellbeing`.
pub fn wellbeing_page(principal: &Principal, view: &WellbeingOverview, rules_text: &str) -> Markup {
    let total = |item: WellbeingItem| -> u32 {
        view.villages
            .iter()
            .map(|village| village.failing.get(&item).copied().unwrap_or(0))
            .sum()
    };
    let village_name = view.village.as_deref().and_then(|id| {
        view.villages
            .iter()
            .find(|village| village.village_id == id)
            .map(|village| village.village_name.as_str())
    });
    layout(
        "两不愁三保障",
        Some(principal),
        Nav::Wellbeing,
        html! {
            h1 { "两不愁三保障 + 饮水安全 " span.count { "（不达标户数）" } }
            p.muted { (rules_text) }
            table.wellbeing {
                thead { tr {
                    th { "村" } th.num { "户数" }
                    @for item in WellbeingItem::ALL { th.num { (item.label_zh()) } }
                    th.num { "任一项不达标" }
                } }
                tbody {
                    @for village in &view.villages {
                        tr {
                            td { (village.village_name) }
                            td.num { (village.households) }
                            @for item in WellbeingItem::ALL {
                                (count_cell(village.failing.get(&item).copied().unwrap_or(0), Some(&village.village_id), Some(item)))
                            }
                            (count_cell(village.failing_any, Some(&village.village_id), None))
                        }
                    }
                    tr.total {
                        th { "合计" }
                        td.num { (view.villages.iter().map(|village| village.households).sum::<u32>()) }
                        @for item in WellbeingItem::ALL { (count_cell(total(item), None, Some(item))) }
                        (count_cell(view.villages.iter().map(|village| village.failing_any).sum(), None, None))
                    }
                }
            }
            @if view.listing {
                section.card #list {
                    h2 {
                        (village_name.unwrap_or("全部村"))
                        " · "
                        (view.item.map_or("任一项", WellbeingItem::label_zh))
                        "不达标农户 "
                        span.count { "（" (view.list.len()) " 户）" }
                        " " a href="/console/wellbeing" { "清除筛选" }
                    }
                    @if view.list.is_empty() {
                        p.muted { "没有不达标的农户。" }
                    } @else {
                        table {
                            thead { tr { th { "户主" } th { "村" } th { "不达标项及原因" } } }
                            tbody {
                                @for row in &view.list {
                                    tr.wellbeing-row data-household=(row.household.household_id) {
                                        td { a href=(super::views::household_path(&row.household.household_id)) { (row.household.head_name) } }
                                        td { (row.household.village_name) }
                                        td {
                                            ul.flags {
                                                @for outcome in row.assessment.failing() {
                                                    @if view.item.is_none_or(|item| item == outcome.item) {
                                                        li { strong { (outcome.item.label_zh()) } "：" (outcome.reasons.join("；")) }
                                                    }
                                                }
                                            }
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

// ----- thresholds page -----

/// `GET /console/thresholds` (and the form re-shown with an error).
pub fn thresholds_page(
    principal: &Principal,
    view: &ThresholdsView,
    notice: Option<&str>,
    error: Option<&str>,
    form: &ThresholdFormValues,
) -> Markup {
    layout(
        "标准线",
        Some(principal),
        Nav::Thresholds,
        html! {
            h1 { "收入标准线 " span.count { "（贫困线 · 防止返贫监测线，元/人·年）" } }
            @if let Some(notice) = notice { div.notice.info role="status" { (notice) } }
            @if let Some(error) = error { div.notice.error role="alert" { (error) } }
            p.muted {
                "标准线按年度和地区设置：同一年度中，本县的设置优先于省级，省级优先于全国；两条线分别查找。"
                "某年度没有任何设置时不作预警，不会沿用其他年度的标准。"
            }
            table {
                thead { tr { th { "年度" } th { "地区" } th.num { "贫困线" } th.num { "防止返贫监测线" } th { "出处" } } }
                tbody {
                    @if view.rows.is_empty() {
                        tr { td colspan="5" { span.muted { "尚未设置标准线。" } } }
                    }
                    @for row in view.rows.iter().rev() {
                        tr {
                            td { (row.year) }
                            td { (region_label(&row.region, Some(&view.county_id))) }
                            td.num { (row.poverty_line_yuan.map_or_else(|| "—".to_owned(), whole_yuan)) }
                            td.num { (row.monitoring_line_yuan.map_or_else(|| "—".to_owned(), whole_yuan)) }
                            td { (row.source_note) }
                        }
                    }
                }
            }
            section.card {
                h2 { "设置（同一年度、同一地区再次设置会覆盖原值）" }
                form.thresholds method="post" action="/console/thresholds" {
                    (super::csrf::form_field())
                    label.block { "年度 " input type="text" name="year" value=(form.year) size="6" required; }
                    label.block { "地区 "
                        select name="region" {
                            @for region in &view.regions {
                                option value=(region) selected[form.region == *region] { (region_label(region, Some(&view.county_id))) }
                            }
                        }
                    }
                    label.block { "贫困线（元） " input type="text" name="poverty_line_yuan" value=(form.poverty_line_yuan) size="10" inputmode="numeric"; span.muted { " 不设置请留空" } }
                    label.block { "防止返贫监测线（元） " input type="text" name="monitoring_line_yuan" value=(form.monitoring_line_yuan) size="10" inputmode="numeric"; span.muted { " 不设置请留空" } }
                    label.block { "出处 " input type="text" name="source_note" value=(form.source_note) size="60"; }
                    button.primary type="submit" { "保存" }
                }
            }
        },
    )
}

/// What the thresholds form shows (kept as typed after an error).
#[derive(Debug, Clone, Default)]
pub struct ThresholdFormValues {
    pub year: String,
    pub region: String,
    pub poverty_line_yuan: String,
    pub monitoring_line_yuan: String,
    pub source_note: String,
}

impl ThresholdFormValues {
    pub fn for_year(year: i32) -> Self {
        Self {
            year: year.to_string(),
            ..Self::default()
        }
    }
}

// ----- household page -----

/// Per-capita net by quarter as an inline SVG bar chart, with the lowest line's quarterly
/// share (line ÷ 4) dashed across it. No script and no external resources.
fn income_chart(income: &YearIncome) -> Markup {
    const WIDTH: i64 = 360;
    const HEIGHT: i64 = 150;
    const BASELINE: i64 = 125;
    const TOP: i64 = 15;
    let quarter_value = |quarter: u32| -> Option<i64> {
        income
            .annual
            .quarters
            .iter()
            .find(|registration| registration.quarter == quarter)
            .map(|registration| registration.per_capita_net_fen)
    };
    let reference = income
        .lines
        .iter()
        .min_by_key(|line| line.yuan)
        .map(|line| line.yuan * 100 / 4);
    let largest = (1..=4)
        .filter_map(quarter_value)
        .chain(reference)
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = |fen: i64| -> i64 {
        (fen.max(0) as i128 * (BASELINE - TOP) as i128 / largest as i128) as i64
    };
    html! {
        svg.income-chart xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) width=(WIDTH) height=(HEIGHT) role="img" aria-label=(format!("{}年各季度人均纯收入", income.annual.year)) {
            line x1="30" y1=(BASELINE) x2=(WIDTH - 10) y2=(BASELINE) stroke="#656d76" stroke-width="1" {}
            @for quarter in 1..=4u32 {
                @let x = 45 + (i64::from(quarter) - 1) * 80;
                @match quarter_value(quarter) {
                    Some(value) => {
                        @let height = scale(value);
                        rect.bar x=(x) y=(BASELINE - height) width="44" height=(height) fill="#0550ae" {}
                        text x=(x + 22) y=(BASELINE - height - 3) text-anchor="middle" font-size="10" { (yuan(value)) }
                    }
                    None => {
                        text x=(x + 22) y=(BASELINE - 4) text-anchor="middle" font-size="10" fill="#656d76" { "未登记" }
                    }
                }
                text x=(x + 22) y=(BASELINE + 15) text-anchor="middle" font-size="11" { "Q" (quarter) }
            }
            @if let Some(reference) = reference {
                @let y = BASELINE - scale(reference);
                line x1="30" y1=(y) x2=(WIDTH - 10) y2=(y) stroke="#cf222e" stroke-width="1" stroke-dasharray="4 3" {}
                text x=(WIDTH - 10) y=(y - 3) text-anchor="end" font-size="10" fill="#cf222e" { "标准线÷4" }
            }
        }
    }
}

fn quarter_table(income: &YearIncome) -> Markup {
    let annual = &income.annual;
    let row = |label: &str, registration: &IncomeRegistration| -> Markup {
        let parts = &registration.components;
        html! {
            tr {
                th { (label) }
                td.num { (yuan(parts.wage_fen)) }
                td.num { (yuan(parts.business_gross_fen)) }
                td.num { (yuan(parts.property_fen)) }
                td.num { (yuan(parts.transfer_fen)) }
                td.num { (yuan(parts.business_cost_fen)) }
                td.num { (yuan(registration.net_fen)) }
                td.num { (registration.household_size) }
                td.num { (yuan(registration.per_capita_net_fen)) }
            }
        }
    };
    html! {
        table.quarters {
            thead { tr {
                th { "季度" } th.num { "工资性收入" } th.num { "生产经营性收入" } th.num { "财产性收入" }
                th.num { "转移性收入" } th.num { "生产经营性支出" } th.num { "家庭纯收入" } th.num { "人口" } th.num { "人均纯收入" }
            } }
            tbody {
                @for registration in &annual.quarters {
                    (row(quarter_label(registration.quarter), registration))
                }
            }
            tfoot {
                tr {
                    th { "已登记合计（" (annual.quarters.len()) "个季度）" }
                    td.num { (yuan(annual.totals.wage_fen)) }
                    td.num { (yuan(annual.totals.business_gross_fen)) }
                    td.num { (yuan(annual.totals.property_fen)) }
                    td.num { (yuan(annual.totals.transfer_fen)) }
                    td.num { (yuan(annual.totals.business_cost_fen)) }
                    td.num { (yuan(annual.net_fen)) }
                    td.num { (annual.household_size) }
                    td.num { (optional_yuan(annual.per_capita_net_fen)) }
                }
            }
        }
    }
}

/// One line per quarter where two phones registered different figures without seeing each
/// other: which registration is in force and which one it replaced.
/// `settle` (the township supervisor's view): each note gets a button per registration to
/// keep it as the one in force.
fn replacement_notes(income: &YearIncome, household_id: &str, settle: bool) -> Markup {
    html! {
        @for replacement in &income.replacements {
            div.notice.warn role="note" {
                "⚠ " (replacement.by.year) "年" (quarter_label(replacement.by.quarter))
                "：两份登记互不知情（可能来自两台手机离线登记），后到的一份（家庭纯收入 "
                (yuan(replacement.by.net_fen)) " 元）替换了先到的一份（"
                (yuan(replacement.replaced.net_fen)) " 元）。请与帮扶干部核实；"
                "在手机上“更正”该季度，或在此确认以哪一份为准，此提示即消失。"
                @if settle {
                    @for (label, registration) in [("以先到的一份为准", &replacement.replaced), ("以后到的一份为准", &replacement.by)] {
                        form.settle-income method="post" action=(format!("/console/households/{household_id}/income/settle")) {
                            (super::csrf::form_field())
                            input type="hidden" name="registration_id" value=(registration.registration_id);
                            button type="submit" { (label) "（" (yuan(registration.net_fen)) " 元）" }
                        }
                    }
                }
            }
        }
    }
}

fn quarter_label(quarter: u32) -> &'static str {
    ["", "一季度", "二季度", "三季度", "四季度"]
        .get(quarter as usize)
        .copied()
        .unwrap_or("")
}

fn year_section(income: &YearIncome, margin: f64, household_id: &str, settle: bool) -> Markup {
    let annual = &income.annual;
    html! {
        div.income-year data-year=(annual.year) {
            h3 { (annual.year) "年 " (flag_badge(income, margin)) }
            @if annual.quarters.is_empty() {
                p.muted { "本年度尚未登记收入。" }
            } @else {
                div.income-summary {
                    (income_chart(income))
                    table.kv {
                        tr { th { "已登记季度" } td { (annual.quarters.iter().map(|q| format!("Q{}", q.quarter)).collect::<Vec<_>>().join("、")) } }
                        tr { th { "预计全年纯收入" } td { (optional_yuan(annual.projected_net_fen)) " 元" } }
                        tr { th { "预计全年人均纯收入" } td.projection { (optional_yuan(annual.projected_per_capita_net_fen)) " 元" } }
                        tr { th { "对照标准线" } td {
                            @if income.lines.is_empty() { span.muted { "未设置本年度标准线" } }
                            @for line in &income.lines { div { (line_text(line)) } }
                        } }
                        tr { th { "预警" } td {
                            @match &income.flag {
                                Some(flag) => span.bad { "预计人均纯收入低于" (flag.line.kind.label_zh()) "×(1+" (margin_percent(margin)) ") = " (yuan(flag.threshold_fen)) " 元，请调整帮扶计划" },
                                None => @if income.lines.is_empty() { span.muted { "—" } } @else { span.ok { "未低于预警线" } },
                            }
                        } }
                    }
                }
                (quarter_table(income))
                (replacement_notes(income, household_id, settle))
            }
        }
    }
}

fn cadre_phone(cadre: &PairedCadre, full: bool) -> String {
    if full {
        cadre.phone.clone()
    } else {
        mask_phone(&cadre.phone)
    }
}

fn members_table(household: &Household, detailed: bool) -> Markup {
    html! {
        table.members {
            thead { tr {
                th { "姓名" } th { "与户主关系" } th { "性别" } th { "出生年份" } th { "身份证号" }
                th { "健康状况" } th { "在校状况" }
                @if detailed { th { "劳动能力" } th { "残疾" } th { "医保" } th { "大病保险" } th { "养老保险" } }
            } }
            tbody {
                @for member in household.current_members() {
                    tr {
                        td { (member.name) }
                        td { (member.relation.label_zh()) }
                        td { (member.sex.label_zh()) }
                        td { (birth_year_zh(&member.birth_date)) }
                        td.id-number { (id_number::mask(&member.id_number)) }
                        td { (member.health.label_zh()) }
                        td { (member.schooling.label_zh()) }
                        @if detailed {
                            td { (member.labour_capacity.label_zh()) }
                            td { (member.disability.label_zh()) @if member.disability_grade > 0 { " " (member.disability_grade) "级" } }
                            td { (super::display::yes_no(member.has_medical_insurance)) }
                            td { (super::display::yes_no(member.has_serious_illness_insurance)) }
                            td { (super::display::yes_no(member.has_pension_insurance)) }
                        }
                    }
                }
            }
        }
    }
}

fn causes_text(household: &Household) -> String {
    let mut text = household.main_cause.label_zh().to_owned();
    if !household.secondary_causes.is_empty() {
        let secondary: Vec<&str> = household
            .secondary_causes
            .iter()
            .map(|cause| cause.label_zh())
            .collect();
        text.push_str(&format!("（次要：{}）", secondary.join("、")));
    }
    text
}

fn measures_table(household: &Household) -> Markup {
    html! {
        @if household.measures.is_empty() {
            p.muted { "暂无帮扶措施。" }
        } @else {
            table.measures {
                thead { tr { th { "类别" } th { "措施" } th { "规模" } th.num { "资金（元）" } th { "来源" } th { "完成时限" } th { "状态" } } }
                tbody {
                    @for measure in &household.measures {
                        tr {
                            td { (measure.category.label_zh()) }
                            td { (measure.name) }
                            td { (measure.scale) }
                            td.num { (yuan(measure.funding_fen)) }
                            td { (measure.funding_source.map_or("—", |source| source.label_zh())) }
                            td { @if measure.deadline.is_empty() { "—" } @else { (measure.deadline) } }
                            td { (measure.status.label_zh()) }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console/households/{household_id}`; `settled` after a supervisor settled an income
/// disagreement.
pub fn household_page(principal: &Principal, page: &HouseholdPage, settled: bool) -> Markup {
    let dossier = &page.dossier;
    let household = &dossier.household;
    layout(
        &format!("{} 户", household.head_name),
        Some(principal),
        Nav::None,
        html! {
            h1 { (household.head_name) " 户 " span.count { (household.village_name) } }
            div.toolbar {
                a.print href=(format!("/console/households/{}/card", household.household_id)) { "打印明白卡" }
                a href=(format!("/console/api/households/{}", household.household_id)) { "JSON" }
                a href="/console/income" { "收入监测" }
                a href="/console/wellbeing" { "两不愁三保障" }
            }
            @if settled {
                div.notice.info role="status" { "已确认该季度的收入登记。帮扶干部的手机将在下次同步时收到。" }
            }
            @if dossier.open_conflicts > 0 {
                div.notice.warn role="status" {
                    "该户有 " (dossier.open_conflicts) " 条待处理的信息冲突。"
                    a href="/console/conflicts" { "查看冲突记录" }
                }
            }
            div.grid2 {
                section.card {
                    h2 { "家庭情况" }
                    table.kv {
                        tr { th { "户主" } td { (household.head_name) } }
                        tr { th { "户编号" } td { (household.national_household_number) } }
                        tr { th { "所在村" } td { (household.village_name) } }
                        tr { th { "住址" } td { (household.address) } }
                        tr { th { "联系电话" } td.phone { (mask_phone(&household.phone)) } }
                        tr { th { "贫困户属性" } td { (household.attribute.label_zh()) } }
                        tr { th { "致贫原因" } td { (causes_text(household)) } }
                        tr { th { "住房安全等级" } td { (household.housing_danger_level.map_or("未鉴定", |level| level.label_zh())) } }
                        tr { th { "家庭人口" } td { (household.current_members().count()) " 人" } }
                    }
                }
                section.card {
                    h2 { "结对帮扶干部" }
                    @if dossier.cadres.is_empty() { p.muted { "尚未结对。" } }
                    ul.cadres {
                        @for cadre in &dossier.cadres {
                            li {
                                (cadre.display_name)
                                @if let Some(rank) = cadre.rank { span.muted { "（" (rank.label_zh()) "）" } }
                                " " span.phone { (cadre_phone(cadre, false)) }
                                @if cadre.is_primary { " " span.badge.approved { "第一帮扶责任人" } }
                            }
                        }
                    }
                    h2 { "两不愁三保障" }
                    @let failing: Vec<_> = page.assessment.failing().collect();
                    @if failing.is_empty() {
                        p.ok { "无不达标项。" }
                    } @else {
                        ul.flags.failing-items {
                            @for outcome in failing {
                                li.bad data-item=(outcome.item.code()) { (outcome.item.label_zh()) "：" span { (outcome.reasons.join("；")) } }
                            }
                        }
                    }
                    @let unknown: Vec<&str> = page.assessment.items.iter().filter(|outcome| outcome.status == ItemStatus::Unknown).map(|outcome| outcome.item.label_zh()).collect();
                    @if !unknown.is_empty() {
                        p.muted { "未核查：" (unknown.join("、")) "（最近一次走访未检查，或住房未鉴定）" }
                    }
                }
            }
            section.card {
                h2 { "家庭成员" }
                (members_table(household, true))
            }
            section.card #income {
                h2 { "收入情况（季登记）" }
                p.muted { "预计方法：已登记季度的纯收入按季度数折算为全年（×4÷已登记季度数），除以现有家庭人口 " (household.current_members().count()) " 人。" }
                @let settle = principal.role == fieldsync_model::codes::Role::Township;
                @for income in &page.years { (year_section(income, page.margin, &page.dossier.household.household_id, settle)) }
            }
            section.card {
                h2 { "帮扶措施" }
                (measures_table(household))
            }
            section.card {
                h2 { "走访记录" }
                @if dossier.visits.is_empty() {
                    p.muted { "暂无走访记录。" }
                } @else {
                    table.visits {
                        thead { tr { th { "走访时间" } th { "方式" } th { "类型" } th { "帮扶干部" } th { "审核状态" } th {} } }
                        tbody {
                            @for item in &dossier.visits {
                                tr {
                                    td { (beijing_minutes(item.visit.checkin_at)) }
                                    td { (item.visit.mode.label_zh()) }
                                    td { (item.visit.visit_type.label_zh()) }
                                    td { (item.cadre_name) }
                                    td { span class=(format!("badge {}", item.state.as_str())) { (item.state.label_zh()) } }
                                    td { a href=(format!("/console/visits/{}", item.visit.visit_id)) { "查看" } }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

// ----- 明白卡 -----

/// `GET /console/households/{household_id}/card`: a standalone printable document.
pub fn household_card(principal: &Principal, page: &HouseholdPage) -> Markup {
    let dossier = &page.dossier;
    let household = &dossier.household;
    // The card is handed to the household so it can call its cadre; auditors never see full
    // numbers (DESIGN §7).
    let full_phone = principal.role != Role::Auditor;
    let place_names: Vec<&str> = page.place.iter().map(|area| area.name.as_str()).collect();
    let this_year = page.years.first();
    // The card is handed to the household as the record of the help it received: only
    // visits a supervisor approved belong on it, never one still waiting or sent back.
    let approved_visits: Vec<_> = dossier
        .visits
        .iter()
        .filter(|item| item.state == ReviewState::Approved)
        .collect();
    html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (household.head_name) " 户 明白卡 · fieldsync" }
                style { (PreEscaped(CONSOLE_CSS)) }
            }
            body.card-page {
                div.no-print.toolbar {
                    a href=(format!("/console/households/{}", household.household_id)) { "← 返回农户页面" }
                    span.muted { "请用浏览器的“打印”（Ctrl+P）打印本卡，纸张 A4。" }
                }
                article.mingbaika {
                    header {
                        h1 { "帮扶明白卡" }
                        p { (place_names.join(" · ")) " · " (household.village_name) }
                    }
                    section {
                        h2 { "一、家庭基本情况" }
                        table.kv {
                            tr { th { "户主" } td { (household.head_name) } th { "户编号" } td { (household.national_household_number) } }
                            tr { th { "住址" } td colspan="3" { (household.village_name) " " (household.address) } }
                            tr { th { "贫困户属性" } td { (household.attribute.label_zh()) } th { "家庭人口" } td { (household.current_members().count()) " 人" } }
                            tr { th { "致贫原因" } td colspan="3" { (causes_text(household)) } }
                        }
                    }
                    section {
                        h2 { "二、家庭成员" }
                        (members_table(household, false))
                    }
                    section {
                        h2 { "三、帮扶责任人" }
                        @if dossier.cadres.is_empty() { p { "尚未结对。" } }
                        table {
                            thead { tr { th { "姓名" } th { "职级" } th { "联系电话" } th {} } }
                            tbody {
                                @for cadre in &dossier.cadres {
                                    tr {
                                        td { (cadre.display_name) }
                                        td { (cadre.rank.map_or("—", |rank| rank.label_zh())) }
                                        td.cadre-phone { (cadre_phone(cadre, full_phone)) }
                                        td { @if cadre.is_primary { "第一帮扶责任人" } }
                                    }
                                }
                            }
                        }
                    }
                    section {
                        h2 { "四、家庭收入" }
                        @if this_year.is_none_or(|income| income.annual.quarters.is_empty()) {
                            p { (page.today.year()) "年尚未登记收入。" }
                        }
                        // The two latest years with registrations, in full: enough for the
                        // household to follow its income without the card running long.
                        @for income in page.years.iter().filter(|income| !income.annual.quarters.is_empty()).take(2) {
                            p {
                                (income.annual.year) "年已登记 " (income.annual.quarters.len()) " 个季度，家庭纯收入 "
                                (yuan(income.annual.net_fen)) " 元；预计全年人均纯收入 "
                                strong { (optional_yuan(income.annual.projected_per_capita_net_fen)) } " 元。"
                            }
                            (quarter_table(income))
                        }
                    }
                    section {
                        h2 { "五、帮扶措施" }
                        (measures_table(household))
                    }
                    // A visit history starts on its own page; an empty one stays with the rest.
                    section.page-break[!approved_visits.is_empty()] {
                        h2 { "六、帮扶记录" }
                        @if approved_visits.is_empty() {
                            p { "暂无审核通过的走访记录。" }
                        } @else {
                            table.visits {
                                thead { tr { th { "日期" } th { "方式" } th { "帮扶干部" } th { "帮扶内容" } } }
                                tbody {
                                    @for item in &approved_visits {
                                        tr {
                                            td { (beijing_minutes(item.visit.checkin_at).get(..10).unwrap_or_default()) }
                                            td { (item.visit.mode.label_zh()) }
                                            td { (item.cadre_name) }
                                            td.text { (visit_summary(&item.visit)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    section.signatures {
                        div { "户主签字：" span.sign {} }
                        div { "帮扶责任人签字：" span.sign {} }
                        div { "村委会（盖章）：" span.sign {} }
                        div { "第一书记签字：" span.sign {} }
                    }
                    p.printed { "打印日期：" (page.today.to_string()) }
                }
            }
        }
    }
}

/// What was done on a visit, short enough for a card row: the actions, else the situation.
fn visit_summary(visit: &fieldsync_model::visit::Visit) -> String {
    let text = if visit.actions.trim().is_empty() {
        visit.observed_situation.trim()
    } else {
        visit.actions.trim()
    };
    let mut summary: String = text.chars().take(60).collect();
    if text.chars().count() > 60 {
        summary.push('…');
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_as_yuan_with_separators() {
        assert_eq!(yuan(0), "0.00");
        assert_eq!(yuan(5), "0.05");
        assert_eq!(yuan(123_456_789), "1,234,567.89");
        assert_eq!(yuan(-15_000), "-150.00");
        assert_eq!(whole_yuan(6_000), "6,000");
        assert_eq!(margin_percent(0.1), "10%");
        assert_eq!(margin_percent(0.125), "12.5%");
    }
}
