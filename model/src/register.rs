//! Household and member field registers: how concurrent edits from several phones merge.
//!
//! Every editable field of a household card is a register `(household, target, field)`.
//! The server keeps every write applied to a register with the server sequence it was
//! applied at. The value shown is the write with the greatest [`Stamp`] `(hlc, device_id)`
//! (last writer wins), so every replica converges whatever order writes arrive in.
//!
//! A write carries the `base_seq` of the register as its author last saw it. Every stored
//! write with a higher sequence was unknown to the author, so it is concurrent; if it came
//! from another device and holds a different value, the pair is a *conflict* and goes to the
//! township's review queue. Conflicts are pairs of stamps in a fixed order, so the set of
//! conflicts is the same for every delivery order, and nothing is lost silently.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codes::{
    CodeList, Crs, Disability, Health, HouseholdAttribute, HousingDangerLevel, LabourCapacity,
    PovertyCause, Relation, Schooling, Sex,
};
use crate::hlc::Hlc;
use crate::household::{GeoPoint, Household, Member};
use crate::visit::InvalidField;

/// What part of the household card a register belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "member_id")]
pub enum FieldTarget {
    Household,
    Member(String),
}

impl FieldTarget {
    /// `household` or `member:<id>`, the form used in storage and on the wire.
    pub fn as_key(&self) -> String {
        match self {
            Self::Household => "household".to_owned(),
            Self::Member(member_id) => format!("member:{member_id}"),
        }
    }

    /// Parse the form written by [`FieldTarget::as_key`].
    pub fn parse_key(key: &str) -> Option<Self> {
        match key {
            "household" => Some(Self::Household),
            other => other
                .strip_prefix("member:")
                .filter(|id| !id.is_empty())
                .map(|id| Self::Member(id.to_owned())),
        }
    }
}

/// Total order of writes: HLC first, device id as the tie-break.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamp {
    pub hlc: Hlc,
    pub device_id: String,
}

/// An edit to one field, as a phone (or the console) sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldEdit {
    pub household_id: String,
    pub target: FieldTarget,
    pub field: String,
    /// The new value as JSON: strings, numbers (national codes for code lists), booleans,
    /// arrays of codes, `{lat, lon, crs}` for a location, or `null` to clear.
    pub value: Value,
    /// Server sequence of this register as the author last saw it (0: never seen).
    pub base_seq: i64,
}

/// One write as the server stores it in a register's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterWrite {
    pub value: Value,
    pub stamp: Stamp,
    pub author_user_id: String,
    pub base_seq: i64,
    /// Server sequence at which this write was applied.
    pub server_seq: i64,
}

/// Two concurrent writes with different values to the same register. `first` has the
/// smaller stamp, so the record is the same whichever arrived first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictPair {
    pub household_id: String,
    pub target: FieldTarget,
    pub field: String,
    pub first: RegisterWrite,
    pub second: RegisterWrite,
}

impl ConflictPair {
    /// Stable identity of the pair, used to store each conflict once.
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}|{}@{}|{}@{}",
            self.household_id,
            self.target.as_key(),
            self.field,
            self.first.stamp.hlc.as_u64(),
            self.first.stamp.device_id,
            self.second.stamp.hlc.as_u64(),
            self.second.stamp.device_id
        )
    }

    /// The value that wins by last-writer-wins.
    pub fn winner(&self) -> &RegisterWrite {
        &self.second
    }
}

/// One of a user's own edits that is half of an open conflict record: it waits for a
/// township supervisor to choose between it and a concurrent edit of the same field (冲突记录
/// 待审核员处理). Until then the register shows the later of the two (last writer wins), which
/// may not be this edit. The pull tells the phone the user's complete list at every
/// checkpoint, so the cadre learns their edit is waiting, and learns when it is settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingConflict {
    pub household_id: String,
    pub target: FieldTarget,
    pub field: String,
    /// When the server recorded the conflict.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: time::OffsetDateTime,
    /// The device that made the user's edit (the user may have more than one phone).
    pub device_id: String,
}

impl PendingConflict {
    /// The outcome in one Chinese sentence, for a phone's status screen.
    pub const WAITING_ZH: &'static str = "与他人的修改冲突，等待乡镇审核员处理";
}

/// The write currently shown for a register: the greatest stamp.
pub fn current(history: &[RegisterWrite]) -> Option<&RegisterWrite> {
    history.iter().max_by(|a, b| a.stamp.cmp(&b.stamp))
}

/// What applying `incoming` to a register with `history` means.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeOutcome {
    /// True when the incoming write becomes the register's value.
    pub incoming_wins: bool,
    /// Conflicts between the incoming write and stored concurrent writes.
    pub conflicts: Vec<ConflictPair>,
}

/// Merge one write into a register's history (which does not contain it yet). Pure: the
/// caller stores the write and the conflicts.
pub fn merge(
    household_id: &str,
    target: &FieldTarget,
    field: &str,
    history: &[RegisterWrite],
    incoming: &RegisterWrite,
) -> MergeOutcome {
    let incoming_wins = current(history).is_none_or(|shown| incoming.stamp > shown.stamp);
    let conflicts = history
        .iter()
        .filter(|stored| {
            stored.server_seq > incoming.base_seq
                && stored.stamp.device_id != incoming.stamp.device_id
                && stored.value != incoming.value
        })
        .map(|stored| {
            let (first, second) = if stored.stamp < incoming.stamp {
                (stored.clone(), incoming.clone())
            } else {
                (incoming.clone(), stored.clone())
            };
            ConflictPair {
                household_id: household_id.to_owned(),
                target: target.clone(),
                field: field.to_owned(),
                first,
                second,
            }
        })
        .collect();
    MergeOutcome {
        incoming_wins,
        conflicts,
    }
}

// ---- applying a value to the card ----------------------------------------------------------

fn bad(field: &'static str, message: impl Into<String>) -> InvalidField {
    InvalidField {
        field,
        message: message.into(),
    }
}

fn text(value: &Value, field: &'static str, max_chars: usize) -> Result<String, InvalidField> {
    let text = value
        .as_str()
        .ok_or_else(|| bad(field, "must be a string"))?;
    if text.chars().count() > max_chars {
        return Err(bad(field, format!("at most {max_chars} characters")));
    }
    Ok(text.to_owned())
}

fn code<T: CodeList>(value: &Value, field: &'static str) -> Result<T, InvalidField> {
    value
        .as_i64()
        .and_then(|number| i32::try_from(number).ok())
        .and_then(T::from_code)
        .ok_or_else(|| bad(field, format!("{value} is not a known code")))
}

fn flag(value: &Value, field: &'static str) -> Result<bool, InvalidField> {
    value
        .as_bool()
        .ok_or_else(|| bad(field, "must be true or false"))
}

/// Household fields a phone or the console may edit.
pub const HOUSEHOLD_FIELDS: &[&str] = &[
    "head_name",
    "phone",
    "address",
    "attribute",
    "main_cause",
    "secondary_causes",
    "housing_danger_level",
    "location",
];

/// Member fields a phone or the console may edit; `removed` is the tombstone.
pub const MEMBER_FIELDS: &[&str] = &[
    "name",
    "relation",
    "sex",
    "birth_date",
    "id_number",
    "health",
    "labour_capacity",
    "schooling",
    "disability",
    "disability_grade",
    "has_medical_insurance",
    "has_serious_illness_insurance",
    "has_pension_insurance",
    "removed",
];

/// Check an edit without applying it: the field exists, the value has the right type and
/// passes the field's rules, and a member target names a member of the card.
pub fn validate_edit(card: &Household, edit: &FieldEdit) -> Result<(), InvalidField> {
    let mut scratch = card.clone();
    apply_value(&mut scratch, &edit.target, &edit.field, &edit.value)
}

/// Set one field of the card to `value`.
pub fn apply_value(
    card: &mut Household,
    target: &FieldTarget,
    field: &str,
    value: &Value,
) -> Result<(), InvalidField> {
    match target {
        FieldTarget::Household => apply_household_value(card, field, value),
        FieldTarget::Member(member_id) => {
            let member = card
                .members
                .iter_mut()
                .find(|member| &member.member_id == member_id)
                .ok_or_else(|| {
                    bad(
                        "target",
                        format!("member {member_id} is not in this household"),
                    )
                })?;
            apply_member_value(member, field, value)
        }
    }
}

fn apply_household_value(
    card: &mut Household,
    field: &str,
    value: &Value,
) -> Result<(), InvalidField> {
    match field {
        "head_name" => card.head_name = text(value, "head_name", 50)?,
        "phone" => card.phone = text(value, "phone", 30)?,
        "address" => card.address = text(value, "address", 200)?,
        "attribute" => card.attribute = code::<HouseholdAttribute>(value, "attribute")?,
        "main_cause" => card.main_cause = code::<PovertyCause>(value, "main_cause")?,
        "secondary_causes" => {
            let items = value
                .as_array()
                .ok_or_else(|| bad("secondary_causes", "must be a list of codes"))?;
            card.secondary_causes = items
                .iter()
                .map(|item| code::<PovertyCause>(item, "secondary_causes"))
                .collect::<Result<_, _>>()?;
        }
        "housing_danger_level" => {
            card.housing_danger_level = if value.is_null() {
                None
            } else {
                Some(code::<HousingDangerLevel>(value, "housing_danger_level")?)
            };
        }
        "location" => {
            card.location = if value.is_null() {
                None
            } else {
                let lat = value.get("lat").and_then(Value::as_f64);
                let lon = value.get("lon").and_then(Value::as_f64);
                let crs = match value.get("crs") {
                    None | Some(Value::Null) => Crs::Wgs84,
                    Some(crs) => code::<Crs>(crs, "location")?,
                };
                match (lat, lon) {
                    (Some(lat), Some(lon)) if crate::geo::is_valid_coordinate(lat, lon) => {
                        Some(GeoPoint { lat, lon, crs })
                    }
                    _ => return Err(bad("location", "needs a valid lat and lon")),
                }
            };
        }
        _ => {
            return Err(bad(
                "field",
                format!("{field:?} is not an editable household field"),
            ));
        }
    }
    Ok(())
}

fn apply_member_value(member: &mut Member, field: &str, value: &Value) -> Result<(), InvalidField> {
    match field {
        "name" => member.name = text(value, "name", 50)?,
        "relation" => member.relation = code::<Relation>(value, "relation")?,
        "sex" => member.sex = code::<Sex>(value, "sex")?,
        "birth_date" => {
            let date = text(value, "birth_date", 10)?;
            time::Date::parse(
                &date,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .map_err(|_| bad("birth_date", "must be YYYY-MM-DD"))?;
            member.birth_date = date;
        }
        "id_number" => {
            let id_number = text(value, "id_number", 18)?;
            crate::id_number::validate(&id_number)
                .map_err(|error| bad("id_number", error.to_string()))?;
            member.id_number = id_number;
        }
        "health" => member.health = code::<Health>(value, "health")?,
        "labour_capacity" => {
            member.labour_capacity = code::<LabourCapacity>(value, "labour_capacity")?
        }
        "schooling" => member.schooling = code::<Schooling>(value, "schooling")?,
        "disability" => member.disability = code::<Disability>(value, "disability")?,
        "disability_grade" => {
            let grade = value
                .as_u64()
                .filter(|grade| *grade <= 4)
                .ok_or_else(|| bad("disability_grade", "must be 0–4"))?;
            member.disability_grade = grade as u32;
        }
        "has_medical_insurance" => {
            member.has_medical_insurance = flag(value, "has_medical_insurance")?
        }
        "has_serious_illness_insurance" => {
            member.has_serious_illness_insurance = flag(value, "has_serious_illness_insurance")?
        }
        "has_pension_insurance" => {
            member.has_pension_insurance = flag(value, "has_pension_insurance")?
        }
        "removed" => member.removed = flag(value, "removed")?,
        _ => {
            return Err(bad(
                "field",
                format!("{field:?} is not an editable member field"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(
        value: Value,
        millis: u64,
        device: &str,
        base_seq: i64,
        server_seq: i64,
    ) -> RegisterWrite {
        RegisterWrite {
            value,
            stamp: Stamp {
                hlc: Hlc::from_parts(millis, 0),
                device_id: device.into(),
            },
            author_user_id: format!("user-{device}"),
            base_seq,
            server_seq,
        }
    }

    #[test]
    fn the_greatest_stamp_wins_and_ties_break_on_device() {
        let history = vec![write(json!("a"), 10, "phone-b", 0, 1)];
        let later = write(json!("b"), 11, "phone-a", 1, 2);
        assert!(merge("h", &FieldTarget::Household, "phone", &history, &later).incoming_wins);
        let same_time_smaller_device = write(json!("c"), 10, "phone-a", 0, 2);
        assert!(
            !merge(
                "h",
                &FieldTarget::Household,
                "phone",
                &history,
                &same_time_smaller_device
            )
            .incoming_wins
        );
    }

    #[test]
    fn an_edit_that_did_not_see_a_different_value_records_a_conflict_whoever_wins() {
        let history = vec![write(json!("13800000001"), 50, "phone-b", 0, 7)];
        let incoming = write(json!("13900000002"), 40, "phone-a", 3, 8);
        let outcome = merge("h", &FieldTarget::Household, "phone", &history, &incoming);
        assert!(!outcome.incoming_wins, "the older edit loses by LWW");
        assert_eq!(
            outcome.conflicts.len(),
            1,
            "but it is not lost: a conflict is recorded"
        );
        let conflict = &outcome.conflicts[0];
        assert_eq!(conflict.first.value, json!("13900000002"));
        assert_eq!(conflict.winner().value, json!("13800000001"));
    }

    #[test]
    fn no_conflict_for_seen_writes_same_values_or_the_same_device() {
        let history = vec![write(json!("x"), 50, "phone-b", 0, 7)];
        let saw_it = write(json!("y"), 60, "phone-a", 7, 8);
        assert!(
            merge("h", &FieldTarget::Household, "phone", &history, &saw_it)
                .conflicts
                .is_empty()
        );
        let same_value = write(json!("x"), 60, "phone-a", 0, 8);
        assert!(
            merge("h", &FieldTarget::Household, "phone", &history, &same_value)
                .conflicts
                .is_empty()
        );
        let same_device = write(json!("z"), 60, "phone-b", 0, 8);
        assert!(
            merge(
                "h",
                &FieldTarget::Household,
                "phone",
                &history,
                &same_device
            )
            .conflicts
            .is_empty()
        );
    }

    #[test]
    fn target_keys_round_trip() {
        for target in [FieldTarget::Household, FieldTarget::Member("m-1".into())] {
            assert_eq!(FieldTarget::parse_key(&target.as_key()), Some(target));
        }
        assert_eq!(FieldTarget::parse_key("member:"), None);
        assert_eq!(FieldTarget::parse_key("village"), None);
    }
}
