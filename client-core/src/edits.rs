//! Household card edits on the phone, as pure functions: apply an edit to the local card at
//! once (optimistic), turn it into the outbox mutation with the `base_seq` the cadre saw,
//! and rebase still-pending edits on top of a freshly pulled card so a pull never wipes out
//! work that has not reached the server yet. The server merges per field by
//! `(hlc, device_id)`; the phone only has to keep showing what it has not sent.

use fieldsync_model::household::{Household, Member};
use fieldsync_model::register::{FieldEdit, FieldTarget, apply_value, validate_edit};
use fieldsync_model::visit::InvalidField;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One change the cadre makes to a household card.
#[derive(Debug, Clone, PartialEq)]
pub enum CardEdit {
    /// Set one household or member field (`removed = true` removes a member).
    Field {
        target: FieldTarget,
        field: String,
        value: Value,
    },
    /// Add a member row (add-wins on the server).
    AddMember(Member),
}

/// The outbox payload of an added member (`MutationPayload::AddMember` as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddMemberPayload {
    pub household_id: String,
    pub member: Member,
}

/// A stored, still-pending edit of a household, in outbox order.
#[derive(Debug, Clone, PartialEq)]
pub enum PendingEdit {
    Field(FieldEdit),
    AddMember(Member),
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidField {
    InvalidField {
        field,
        message: message.into(),
    }
}

/// Check a new member before it is stored: a name, a well-formed birth date and ID number
/// when given, and an id not already on the card.
pub fn validate_new_member(card: &Household, member: &Member) -> Result<(), InvalidField> {
    if member.member_id.trim().is_empty() {
        return Err(invalid("member_id", "is required"));
    }
    if card
        .members
        .iter()
        .any(|existing| existing.member_id == member.member_id)
    {
        return Err(invalid(
            "member_id",
            format!("{} is already in this household", member.member_id),
        ));
    }
    if member.name.trim().is_empty() {
        return Err(invalid("name", "is required"));
    }
    if member.name.chars().count() > 50 {
        return Err(invalid("name", "at most 50 characters"));
    }
    if !member.birth_date.is_empty()
        && time::Date::parse(
            &member.birth_date,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .is_err()
    {
        return Err(invalid("birth_date", "must be YYYY-MM-DD"));
    }
    if !member.id_number.is_empty() {
        fieldsync_model::id_number::validate(&member.id_number)
            .map_err(|error| invalid("id_number", error.to_string()))?;
    }
    Ok(())
}

/// Validate `edit` against the card and apply it. On error the card is unchanged. Returns
/// the pending edit to store, with the `base_seq` the card showed before the change.
pub fn apply_new_edit(card: &mut Household, edit: CardEdit) -> Result<PendingEdit, InvalidField> {
    match edit {
        CardEdit::Field {
            target,
            field,
            value,
        } => {
            let field_edit = FieldEdit {
                household_id: card.household_id.clone(),
                base_seq: card.field_seq(&target, &field),
                target,
                field,
                value,
            };
            validate_edit(card, &field_edit)?;
            apply_value(
                card,
                &field_edit.target,
                &field_edit.field,
                &field_edit.value,
            )?;
            Ok(PendingEdit::Field(field_edit))
        }
        CardEdit::AddMember(member) => {
            validate_new_member(card, &member)?;
            card.members.push(member.clone());
            Ok(PendingEdit::AddMember(member))
        }
    }
}

/// The pulled card with the phone's pending edits re-applied in outbox order. The pulled
/// `field_seqs` stay: they are what the next edit must quote. An edit that no longer fits
/// (its member vanished from the card) is skipped here; the server still decides on it.
pub fn rebase(mut pulled: Household, pending: &[PendingEdit]) -> Household {
    for edit in pending {
        match edit {
            PendingEdit::Field(field_edit) => {
                let mut candidate = pulled.clone();
                if apply_value(
                    &mut candidate,
                    &field_edit.target,
                    &field_edit.field,
                    &field_edit.value,
                )
                .is_ok()
                {
                    pulled = candidate;
                }
            }
            PendingEdit::AddMember(member) => {
                // Add-wins: if the server already has the row (a lost push response), its
                // version stays.
                if !pulled
                    .members
                    .iter()
                    .any(|existing| existing.member_id == member.member_id)
                {
                    pulled.members.push(member.clone());
                }
            }
        }
    }
    pulled
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_model::codes::{
        Disability, Health, HouseholdAttribute, LabourCapacity, PovertyCause, Relation, Schooling,
        Sex,
    };
    use serde_json::json;

    fn member(id: &str, name: &str) -> Member {
        Member {
            member_id: id.into(),
            name: name.into(),
            relation: Relation::Daughter,
            sex: Sex::Female,
            birth_date: "2010-04-01".into(),
            id_number: String::new(),
            health: Health::Healthy,
            labour_capacity: LabourCapacity::None,
            schooling: Schooling::NotInSchool,
            disability: Disability::None,
            disability_grade: 0,
            has_medical_insurance: true,
            has_serious_illness_insurance: false,
            has_pension_insurance: false,
            removed: false,
        }
    }

    fn card() -> Household {
        Household {
            household_id: "hh-1".into(),
            national_household_number: String::new(),
            head_name: "张三".into(),
            township_id: "t".into(),
            village_id: "v".into(),
            village_name: "石板村".into(),
            address: String::new(),
            phone: "13800000000".into(),
            attribute: HouseholdAttribute::General,
            main_cause: PovertyCause::Illness,
            secondary_causes: vec![],
            housing_danger_level: None,
            location: None,
            members: vec![member("m-1", "张三")],
            measures: vec![],
            server_seq: 7,
            field_seqs: [("household.phone".to_owned(), 5)].into_iter().collect(),
        }
    }

    #[test]
    fn an_edit_quotes_the_field_seq_it_saw_and_changes_the_card_at_once() {
        let mut household = card();
        let pending = apply_new_edit(
            &mut household,
            CardEdit::Field {
                target: FieldTarget::Household,
                field: "phone".into(),
                value: json!("13900000001"),
            },
        )
        .unwrap();
        let PendingEdit::Field(edit) = pending else {
            panic!("a field edit");
        };
        assert_eq!(edit.base_seq, 5);
        assert_eq!(household.phone, "13900000001");
    }

    #[test]
    fn a_bad_value_names_the_field_and_leaves_the_card_alone() {
        let mut household = card();
        let error = apply_new_edit(
            &mut household,
            CardEdit::Field {
                target: FieldTarget::Household,
                field: "attribute".into(),
                value: json!("poor"),
            },
        )
        .unwrap_err();
        assert_eq!(error.field, "attribute");
        assert_eq!(household, card());
        let unknown =
            apply_new_edit(&mut household, CardEdit::AddMember(member("m-1", "重复"))).unwrap_err();
        assert_eq!(unknown.field, "member_id");
    }

    #[test]
    fn pending_edits_survive_a_pull_and_the_pulled_field_seqs_stay() {
        let pending = vec![
            PendingEdit::AddMember(member("m-2", "李四")),
            PendingEdit::Field(FieldEdit {
                household_id: "hh-1".into(),
                target: FieldTarget::Member("m-2".into()),
                field: "health".into(),
                value: json!(2),
                base_seq: 0,
            }),
            PendingEdit::Field(FieldEdit {
                household_id: "hh-1".into(),
                target: FieldTarget::Household,
                field: "phone".into(),
                value: json!("13900000001"),
                base_seq: 5,
            }),
        ];
        let mut pulled = card();
        pulled.head_name = "张大山".into();
        pulled.field_seqs.insert("household.head_name".into(), 9);
        let rebased = rebase(pulled, &pending);
        assert_eq!(rebased.head_name, "张大山", "the server's change is kept");
        assert_eq!(rebased.phone, "13900000001", "the pending edit is kept");
        assert_eq!(rebased.members.len(), 2);
        assert_eq!(rebased.members[1].health, Health::ChronicIllness);
        assert_eq!(rebased.field_seqs["household.head_name"], 9);
        assert_eq!(rebased.field_seqs["household.phone"], 5);
    }
}
