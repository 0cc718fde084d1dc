//! Explicit conversions between wire types (`v1::*`) and domain types (`fieldsync_model`).
//! Both edges (server gRPC adapters, client-core transport) use these, so a field is mapped
//! in exactly one place. Wire → domain is `TryFrom`, failing with the path of the first bad
//! field; domain → wire cannot fail.

use fieldsync_model::CodeList;
use fieldsync_model::codes::{
    Crs, Disability, FundingSource, Health, HouseholdAttribute, HousingDangerLevel, LabourCapacity,
    LocationProvider, MeasureCategory, MeasureStatus, PhotoSubject, PovertyCause, Relation,
    ReviewState, Schooling, Sex, VisitExceptionReason, VisitMode, VisitType,
};
use fieldsync_model::household as model_household;
use fieldsync_model::income::{IncomeComponents, IncomeRegistration};
use fieldsync_model::register::{FieldEdit, FieldTarget, PendingConflict};
use fieldsync_model::review::{ReturnReason, VisitStatus};
use fieldsync_model::sync::{Mutation, MutationPayload};
use fieldsync_model::visit as model_visit;
use time::OffsetDateTime;

use crate::v1;

/// A wire message that does not describe a valid domain record. `field` is the dotted path
/// of the offending field, e.g. `mutations[2].submit_visit.checkin_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConvertError {}

impl ConvertError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Prefix the field path with the enclosing field, e.g. `submit_visit` + `gps.lat`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_owned()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

impl From<fieldsync_model::visit::InvalidField> for ConvertError {
    fn from(invalid: fieldsync_model::visit::InvalidField) -> Self {
        Self::new(invalid.field, invalid.message)
    }
}

/// A required code-list value: 0 (unspecified) and unknown numbers are errors.
pub fn required_code<T: CodeList>(wire: i32, field: &str) -> Result<T, ConvertError> {
    if wire == 0 {
        return Err(ConvertError::new(field, "is required"));
    }
    T::from_code(wire).ok_or_else(|| ConvertError::new(field, format!("unknown code {wire}")))
}

/// An optional code-list value: 0 means absent; unknown numbers are errors.
pub fn optional_code<T: CodeList>(wire: i32, field: &str) -> Result<Option<T>, ConvertError> {
    if wire == 0 {
        return Ok(None);
    }
    required_code(wire, field).map(Some)
}

fn code_or_zero<T: CodeList>(value: Option<T>) -> i32 {
    value.map_or(0, CodeList::code)
}

/// Wire timestamp → instant.
pub fn instant_from_wire(
    wire: &prost_types::Timestamp,
    field: &str,
) -> Result<OffsetDateTime, ConvertError> {
    let nanos = i128::from(wire.seconds) * 1_000_000_000 + i128::from(wire.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map_err(|_| ConvertError::new(field, "timestamp out of range"))
}

/// A required wire timestamp.
pub fn required_instant(
    wire: &Option<prost_types::Timestamp>,
    field: &str,
) -> Result<OffsetDateTime, ConvertError> {
    wire.as_ref()
        .ok_or_else(|| ConvertError::new(field, "is required"))
        .and_then(|timestamp| instant_from_wire(timestamp, field))
}

/// An optional wire timestamp: absent is `None`; out of range is an error.
pub fn optional_instant(
    wire: &Option<prost_types::Timestamp>,
    field: &str,
) -> Result<Option<OffsetDateTime>, ConvertError> {
    wire.as_ref()
        .map(|timestamp| instant_from_wire(timestamp, field))
        .transpose()
}

/// Instant → wire timestamp.
pub fn instant_to_wire(instant: OffsetDateTime) -> prost_types::Timestamp {
    let nanos = instant.unix_timestamp_nanos();
    prost_types::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000) as i64,
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

// ---- households -------------------------------------------------------------------------

impl From<&model_household::GeoPoint> for v1::GeoPoint {
    fn from(point: &model_household::GeoPoint) -> Self {
        Self {
            lat: point.lat,
            lon: point.lon,
            crs: point.crs.code(),
        }
    }
}

impl TryFrom<&v1::GeoPoint> for model_household::GeoPoint {
    type Error = ConvertError;
    fn try_from(wire: &v1::GeoPoint) -> Result<Self, ConvertError> {
        Ok(Self {
            lat: wire.lat,
            lon: wire.lon,
            crs: optional_code(wire.crs, "crs")?.unwrap_or(Crs::Wgs84),
        })
    }
}

impl From<&model_household::Member> for v1::Member {
    fn from(member: &model_household::Member) -> Self {
        Self {
            member_id: member.member_id.clone(),
            name: member.name.clone(),
            relation: member.relation.code(),
            sex: member.sex.code(),
            birth_date: member.birth_date.clone(),
            id_number: member.id_number.clone(),
            health: member.health.code(),
            labour_capacity: member.labour_capacity.code(),
            schooling: member.schooling.code(),
            disability: member.disability.code(),
            disability_grade: member.disability_grade,
            has_medical_insurance: member.has_medical_insurance,
            has_serious_illness_insurance: member.has_serious_illness_insurance,
            has_pension_insurance: member.has_pension_insurance,
            removed: member.removed,
        }
    }
}

impl TryFrom<&v1::Member> for model_household::Member {
    type Error = ConvertError;
    fn try_from(wire: &v1::Member) -> Result<Self, ConvertError> {
        Ok(Self {
            member_id: wire.member_id.clone(),
            name: wire.name.clone(),
            relation: required_code::<Relation>(wire.relation, "relation")?,
            sex: required_code::<Sex>(wire.sex, "sex")?,
            birth_date: wire.birth_date.clone(),
            id_number: wire.id_number.clone(),
            health: required_code::<Health>(wire.health, "health")?,
            labour_capacity: required_code::<LabourCapacity>(
                wire.labour_capacity,
                "labour_capacity",
            )?,
            schooling: required_code::<Schooling>(wire.schooling, "schooling")?,
            disability: optional_code::<Disability>(wire.disability, "disability")?
                .unwrap_or(Disability::None),
            disability_grade: wire.disability_grade,
            has_medical_insurance: wire.has_medical_insurance,
            has_serious_illness_insurance: wire.has_serious_illness_insurance,
            has_pension_insurance: wire.has_pension_insurance,
            removed: wire.removed,
        })
    }
}

impl From<&model_household::HelpMeasure> for v1::HelpMeasure {
    fn from(measure: &model_household::HelpMeasure) -> Self {
        Self {
            measure_id: measure.measure_id.clone(),
            category: measure.category.code(),
            name: measure.name.clone(),
            scale: measure.scale.clone(),
            funding_fen: measure.funding_fen,
            funding_source: code_or_zero(measure.funding_source),
            deadline: measure.deadline.clone(),
            status: measure.status.code(),
        }
    }
}

impl TryFrom<&v1::HelpMeasure> for model_household::HelpMeasure {
    type Error = ConvertError;
    fn try_from(wire: &v1::HelpMeasure) -> Result<Self, ConvertError> {
        Ok(Self {
            measure_id: wire.measure_id.clone(),
            category: required_code::<MeasureCategory>(wire.category, "category")?,
            name: wire.name.clone(),
            scale: wire.scale.clone(),
            funding_fen: wire.funding_fen,
            funding_source: optional_code::<FundingSource>(wire.funding_source, "funding_source")?,
            deadline: wire.deadline.clone(),
            status: required_code::<MeasureStatus>(wire.status, "status")?,
        })
    }
}

impl From<&model_household::Household> for v1::Household {
    fn from(household: &model_household::Household) -> Self {
        Self {
            household_id: household.household_id.clone(),
            national_household_number: household.national_household_number.clone(),
            head_name: household.head_name.clone(),
            township_id: household.township_id.clone(),
            village_id: household.village_id.clone(),
            village_name: household.village_name.clone(),
            address: household.address.clone(),
            phone: household.phone.clone(),
            attribute: household.attribute.code(),
            main_cause: household.main_cause.code(),
            secondary_causes: household
                .secondary_causes
                .iter()
                .map(|cause| cause.code())
                .collect(),
            housing_danger_level: code_or_zero(household.housing_danger_level),
            location: household.location.as_ref().map(Into::into),
            members: household.members.iter().map(Into::into).collect(),
            measures: household.measures.iter().map(Into::into).collect(),
            server_seq: household.server_seq,
            field_seqs: household.field_seqs.clone().into_iter().collect(),
        }
    }
}

impl TryFrom<&v1::Household> for model_household::Household {
    type Error = ConvertError;
    fn try_from(wire: &v1::Household) -> Result<Self, ConvertError> {
        let members = wire
            .members
            .iter()
            .enumerate()
            .map(|(index, member)| {
                member
                    .try_into()
                    .map_err(|error: ConvertError| error.within(&format!("members[{index}]")))
            })
            .collect::<Result<_, _>>()?;
        let measures = wire
            .measures
            .iter()
            .enumerate()
            .map(|(index, measure)| {
                measure
                    .try_into()
                    .map_err(|error: ConvertError| error.within(&format!("measures[{index}]")))
            })
            .collect::<Result<_, _>>()?;
        let secondary_causes = wire
            .secondary_causes
            .iter()
            .map(|cause| required_code::<PovertyCause>(*cause, "secondary_causes"))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            household_id: wire.household_id.clone(),
            national_household_number: wire.national_household_number.clone(),
            head_name: wire.head_name.clone(),
            township_id: wire.township_id.clone(),
            village_id: wire.village_id.clone(),
            village_name: wire.village_name.clone(),
            address: wire.address.clone(),
            phone: wire.phone.clone(),
            attribute: required_code::<HouseholdAttribute>(wire.attribute, "attribute")?,
            main_cause: required_code::<PovertyCause>(wire.main_cause, "main_cause")?,
            secondary_causes,
            housing_danger_level: optional_code::<HousingDangerLevel>(
                wire.housing_danger_level,
                "housing_danger_level",
            )?,
            location: wire
                .location
                .as_ref()
                .map(TryInto::try_into)
                .transpose()
                .map_err(|error: ConvertError| error.within("location"))?,
            members,
            measures,
            server_seq: wire.server_seq,
            field_seqs: wire.field_seqs.clone().into_iter().collect(),
        })
    }
}

// ---- visits ------------------------------------------------------------------------------

fn check_result_to_wire(result: model_visit::CheckResult) -> i32 {
    match result {
        model_visit::CheckResult::NotChecked => v1::CheckResult::Unspecified as i32,
        model_visit::CheckResult::Pass => v1::CheckResult::Pass as i32,
        model_visit::CheckResult::Fail => v1::CheckResult::Fail as i32,
    }
}

fn check_result_from_wire(
    wire: i32,
    field: &str,
) -> Result<model_visit::CheckResult, ConvertError> {
    match v1::CheckResult::try_from(wire) {
        Ok(v1::CheckResult::Unspecified) => Ok(model_visit::CheckResult::NotChecked),
        Ok(v1::CheckResult::Pass) => Ok(model_visit::CheckResult::Pass),
        Ok(v1::CheckResult::Fail) => Ok(model_visit::CheckResult::Fail),
        Err(_) => Err(ConvertError::new(
            field,
            format!("unknown check result {wire}"),
        )),
    }
}

impl From<&model_visit::WellbeingCheck> for v1::WellbeingCheck {
    fn from(check: &model_visit::WellbeingCheck) -> Self {
        Self {
            food: check_result_to_wire(check.food),
            clothing: check_result_to_wire(check.clothing),
            compulsory_education: check_result_to_wire(check.compulsory_education),
            basic_medical: check_result_to_wire(check.basic_medical),
            housing_safety: check_result_to_wire(check.housing_safety),
            drinking_water: check_result_to_wire(check.drinking_water),
            note: check.note.clone(),
        }
    }
}

impl TryFrom<&v1::WellbeingCheck> for model_visit::WellbeingCheck {
    type Error = ConvertError;
    fn try_from(wire: &v1::WellbeingCheck) -> Result<Self, ConvertError> {
        Ok(Self {
            food: check_result_from_wire(wire.food, "food")?,
            clothing: check_result_from_wire(wire.clothing, "clothing")?,
            compulsory_education: check_result_from_wire(
                wire.compulsory_education,
                "compulsory_education",
            )?,
            basic_medical: check_result_from_wire(wire.basic_medical, "basic_medical")?,
            housing_safety: check_result_from_wire(wire.housing_safety, "housing_safety")?,
            drinking_water: check_result_from_wire(wire.drinking_water, "drinking_water")?,
            note: wire.note.clone(),
        })
    }
}

impl From<&model_visit::GpsFix> for v1::GpsFix {
    fn from(fix: &model_visit::GpsFix) -> Self {
        Self {
            lat: fix.lat,
            lon: fix.lon,
            crs: fix.crs.code(),
            accuracy_m: fix.accuracy_m,
            provider: code_or_zero(fix.provider),
            is_mock: fix.is_mock,
            fix_time: fix.fix_time.map(instant_to_wire),
        }
    }
}

impl TryFrom<&v1::GpsFix> for model_visit::GpsFix {
    type Error = ConvertError;
    fn try_from(wire: &v1::GpsFix) -> Result<Self, ConvertError> {
        Ok(Self {
            lat: wire.lat,
            lon: wire.lon,
            crs: optional_code(wire.crs, "crs")?.unwrap_or(Crs::Wgs84),
            accuracy_m: wire.accuracy_m,
            provider: optional_code::<LocationProvider>(wire.provider, "provider")?,
            is_mock: wire.is_mock,
            fix_time: optional_instant(&wire.fix_time, "fix_time")?,
        })
    }
}

impl From<&model_visit::ProposedChange> for v1::ProposedChange {
    fn from(change: &model_visit::ProposedChange) -> Self {
        Self {
            target: change.target.clone(),
            field: change.field.clone(),
            old_value: change.old_value.clone(),
            new_value: change.new_value.clone(),
            reason: change.reason.clone(),
        }
    }
}

impl From<&v1::ProposedChange> for model_visit::ProposedChange {
    fn from(wire: &v1::ProposedChange) -> Self {
        Self {
            target: wire.target.clone(),
            field: wire.field.clone(),
            old_value: wire.old_value.clone(),
            new_value: wire.new_value.clone(),
            reason: wire.reason.clone(),
        }
    }
}

impl From<&model_visit::Visit> for v1::Visit {
    fn from(visit: &model_visit::Visit) -> Self {
        Self {
            visit_id: visit.visit_id.clone(),
            revision: visit.revision,
            supersedes_revision: visit.supersedes_revision,
            household_id: visit.household_id.clone(),
            mode: visit.mode.code(),
            exception_reason: code_or_zero(visit.exception_reason),
            r#type: visit.visit_type.code(),
            checkin_at: Some(instant_to_wire(visit.checkin_at)),
            checkout_at: Some(instant_to_wire(visit.checkout_at)),
            observed_situation: visit.observed_situation.clone(),
            plan_progress: visit.plan_progress.clone(),
            problems: visit.problems.clone(),
            actions: visit.actions.clone(),
            needs: visit.needs.clone(),
            policies_explained: visit.policies_explained.clone(),
            wellbeing: Some((&visit.wellbeing).into()),
            proposed_changes: visit.proposed_changes.iter().map(Into::into).collect(),
            photo_ids: visit.photo_ids.clone(),
            gps: visit.gps.as_ref().map(Into::into),
            recorded_at_device: Some(instant_to_wire(visit.recorded_at_device)),
        }
    }
}

impl TryFrom<&v1::Visit> for model_visit::Visit {
    type Error = ConvertError;
    /// Checks only what the wire format itself requires (present timestamps, known codes).
    /// Domain rules (`Visit::validate`) are applied by the receiver, which decides whether a
    /// violation rejects one record or the whole request.
    fn try_from(wire: &v1::Visit) -> Result<Self, ConvertError> {
        Ok(Self {
            visit_id: wire.visit_id.clone(),
            revision: wire.revision,
            supersedes_revision: wire.supersedes_revision,
            household_id: wire.household_id.clone(),
            mode: required_code::<VisitMode>(wire.mode, "mode")?,
            exception_reason: optional_code::<VisitExceptionReason>(
                wire.exception_reason,
                "exception_reason",
            )?,
            visit_type: optional_code::<VisitType>(wire.r#type, "type")?
                .unwrap_or(VisitType::Routine),
            checkin_at: required_instant(&wire.checkin_at, "checkin_at")?,
            checkout_at: required_instant(&wire.checkout_at, "checkout_at")?,
            observed_situation: wire.observed_situation.clone(),
            plan_progress: wire.plan_progress.clone(),
            problems: wire.problems.clone(),
            actions: wire.actions.clone(),
            needs: wire.needs.clone(),
            policies_explained: wire.policies_explained.clone(),
            wellbeing: wire
                .wellbeing
                .as_ref()
                .map(TryInto::try_into)
                .transpose()
                .map_err(|error: ConvertError| error.within("wellbeing"))?
                .unwrap_or_default(),
            proposed_changes: wire.proposed_changes.iter().map(Into::into).collect(),
            photo_ids: wire.photo_ids.clone(),
            gps: wire
                .gps
                .as_ref()
                .map(TryInto::try_into)
                .transpose()
                .map_err(|error: ConvertError| error.within("gps"))?,
            recorded_at_device: required_instant(&wire.recorded_at_device, "recorded_at_device")?,
        })
    }
}

impl From<&model_visit::PhotoRecord> for v1::PhotoRecord {
    fn from(photo: &model_visit::PhotoRecord) -> Self {
        Self {
            photo_id: photo.photo_id.clone(),
            visit_id: photo.visit_id.clone(),
            sha256: photo.sha256.clone(),
            size_bytes: photo.size_bytes,
            mime_type: photo.mime_type.clone(),
            subject: code_or_zero(photo.subject),
            captured_at_device: photo.captured_at_device.map(instant_to_wire),
            in_app_camera: photo.in_app_camera,
        }
    }
}

impl TryFrom<&v1::PhotoRecord> for model_visit::PhotoRecord {
    type Error = ConvertError;
    fn try_from(wire: &v1::PhotoRecord) -> Result<Self, ConvertError> {
        Ok(Self {
            photo_id: wire.photo_id.clone(),
            visit_id: wire.visit_id.clone(),
            sha256: wire.sha256.clone(),
            size_bytes: wire.size_bytes,
            mime_type: wire.mime_type.clone(),
            subject: optional_code::<PhotoSubject>(wire.subject, "subject")?,
            captured_at_device: optional_instant(&wire.captured_at_device, "captured_at_device")?,
            in_app_camera: wire.in_app_camera,
        })
    }
}

// ---- income ------------------------------------------------------------------------------

impl TryFrom<&v1::IncomeRegistration> for IncomeRegistration {
    type Error = ConvertError;
    /// The derived totals on the wire are ignored; the model's formula recomputes them.
    fn try_from(wire: &v1::IncomeRegistration) -> Result<Self, ConvertError> {
        if !fieldsync_model::visit::is_uuid(&wire.registration_id) {
            return Err(ConvertError::new("registration_id", "must be a UUID"));
        }
        let components = IncomeComponents {
            wage_fen: wire.wage_fen,
            business_gross_fen: wire.business_gross_fen,
            property_fen: wire.property_fen,
            transfer_fen: wire.transfer_fen,
            business_cost_fen: wire.business_cost_fen,
        };
        let supersedes = match wire.supersedes_registration_id.as_str() {
            "" => None,
            id if fieldsync_model::visit::is_uuid(id) => Some(id.to_owned()),
            _ => {
                return Err(ConvertError::new(
                    "supersedes_registration_id",
                    "must be a UUID or empty",
                ));
            }
        };
        Ok(IncomeRegistration::new(
            wire.registration_id.clone(),
            wire.household_id.clone(),
            wire.year,
            wire.quarter,
            wire.household_size,
            components,
        )
        .map_err(|error| ConvertError::new("income", error.to_string()))?
        .superseding(supersedes))
    }
}

impl From<&IncomeRegistration> for v1::IncomeRegistration {
    fn from(registration: &IncomeRegistration) -> Self {
        Self {
            registration_id: registration.registration_id.clone(),
            household_id: registration.household_id.clone(),
            year: registration.year,
            quarter: registration.quarter,
            household_size: registration.household_size,
            wage_fen: registration.components.wage_fen,
            business_gross_fen: registration.components.business_gross_fen,
            property_fen: registration.components.property_fen,
            transfer_fen: registration.components.transfer_fen,
            business_cost_fen: registration.components.business_cost_fen,
            net_fen: registration.net_fen,
            per_capita_net_fen: registration.per_capita_net_fen,
            supersedes_registration_id: registration
                .supersedes_registration_id
                .clone()
                .unwrap_or_default(),
        }
    }
}

// ---- field edits -------------------------------------------------------------------------

/// A register target as the wire's `member_id`: empty for the household.
fn member_id_of(target: &FieldTarget) -> String {
    match target {
        FieldTarget::Household => String::new(),
        FieldTarget::Member(member_id) => member_id.clone(),
    }
}

/// The wire's `member_id` as a register target.
fn target_of(member_id: &str) -> FieldTarget {
    if member_id.is_empty() {
        FieldTarget::Household
    } else {
        FieldTarget::Member(member_id.to_owned())
    }
}

impl From<&FieldEdit> for v1::FieldEdit {
    fn from(edit: &FieldEdit) -> Self {
        Self {
            household_id: edit.household_id.clone(),
            member_id: member_id_of(&edit.target),
            field: edit.field.clone(),
            value_json: edit.value.to_string(),
            base_seq: edit.base_seq,
        }
    }
}

impl TryFrom<&v1::FieldEdit> for FieldEdit {
    type Error = ConvertError;
    fn try_from(wire: &v1::FieldEdit) -> Result<Self, ConvertError> {
        let value = serde_json::from_str(&wire.value_json)
            .map_err(|error| ConvertError::new("value_json", format!("is not JSON: {error}")))?;
        if wire.field.is_empty() {
            return Err(ConvertError::new("field", "is required"));
        }
        Ok(Self {
            household_id: wire.household_id.clone(),
            target: target_of(&wire.member_id),
            field: wire.field.clone(),
            value,
            base_seq: wire.base_seq,
        })
    }
}

// ---- pending conflicts ---------------------------------------------------------------------

impl From<&PendingConflict> for v1::PendingConflict {
    fn from(pending: &PendingConflict) -> Self {
        Self {
            household_id: pending.household_id.clone(),
            member_id: member_id_of(&pending.target),
            field: pending.field.clone(),
            recorded_at: Some(instant_to_wire(pending.recorded_at)),
            device_id: pending.device_id.clone(),
        }
    }
}

impl TryFrom<&v1::PendingConflict> for PendingConflict {
    type Error = ConvertError;
    fn try_from(wire: &v1::PendingConflict) -> Result<Self, ConvertError> {
        Ok(Self {
            household_id: wire.household_id.clone(),
            target: target_of(&wire.member_id),
            field: wire.field.clone(),
            recorded_at: required_instant(&wire.recorded_at, "recorded_at")?,
            device_id: wire.device_id.clone(),
        })
    }
}

// ---- push envelope -----------------------------------------------------------------------

impl From<&Mutation> for v1::Mutation {
    fn from(mutation: &Mutation) -> Self {
        let payload = match &mutation.payload {
            MutationPayload::SubmitVisit(visit) => v1::mutation::Payload::SubmitVisit(visit.into()),
            MutationPayload::AddPhoto(photo) => v1::mutation::Payload::AddPhoto(photo.into()),
            MutationPayload::RegisterIncome(registration) => {
                v1::mutation::Payload::RegisterIncome(registration.into())
            }
            MutationPayload::EditField(edit) => v1::mutation::Payload::EditField(edit.into()),
            MutationPayload::AddMember {
                household_id,
                member,
            } => v1::mutation::Payload::AddMember(v1::AddMember {
                household_id: household_id.clone(),
                member: Some(member.into()),
            }),
        };
        Self {
            seq: mutation.seq,
            mutation_id: mutation.mutation_id.clone(),
            hlc: mutation.hlc,
            payload: Some(payload),
        }
    }
}

impl TryFrom<&v1::Mutation> for Mutation {
    type Error = ConvertError;
    fn try_from(wire: &v1::Mutation) -> Result<Self, ConvertError> {
        let payload = match &wire.payload {
            Some(v1::mutation::Payload::SubmitVisit(visit)) => MutationPayload::SubmitVisit(
                visit
                    .try_into()
                    .map_err(|error: ConvertError| error.within("submit_visit"))?,
            ),
            Some(v1::mutation::Payload::AddPhoto(photo)) => MutationPayload::AddPhoto(
                photo
                    .try_into()
                    .map_err(|error: ConvertError| error.within("add_photo"))?,
            ),
            Some(v1::mutation::Payload::RegisterIncome(income)) => MutationPayload::RegisterIncome(
                income
                    .try_into()
                    .map_err(|error: ConvertError| error.within("register_income"))?,
            ),
            Some(v1::mutation::Payload::EditField(edit)) => MutationPayload::EditField(
                edit.try_into()
                    .map_err(|error: ConvertError| error.within("edit_field"))?,
            ),
            Some(v1::mutation::Payload::AddMember(add)) => {
                let member = add
                    .member
                    .as_ref()
                    .ok_or_else(|| ConvertError::new("add_member.member", "is required"))?;
                MutationPayload::AddMember {
                    household_id: add.household_id.clone(),
                    member: member
                        .try_into()
                        .map_err(|error: ConvertError| error.within("add_member.member"))?,
                }
            }
            None => return Err(ConvertError::new("payload", "is required")),
        };
        Ok(Self {
            seq: wire.seq,
            mutation_id: wire.mutation_id.clone(),
            hlc: wire.hlc,
            payload,
        })
    }
}

// ---- review status -----------------------------------------------------------------------

impl From<&ReturnReason> for v1::ReturnReason {
    fn from(reason: &ReturnReason) -> Self {
        Self {
            code: reason.code.clone(),
            field: reason.field.clone(),
        }
    }
}

impl From<&v1::ReturnReason> for ReturnReason {
    fn from(wire: &v1::ReturnReason) -> Self {
        Self {
            code: wire.code.clone(),
            field: wire.field.clone(),
        }
    }
}

impl From<&VisitStatus> for v1::VisitStatus {
    fn from(status: &VisitStatus) -> Self {
        Self {
            visit_id: status.visit_id.clone(),
            revision: status.revision,
            household_id: status.household_id.clone(),
            state: status.state.code(),
            reasons: status.reasons.iter().map(Into::into).collect(),
            note: status.note.clone(),
            deadline: status.deadline.clone(),
            reviewer_name: status.reviewer_name.clone(),
            decided_at: status.decided_at.map(instant_to_wire),
        }
    }
}

impl TryFrom<&v1::VisitStatus> for VisitStatus {
    type Error = ConvertError;
    fn try_from(wire: &v1::VisitStatus) -> Result<Self, ConvertError> {
        Ok(Self {
            visit_id: wire.visit_id.clone(),
            revision: wire.revision,
            household_id: wire.household_id.clone(),
            state: required_code::<ReviewState>(wire.state, "state")?,
            reasons: wire.reasons.iter().map(Into::into).collect(),
            note: wire.note.clone(),
            deadline: wire.deadline.clone(),
            reviewer_name: wire.reviewer_name.clone(),
            decided_at: optional_instant(&wire.decided_at, "decided_at")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_visit() -> model_visit::Visit {
        let checkin = OffsetDateTime::from_unix_timestamp(1_790_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        model_visit::Visit {
            visit_id: "01930000-0000-7000-8000-000000000001".into(),
            revision: 1,
            supersedes_revision: 0,
            household_id: "household-1".into(),
            mode: VisitMode::InPerson,
            exception_reason: None,
            visit_type: VisitType::Routine,
            checkin_at: checkin,
            checkout_at: checkin + time::Duration::minutes(40),
            observed_situation: "家中两位老人身体尚可，玉米已收。".into(),
            plan_progress: "养羊项目进展正常".into(),
            problems: String::new(),
            actions: String::new(),
            needs: String::new(),
            policies_explained: vec!["医保代缴".into()],
            wellbeing: model_visit::WellbeingCheck {
                food: model_visit::CheckResult::Pass,
                ..Default::default()
            },
            proposed_changes: vec![],
            photo_ids: vec!["01930000-0000-7000-8000-000000000002".into()],
            gps: Some(model_visit::GpsFix {
                lat: 26.4,
                lon: 107.5,
                crs: Crs::Wgs84,
                accuracy_m: 8.0,
                provider: Some(LocationProvider::Gps),
                is_mock: false,
                fix_time: Some(checkin),
            }),
            recorded_at_device: checkin,
        }
    }

    #[test]
    fn a_visit_survives_the_round_trip_through_the_wire() {
        let visit = sample_visit();
        let wire = v1::Visit::from(&visit);
        let back = model_visit::Visit::try_from(&wire).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(back, visit);
    }

    #[test]
    fn a_pending_conflict_survives_the_round_trip_and_needs_its_time() {
        let pending = PendingConflict {
            household_id: "hh-1".into(),
            target: FieldTarget::Member("m-1".into()),
            field: "health".into(),
            recorded_at: time::macros::datetime!(2026-11-09 09:30 +8),
            device_id: "device-a".into(),
        };
        let wire = v1::PendingConflict::from(&pending);
        assert_eq!(wire.member_id, "m-1");
        assert_eq!(PendingConflict::try_from(&wire), Ok(pending.clone()));
        let household = v1::PendingConflict {
            member_id: String::new(),
            ..wire.clone()
        };
        assert_eq!(
            PendingConflict::try_from(&household).map(|back| back.target),
            Ok(FieldTarget::Household)
        );
        let untimed = v1::PendingConflict {
            recorded_at: None,
            ..wire
        };
        assert_eq!(
            PendingConflict::try_from(&untimed).unwrap_err().field,
            "recorded_at"
        );
    }

    #[test]
    fn a_bad_wire_visit_names_the_field() {
        let mut wire = v1::Visit::from(&sample_visit());
        wire.checkin_at = None;
        assert_eq!(
            model_visit::Visit::try_from(&wire).unwrap_err().field,
            "checkin_at"
        );
        let mut wire = v1::Visit::from(&sample_visit());
        wire.mode = 42;
        assert_eq!(
            model_visit::Visit::try_from(&wire).unwrap_err().field,
            "mode"
        );
        let mut wire = v1::Visit::from(&sample_visit());
        wire.gps = Some(v1::GpsFix {
            provider: 7,
            ..wire.gps.clone().unwrap_or_default()
        });
        assert_eq!(
            model_visit::Visit::try_from(&wire).unwrap_err().field,
            "gps.provider"
        );
    }

    #[test]
    fn a_household_re_encodes_to_the_same_bytes_so_pull_checksums_match() {
        use prost::Message;
        let household = v1::Household {
            household_id: "h".into(),
            field_seqs: (0..50)
                .map(|index| (format!("member:m{index}.health"), index))
                .collect(),
            ..Default::default()
        };
        let page = v1::PullPage {
            households: vec![household],
            ..Default::default()
        };
        let sent = page.encode_to_vec();
        let received = v1::PullPage::decode(sent.as_slice()).unwrap_or_default();
        assert_eq!(
            received.encode_to_vec(),
            sent,
            "map entries must encode in one order"
        );
    }

    #[test]
    fn timestamps_before_1970_keep_their_sign() {
        let instant = OffsetDateTime::from_unix_timestamp_nanos(-1_500_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let wire = instant_to_wire(instant);
        assert_eq!((wire.seconds, wire.nanos), (-2, 500_000_000));
        assert_eq!(instant_from_wire(&wire, "t"), Ok(instant));
    }

    #[test]
    fn optional_instants_are_absent_or_in_range() {
        assert_eq!(optional_instant(&None, "t"), Ok(None));
        let instant = OffsetDateTime::from_unix_timestamp_nanos(1_790_000_000_123_456_789)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(
            optional_instant(&Some(instant_to_wire(instant)), "t"),
            Ok(Some(instant))
        );
        let far_future = prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert_eq!(
            optional_instant(&Some(far_future), "server_time")
                .unwrap_err()
                .field,
            "server_time"
        );
    }

    #[test]
    fn income_totals_are_recomputed_not_trusted() {
        let wire = v1::IncomeRegistration {
            registration_id: "01930000-0000-7000-8000-000000000003".into(),
            household_id: "h".into(),
            year: 2026,
            quarter: 2,
            household_size: 2,
            wage_fen: 100_000,
            transfer_fen: 20_000,
            business_cost_fen: 10_000,
            net_fen: 999_999_999,
            ..Default::default()
        };
        let registration =
            IncomeRegistration::try_from(&wire).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(registration.net_fen, 110_000);
        assert_eq!(registration.per_capita_net_fen, 55_000);
        assert_eq!(registration.supersedes_registration_id, None);
    }

    #[test]
    fn an_income_correction_names_what_it_replaces_both_ways() {
        let replaced = "01930000-0000-7000-8000-000000000004";
        let wire = v1::IncomeRegistration {
            registration_id: "01930000-0000-7000-8000-000000000005".into(),
            household_id: "h".into(),
            year: 2026,
            quarter: 2,
            household_size: 2,
            wage_fen: 100_000,
            supersedes_registration_id: replaced.into(),
            ..Default::default()
        };
        let registration =
            IncomeRegistration::try_from(&wire).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            registration.supersedes_registration_id.as_deref(),
            Some(replaced)
        );
        assert_eq!(
            v1::IncomeRegistration::from(&registration).supersedes_registration_id,
            replaced
        );
        let malformed = v1::IncomeRegistration {
            supersedes_registration_id: "not-an-id".into(),
            ..wire
        };
        let error = IncomeRegistration::try_from(&malformed).expect_err("malformed id");
        assert!(
            error.to_string().contains("supersedes_registration_id"),
            "{error}"
        );
    }
}
