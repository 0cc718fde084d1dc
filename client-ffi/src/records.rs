//! The plain records and enums of the binding surface, and their conversions from the
//! client core's types. Times cross as unix epoch milliseconds (`i64`), counts as `u64`,
//! code lists as enums named in English with the Chinese term beside them.

use fieldsync_client as core;
use fieldsync_model::codes::{CodeList, Crs, VisitExceptionReason, VisitMode, VisitType};
use fieldsync_model::income::{IncomeComponents, IncomeRegistration};
use fieldsync_model::visit::{CheckResult, GpsFix, ProposedChange, WellbeingCheck};
use time::OffsetDateTime;

use crate::error::{FieldsyncError, FieldsyncResult};

/// Unix epoch milliseconds of a time.
pub(crate) fn epoch_millis(time: OffsetDateTime) -> i64 {
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// A time from unix epoch milliseconds; out-of-range values are an `Invalid` `field`.
pub(crate) fn time_from_millis(field: &str, millis: i64) -> FieldsyncResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).map_err(|_| {
        FieldsyncError::Invalid {
            field: field.to_owned(),
            message: format!("{millis} ms is outside the supported time range"),
        }
    })
}

/// Who is signed in on this device.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SignedInUser {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    /// The role's stable name (`cadre`, `supervisor`, ...), when the server said.
    pub role: Option<String>,
    pub area_id: String,
    pub device_id: String,
    /// A one-time password: show the change-password (修改密码) screen first.
    pub must_change_password: bool,
}

impl From<core::LoginInfo> for SignedInUser {
    fn from(info: core::LoginInfo) -> Self {
        Self {
            user_id: info.user_id,
            username: info.username,
            display_name: info.display_name,
            role: info.role.map(|role| role.as_str().to_owned()),
            area_id: info.area_id,
            device_id: info.device_id,
            must_change_password: info.must_change_password,
        }
    }
}

/// One household on the list screen.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HouseholdListItem {
    pub household_id: String,
    /// 户主姓名.
    pub head_name: String,
    pub village_name: String,
    pub member_count: u64,
    /// An in-person visit (入户) this month (Beijing time) is on the phone.
    pub visited_in_person_this_month: bool,
}

impl From<core::HouseholdSummary> for HouseholdListItem {
    fn from(summary: core::HouseholdSummary) -> Self {
        Self {
            household_id: summary.household_id,
            head_name: summary.head_name,
            village_name: summary.village_name,
            member_count: summary.member_count as u64,
            visited_in_person_this_month: summary.visited_in_person_this_month,
        }
    }
}

/// One member (家庭成员) on the household page.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HouseholdMember {
    pub member_id: String,
    pub name: String,
    /// 与户主关系, Chinese label.
    pub relation_label_zh: String,
    /// YYYY-MM-DD.
    pub birth_date: String,
    pub removed: bool,
}

/// The household page (户详情).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HouseholdDetail {
    pub household_id: String,
    /// 户编号.
    pub national_household_number: String,
    pub head_name: String,
    pub village_name: String,
    pub address: String,
    /// 联系电话 (personal data: show it only on the household page).
    pub phone: String,
    /// 贫困户属性, Chinese label.
    pub attribute_label_zh: String,
    /// 主要致贫原因, Chinese label.
    pub main_cause_label_zh: String,
    pub members: Vec<HouseholdMember>,
}

impl From<fieldsync_model::household::Household> for HouseholdDetail {
    fn from(household: fieldsync_model::household::Household) -> Self {
        Self {
            household_id: household.household_id,
            national_household_number: household.national_household_number,
            head_name: household.head_name,
            village_name: household.village_name,
            address: household.address,
            phone: household.phone,
            attribute_label_zh: household.attribute.label_zh().to_owned(),
            main_cause_label_zh: household.main_cause.label_zh().to_owned(),
            members: household
                .members
                .into_iter()
                .map(|member| HouseholdMember {
                    member_id: member.member_id,
                    name: member.name,
                    relation_label_zh: member.relation.label_zh().to_owned(),
                    birth_date: member.birth_date,
                    removed: member.removed,
                })
                .collect(),
        }
    }
}

/// 走访方式 how the visit was made. Only `InPerson` (入户) counts toward the monthly rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum VisitModeChoice {
    /// 入户.
    InPerson,
    /// 电话.
    Phone,
    /// 微信视频.
    WechatVideo,
    /// 集中座谈.
    GroupMeeting,
    /// 代访.
    Proxy,
}

impl From<VisitModeChoice> for VisitMode {
    fn from(choice: VisitModeChoice) -> Self {
        match choice {
            VisitModeChoice::InPerson => Self::InPerson,
            VisitModeChoice::Phone => Self::Phone,
            VisitModeChoice::WechatVideo => Self::WechatVideo,
            VisitModeChoice::GroupMeeting => Self::GroupMeeting,
            VisitModeChoice::Proxy => Self::Proxy,
        }
    }
}

impl From<VisitMode> for VisitModeChoice {
    fn from(mode: VisitMode) -> Self {
        match mode {
            VisitMode::InPerson => Self::InPerson,
            VisitMode::Phone => Self::Phone,
            VisitMode::WechatVideo => Self::WechatVideo,
            VisitMode::GroupMeeting => Self::GroupMeeting,
            VisitMode::Proxy => Self::Proxy,
        }
    }
}

/// 走访类型 the visit's purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum VisitTypeChoice {
    /// 日常走访.
    Routine,
    /// 收入登记.
    IncomeRegistration,
    /// 政策宣讲.
    PolicyBriefing,
    /// 慰问.
    Condolence,
    /// 识别核查.
    IdentificationCheck,
    /// 退出核查.
    ExitCheck,
    /// 监测核查.
    MonitoringCheck,
    /// 回访抽查.
    SpotCheck,
}

impl From<VisitTypeChoice> for VisitType {
    fn from(choice: VisitTypeChoice) -> Self {
        match choice {
            VisitTypeChoice::Routine => Self::Routine,
            VisitTypeChoice::IncomeRegistration => Self::IncomeRegistration,
            VisitTypeChoice::PolicyBriefing => Self::PolicyBriefing,
            VisitTypeChoice::Condolence => Self::Condolence,
            VisitTypeChoice::IdentificationCheck => Self::IdentificationCheck,
            VisitTypeChoice::ExitCheck => Self::ExitCheck,
            VisitTypeChoice::MonitoringCheck => Self::MonitoringCheck,
            VisitTypeChoice::SpotCheck => Self::SpotCheck,
        }
    }
}

impl From<VisitType> for VisitTypeChoice {
    fn from(visit_type: VisitType) -> Self {
        match visit_type {
            VisitType::Routine => Self::Routine,
            VisitType::IncomeRegistration => Self::IncomeRegistration,
            VisitType::PolicyBriefing => Self::PolicyBriefing,
            VisitType::Condolence => Self::Condolence,
            VisitType::IdentificationCheck => Self::IdentificationCheck,
            VisitType::ExitCheck => Self::ExitCheck,
            VisitType::MonitoringCheck => Self::MonitoringCheck,
            VisitType::SpotCheck => Self::SpotCheck,
        }
    }
}

/// 非入户原因 why a visit was not made in person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum VisitExceptionChoice {
    /// 外出务工.
    WorkingAway,
    /// 疫情.
    Epidemic,
    /// 户不在家.
    NobodyHome,
    /// 灾害阻断.
    Disaster,
    /// 其他.
    Other,
}

impl From<VisitExceptionChoice> for VisitExceptionReason {
    fn from(choice: VisitExceptionChoice) -> Self {
        match choice {
            VisitExceptionChoice::WorkingAway => Self::WorkingAway,
            VisitExceptionChoice::Epidemic => Self::Epidemic,
            VisitExceptionChoice::NobodyHome => Self::NobodyHome,
            VisitExceptionChoice::Disaster => Self::Disaster,
            VisitExceptionChoice::Other => Self::Other,
        }
    }
}

impl From<VisitExceptionReason> for VisitExceptionChoice {
    fn from(reason: VisitExceptionReason) -> Self {
        match reason {
            VisitExceptionReason::WorkingAway => Self::WorkingAway,
            VisitExceptionReason::Epidemic => Self::Epidemic,
            VisitExceptionReason::NobodyHome => Self::NobodyHome,
            VisitExceptionReason::Disaster => Self::Disaster,
            VisitExceptionReason::Other => Self::Other,
        }
    }
}

/// 坐标系 of a location fix: Android and iOS give WGS-84; Chinese map SDKs give GCJ-02
/// (Amap, Tencent) or BD-09 (Baidu).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum CoordinateSystem {
    Wgs84,
    Gcj02,
    Bd09,
}

impl From<CoordinateSystem> for Crs {
    fn from(system: CoordinateSystem) -> Self {
        match system {
            CoordinateSystem::Wgs84 => Self::Wgs84,
            CoordinateSystem::Gcj02 => Self::Gcj02,
            CoordinateSystem::Bd09 => Self::Bd09,
        }
    }
}

impl From<Crs> for CoordinateSystem {
    fn from(crs: Crs) -> Self {
        match crs {
            Crs::Wgs84 => Self::Wgs84,
            Crs::Gcj02 => Self::Gcj02,
            Crs::Bd09 => Self::Bd09,
        }
    }
}

/// A location fix taken at check-in.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct LocationFix {
    pub latitude: f64,
    pub longitude: f64,
    pub coordinate_system: CoordinateSystem,
    pub accuracy_m: f64,
    /// The OS said the location is mocked (模拟定位).
    pub is_mock: bool,
    pub fix_time_ms: Option<i64>,
}

impl LocationFix {
    /// The model's fix; an out-of-range `fix_time_ms` is an `Invalid` field.
    pub(crate) fn to_model(&self) -> FieldsyncResult<GpsFix> {
        Ok(GpsFix {
            lat: self.latitude,
            lon: self.longitude,
            crs: self.coordinate_system.into(),
            accuracy_m: self.accuracy_m,
            provider: None,
            is_mock: self.is_mock,
            fix_time: self
                .fix_time_ms
                .map(|millis| time_from_millis("fix_time_ms", millis))
                .transpose()?,
        })
    }
}

impl From<GpsFix> for LocationFix {
    fn from(fix: GpsFix) -> Self {
        Self {
            latitude: fix.lat,
            longitude: fix.lon,
            coordinate_system: fix.crs.into(),
            accuracy_m: fix.accuracy_m,
            is_mock: fix.is_mock,
            fix_time_ms: fix.fix_time.map(epoch_millis),
        }
    }
}

/// One 两不愁三保障 item's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, uniffi::Enum)]
pub enum CheckOutcome {
    /// 未核查: shown as not checked, never as fine.
    #[default]
    NotChecked,
    /// 达标.
    Pass,
    /// 不达标: say why in the note.
    Fail,
}

impl From<CheckOutcome> for CheckResult {
    fn from(outcome: CheckOutcome) -> Self {
        match outcome {
            CheckOutcome::NotChecked => Self::NotChecked,
            CheckOutcome::Pass => Self::Pass,
            CheckOutcome::Fail => Self::Fail,
        }
    }
}

impl From<CheckResult> for CheckOutcome {
    fn from(result: CheckResult) -> Self {
        match result {
            CheckResult::NotChecked => Self::NotChecked,
            CheckResult::Pass => Self::Pass,
            CheckResult::Fail => Self::Fail,
        }
    }
}

/// The 两不愁三保障 + 饮水安全 checklist of a visit.
#[derive(Debug, Clone, PartialEq, Eq, Default, uniffi::Record)]
pub struct WellbeingForm {
    /// 不愁吃.
    pub food: CheckOutcome,
    /// 不愁穿.
    pub clothing: CheckOutcome,
    /// 义务教育有保障.
    pub compulsory_education: CheckOutcome,
    /// 基本医疗有保障.
    pub basic_medical: CheckOutcome,
    /// 住房安全有保障.
    pub housing_safety: CheckOutcome,
    /// 饮水安全有保障.
    pub drinking_water: CheckOutcome,
    /// What failed and why (e.g. 危房C级).
    pub note: String,
}

impl From<WellbeingForm> for WellbeingCheck {
    fn from(form: WellbeingForm) -> Self {
        Self {
            food: form.food.into(),
            clothing: form.clothing.into(),
            compulsory_education: form.compulsory_education.into(),
            basic_medical: form.basic_medical.into(),
            housing_safety: form.housing_safety.into(),
            drinking_water: form.drinking_water.into(),
            note: form.note,
        }
    }
}

impl From<WellbeingCheck> for WellbeingForm {
    fn from(check: WellbeingCheck) -> Self {
        Self {
            food: check.food.into(),
            clothing: check.clothing.into(),
            compulsory_education: check.compulsory_education.into(),
            basic_medical: check.basic_medical.into(),
            housing_safety: check.housing_safety.into(),
            drinking_water: check.drinking_water.into(),
            note: check.note,
        }
    }
}

/// 信息变更: a change to the household card the cadre proposes during a visit, for the
/// township to review (the card itself is edited with `edit_household_field`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ProposedChangeForm {
    /// `household` or `member:<member id>`.
    pub target: String,
    /// The field's name, e.g. `phone`, `health`.
    pub field: String,
    pub old_value: String,
    pub new_value: String,
    /// Why (e.g. 户主换了手机号).
    pub reason: String,
}

impl From<ProposedChangeForm> for ProposedChange {
    fn from(form: ProposedChangeForm) -> Self {
        Self {
            target: form.target,
            field: form.field,
            old_value: form.old_value,
            new_value: form.new_value,
            reason: form.reason,
        }
    }
}

impl From<ProposedChange> for ProposedChangeForm {
    fn from(change: ProposedChange) -> Self {
        Self {
            target: change.target,
            field: change.field,
            old_value: change.old_value,
            new_value: change.new_value,
            reason: change.reason,
        }
    }
}

/// 季度收入登记: one quarter's income of a household, in fen (分; 1 元 = 100 分).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct IncomeForm {
    pub household_id: String,
    pub year: i32,
    /// 1–4.
    pub quarter: u32,
    /// 工资性收入.
    pub wage_fen: i64,
    /// 生产经营性收入 (gross).
    pub business_gross_fen: i64,
    /// 财产性收入.
    pub property_fen: i64,
    /// 转移性收入.
    pub transfer_fen: i64,
    /// 生产经营性支出.
    pub business_cost_fen: i64,
}

impl IncomeForm {
    pub(crate) fn components(&self) -> IncomeComponents {
        IncomeComponents {
            wage_fen: self.wage_fen,
            business_gross_fen: self.business_gross_fen,
            property_fen: self.property_fen,
            transfer_fen: self.transfer_fen,
            business_cost_fen: self.business_cost_fen,
        }
    }
}

/// A registration as queued on the phone, with the model's derived amounts.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct IncomeRegistered {
    pub registration_id: String,
    pub household_id: String,
    pub year: i32,
    pub quarter: u32,
    pub household_size: u32,
    /// 家庭纯收入.
    pub net_fen: i64,
    /// 人均纯收入.
    pub per_capita_net_fen: i64,
}

impl From<IncomeRegistration> for IncomeRegistered {
    fn from(registration: IncomeRegistration) -> Self {
        Self {
            registration_id: registration.registration_id,
            household_id: registration.household_id,
            year: registration.year,
            quarter: registration.quarter,
            household_size: registration.household_size,
            net_fen: registration.net_fen,
            per_capita_net_fen: registration.per_capita_net_fen,
        }
    }
}

/// The visit form (走访记录) as the app fills it in.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct VisitForm {
    /// A household id, or a unique prefix of one.
    pub household_id: String,
    pub mode: VisitModeChoice,
    /// Required when `mode` is not `InPerson`.
    pub exception_reason: Option<VisitExceptionChoice>,
    pub visit_type: VisitTypeChoice,
    pub checkin_at_ms: i64,
    pub checkout_at_ms: i64,
    /// 生产生活情况.
    pub observed_situation: String,
    /// 帮扶计划实施情况.
    pub plan_progress: String,
    /// 存在问题.
    pub problems: String,
    /// 帮扶措施.
    pub actions: String,
    /// 农户需求.
    pub needs: String,
    /// 宣讲政策.
    pub policies_explained: Vec<String>,
    /// 两不愁三保障 + 饮水安全: each item 达标, 不达标 or not checked (未核查).
    pub wellbeing: WellbeingForm,
    /// 信息变更 proposed during the visit.
    pub proposed_changes: Vec<ProposedChangeForm>,
    pub location: Option<LocationFix>,
    /// Camera files; each is checked (JPEG, PNG or WebP from its bytes) and copied into the
    /// core's storage, so the app may delete them. In `fix_visit` these are added photos.
    pub photo_paths: Vec<String>,
}

/// One photo of a visit as kept on the phone.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct VisitPhoto {
    pub photo_id: String,
    pub sha256: String,
    pub mime_type: String,
    pub size_bytes: u64,
    /// The core's byte-exact copy (show this one; the camera file may be gone).
    pub local_path: String,
    /// The server holds the bytes.
    pub uploaded: bool,
}

impl From<core::LocalPhoto> for VisitPhoto {
    fn from(photo: core::LocalPhoto) -> Self {
        Self {
            photo_id: photo.photo_id,
            sha256: photo.sha256,
            mime_type: photo.mime_type,
            size_bytes: photo.size_bytes,
            local_path: photo.local_path.to_string_lossy().into_owned(),
            uploaded: photo.uploaded,
        }
    }
}

/// One visit read back: its state and the latest revision's whole form, to show it and to
/// start a fix (整改) from it.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct VisitDetail {
    pub visit_id: String,
    pub revision: u32,
    pub household_id: String,
    pub head_name: Option<String>,
    pub state: VisitProgress,
    /// The form as recorded (`photo_paths` empty: the photos are in `photos`); `None` for a
    /// visit not recorded on this phone.
    pub form: Option<VisitForm>,
    /// The photos of the latest revision, in order.
    pub photos: Vec<VisitPhoto>,
    /// The return reasons and note when it was returned (待整改).
    pub task: Option<TaskItem>,
}

impl From<fieldsync_model::visit::Visit> for VisitForm {
    fn from(visit: fieldsync_model::visit::Visit) -> Self {
        Self {
            household_id: visit.household_id,
            mode: visit.mode.into(),
            exception_reason: visit.exception_reason.map(Into::into),
            visit_type: visit.visit_type.into(),
            checkin_at_ms: epoch_millis(visit.checkin_at),
            checkout_at_ms: epoch_millis(visit.checkout_at),
            observed_situation: visit.observed_situation,
            plan_progress: visit.plan_progress,
            problems: visit.problems,
            actions: visit.actions,
            needs: visit.needs,
            policies_explained: visit.policies_explained,
            wellbeing: visit.wellbeing.into(),
            proposed_changes: visit.proposed_changes.into_iter().map(Into::into).collect(),
            location: visit.gps.map(Into::into),
            photo_paths: Vec::new(),
        }
    }
}

/// A new household member (新增成员).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct MemberForm {
    /// 姓名.
    pub name: String,
    /// 与户主关系 code of the national list (99 其他).
    pub relation_code: i32,
    /// 性别 1 male, 2 female.
    pub sex_code: i32,
    /// YYYY-MM-DD or empty.
    pub birth_date: String,
    /// 18-digit 身份证号 or empty.
    pub id_number: String,
}

/// Where one income registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum IncomeProgress {
    /// Made on this phone, not sent yet (待上传).
    Unsent,
    /// Made on this phone and accepted by the server (已上传).
    Sent,
    /// Made on this phone and refused by the server (被拒收).
    Rejected,
    /// Made by another device; in force on the server as of the last sync.
    OnServer,
}

/// One 季度收入登记 on the household's income screen.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct IncomeItem {
    pub registration: IncomeRegistered,
    pub progress: IncomeProgress,
    /// The server's refusal code, when refused.
    pub rejection_code: Option<String>,
}

/// One header of an HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

/// One photo upload for the OS background uploader (WorkManager, background URLSession):
/// send the file at `file_path` with `method` to `upload_url` with `headers`; the server
/// answers 204. Then call `upload_finished(sha256)`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PendingUpload {
    pub sha256: String,
    pub upload_url: String,
    /// `PATCH` (tus 1.0).
    pub method: String,
    pub file_path: String,
    /// Bytes the server already holds; `file_path` holds the rest.
    pub offset: u64,
    pub size_bytes: u64,
    pub headers: Vec<HttpHeader>,
}

impl From<core::BackgroundUpload> for PendingUpload {
    fn from(upload: core::BackgroundUpload) -> Self {
        Self {
            sha256: upload.sha256,
            upload_url: upload.upload_url,
            method: upload.method,
            file_path: upload.file_path.to_string_lossy().into_owned(),
            offset: upload.offset,
            size_bytes: upload.size_bytes,
            headers: upload
                .headers
                .into_iter()
                .map(|(name, value)| HttpHeader { name, value })
                .collect(),
        }
    }
}

/// The pending uploads, ready for the OS uploader.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PendingUploads {
    pub uploads: Vec<PendingUpload>,
    /// Photos whose record the server has not accepted yet; listed by a later call.
    pub waiting_for_push: u64,
}

impl From<core::BackgroundUploads> for PendingUploads {
    fn from(uploads: core::BackgroundUploads) -> Self {
        Self {
            uploads: uploads.uploads.into_iter().map(Into::into).collect(),
            waiting_for_push: uploads.waiting_for_push,
        }
    }
}

/// A visit's state on the phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum VisitProgress {
    /// 待上传.
    Unsent,
    /// 待审核.
    Submitted,
    /// 已通过.
    Approved,
    /// 已退回: shows up in `tasks()`.
    Returned,
    /// 已更新: a newer revision replaced it.
    Superseded,
    /// 被拒收.
    Rejected,
}

impl From<core::VisitState> for VisitProgress {
    fn from(state: core::VisitState) -> Self {
        match state {
            core::VisitState::Unsent => Self::Unsent,
            core::VisitState::Submitted => Self::Submitted,
            core::VisitState::Approved => Self::Approved,
            core::VisitState::Returned => Self::Returned,
            core::VisitState::Superseded => Self::Superseded,
            core::VisitState::Rejected => Self::Rejected,
        }
    }
}

/// One visit on the visits screen.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct VisitListItem {
    pub visit_id: String,
    pub revision: u32,
    pub household_id: String,
    pub head_name: Option<String>,
    pub state: VisitProgress,
    /// Outbox entries of this visit or its photos not yet accepted.
    pub pending_mutations: u64,
    /// The server's refusal code and message, when it refused the visit.
    pub rejection_code: Option<String>,
    pub rejection_message: Option<String>,
}

impl From<core::VisitSummary> for VisitListItem {
    fn from(summary: core::VisitSummary) -> Self {
        let (rejection_code, rejection_message) = match summary.rejection {
            Some((code, message)) => (Some(code), Some(message)),
            None => (None, None),
        };
        Self {
            visit_id: summary.visit_id,
            revision: summary.revision,
            household_id: summary.household_id,
            head_name: summary.head_name,
            state: summary.state.into(),
            pending_mutations: summary.pending_mutations,
            rejection_code,
            rejection_message,
        }
    }
}

/// One reason a visit was returned.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ReturnReasonItem {
    pub code: String,
    pub field: String,
    pub label_zh: String,
    pub field_label_zh: String,
}

/// A returned visit to fix (待整改).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TaskItem {
    pub visit_id: String,
    pub revision: u32,
    pub household_id: String,
    pub head_name: Option<String>,
    pub reasons: Vec<ReturnReasonItem>,
    pub note: String,
    /// YYYY-MM-DD or empty.
    pub deadline: String,
    pub reviewer_name: String,
    pub decided_at_ms: Option<i64>,
}

impl From<core::Task> for TaskItem {
    fn from(task: core::Task) -> Self {
        Self {
            visit_id: task.visit_id,
            revision: task.revision,
            household_id: task.household_id,
            head_name: task.head_name,
            reasons: task
                .reasons
                .into_iter()
                .map(|reason| ReturnReasonItem {
                    code: reason.code,
                    field: reason.field,
                    label_zh: reason.label_zh,
                    field_label_zh: reason.field_label_zh,
                })
                .collect(),
            note: task.note,
            deadline: task.deadline,
            reviewer_name: task.reviewer_name,
            decided_at_ms: task.decided_at.map(epoch_millis),
        }
    }
}

/// The device's session as the app shows it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SessionStatus {
    SignedIn,
    SignedOut,
    /// `reason`: `session_revoked` or `session_expired`.
    SignedOutByServer {
        reason: String,
    },
}

impl From<core::SessionState> for SessionStatus {
    fn from(state: core::SessionState) -> Self {
        match state {
            core::SessionState::LoggedIn => Self::SignedIn,
            core::SessionState::LoggedOut => Self::SignedOut,
            core::SessionState::SignedOutOnServer(reason) => Self::SignedOutByServer {
                reason: reason.as_str().to_owned(),
            },
        }
    }
}

/// Sync health for the status screen.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DeviceStatus {
    pub device_id: String,
    pub server_url: String,
    pub user: Option<SignedInUser>,
    pub session: SessionStatus,
    pub unsent_mutations: u64,
    pub pending_uploads: u64,
    pub households: u64,
    pub last_sync_at_ms: Option<i64>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    pub next_sync_due_ms: Option<i64>,
    /// Records that keep failing or were refused (卡住/被拒收).
    pub wedged: u64,
    /// Unsent drafts of households reassigned away (需移交).
    pub handover: u64,
    /// This user's edits waiting in a conflict for the township supervisor (待审核), as of
    /// the last pull.
    pub pending_conflicts: Vec<PendingConflictRecord>,
}

/// One of the user's edits that met another's change of the same field and waits for the
/// township supervisor (与他人的修改冲突，等待乡镇审核员处理).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PendingConflictRecord {
    pub household_id: String,
    /// Empty for a household field; the member's id for a member's field.
    pub member_id: Option<String>,
    /// The field's wire name (e.g. `phone`); the app shows its own label.
    pub field: String,
    pub recorded_at_ms: i64,
    /// The device that made the edit (the user may have more than one phone).
    pub device_id: String,
}

impl From<fieldsync_model::register::PendingConflict> for PendingConflictRecord {
    fn from(conflict: fieldsync_model::register::PendingConflict) -> Self {
        Self {
            household_id: conflict.household_id,
            member_id: match conflict.target {
                fieldsync_model::register::FieldTarget::Household => None,
                fieldsync_model::register::FieldTarget::Member(member_id) => Some(member_id),
            },
            field: conflict.field,
            recorded_at_ms: epoch_millis(conflict.recorded_at),
            device_id: conflict.device_id,
        }
    }
}

impl From<core::Status> for DeviceStatus {
    fn from(status: core::Status) -> Self {
        Self {
            device_id: status.device_id,
            server_url: status.server_url,
            user: status.user.map(SignedInUser::from),
            session: status.session.into(),
            unsent_mutations: status.unsent_mutations,
            pending_uploads: status.pending_uploads,
            households: status.households as u64,
            last_sync_at_ms: status.last_sync_at.map(epoch_millis),
            last_error: status.last_error,
            consecutive_failures: status.consecutive_failures,
            next_sync_due_ms: status.next_sync_due.map(epoch_millis),
            wedged: status.wedged.len() as u64,
            handover: status.handover.len() as u64,
            pending_conflicts: status
                .pending_conflicts
                .into_iter()
                .map(PendingConflictRecord::from)
                .collect(),
        }
    }
}

/// One record the server refused in a sync.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RefusedRecord {
    pub subject_id: String,
    pub code: String,
    pub message: String,
}

/// What one sync did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncReport {
    pub batches_pushed: u64,
    pub mutations_applied: u64,
    pub mutations_duplicate: u64,
    pub refused: Vec<RefusedRecord>,
    pub uploads_completed: u64,
    pub bytes_uploaded: u64,
    /// Uploads still waiting for their photo record to be accepted.
    pub uploads_waiting: u64,
    /// Uploads the server refused this time; retried at the next sync.
    pub upload_failures: u64,
    pub households_pulled: u64,
    pub households_removed: u64,
    pub visit_statuses_pulled: u64,
    /// Edits of this push that met another's change and now wait for the supervisor.
    pub conflicts_recorded: u64,
    /// All of this user's edits waiting in a conflict, as the pull reported them.
    pub pending_conflicts: Vec<PendingConflictRecord>,
    /// What the screens should reload (also given to the change listener).
    pub changes: ChangedRecords,
}

/// The records one sync changed on this phone, so screens refresh without polling.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct ChangedRecords {
    /// Households pulled (new or changed cards) or removed from this phone.
    pub household_ids: Vec<String>,
    /// Visits the server accepted or refused, or whose review status was pulled.
    pub visit_ids: Vec<String>,
    /// Visits that became, stopped being, or changed as tasks (待整改).
    pub task_visit_ids: Vec<String>,
    /// The whole replica was replaced (first pull, RESET): reload every screen.
    pub everything: bool,
}

impl ChangedRecords {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.everything
            && self.household_ids.is_empty()
            && self.visit_ids.is_empty()
            && self.task_visit_ids.is_empty()
    }
}

impl From<core::SyncReport> for SyncReport {
    fn from(report: core::SyncReport) -> Self {
        Self {
            batches_pushed: report.batches_pushed,
            mutations_applied: report.mutations_applied,
            mutations_duplicate: report.mutations_duplicate,
            refused: report
                .rejected
                .into_iter()
                .map(|refused| RefusedRecord {
                    subject_id: refused.subject_id,
                    code: refused.code,
                    message: refused.message,
                })
                .collect(),
            uploads_completed: report.uploads_completed,
            bytes_uploaded: report.bytes_uploaded,
            uploads_waiting: report.uploads_waiting,
            upload_failures: report.upload_failures.len() as u64,
            households_pulled: report.households_pulled,
            households_removed: report.households_removed,
            visit_statuses_pulled: report.visit_statuses_pulled,
            conflicts_recorded: report.conflicts_recorded,
            pending_conflicts: report
                .pending_conflicts
                .into_iter()
                .map(PendingConflictRecord::from)
                .collect(),
            changes: ChangedRecords {
                household_ids: report.changes.household_ids.into_iter().collect(),
                visit_ids: report.changes.visit_ids.into_iter().collect(),
                // Filled in by FieldsyncClient::sync, which sees the task list around it.
                task_visit_ids: Vec::new(),
                everything: report.changes.everything,
            },
        }
    }
}
