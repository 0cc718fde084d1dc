//! Decoding the reviewer's decision, from the HTML form (repeated `reasons` keys) or from
//! the JSON twin, into one validated [`DecisionRequest`]. Both boundaries go through
//! [`DecisionInput::into_request`], so they accept and refuse exactly the same things.

use fieldsync_model::review::{Decision, DecisionRequest, ReturnReason};
use serde::Deserialize;

use crate::error::ServiceError;

/// Longest reviewer note accepted; a note is a sentence or two, not a document.
pub const MAX_NOTE_CHARS: usize = 2_000;
/// Most reasons one return may carry (more than the console offers, for API clients).
pub const MAX_REASONS: usize = 32;
/// Longest reason code or field name accepted.
const MAX_CODE_CHARS: usize = 64;

/// The visit field a return reason points at, so the phone can highlight it. Photo and GPS
/// reasons point at the evidence, a thin write-up at the main content section.
pub fn reason_field(code: &str) -> &'static str {
    if code.starts_with("photo_") {
        "photo_ids"
    } else if code.starts_with("gps_") {
        "gps"
    } else if code == "content_too_short" {
        "observed_situation"
    } else {
        ""
    }
}

/// A decision as submitted, before validation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DecisionInput {
    /// `approve` or `return`.
    pub decision: String,
    pub revision: u32,
    pub content_hash: String,
    #[serde(default)]
    pub reasons: Vec<ReasonInput>,
    #[serde(default)]
    pub note: String,
    /// `YYYY-MM-DD` or empty.
    #[serde(default)]
    pub deadline: String,
}

/// One reason as submitted; `field` may be left out and is then derived from the code.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ReasonInput {
    pub code: String,
    #[serde(default)]
    pub field: String,
}

/// Parse the URL-encoded HTML decision form. `reasons` may repeat (one per ticked
/// checkbox); other keys keep their last value.
pub fn parse_decision_form(body: &[u8]) -> Result<DecisionInput, ServiceError> {
    let mut input = DecisionInput::default();
    let mut revision_text: Option<String> = None;
    for (key, value) in form_urlencoded::parse(body) {
        match key.as_ref() {
            "decision" => input.decision = value.into_owned(),
            "revision" => revision_text = Some(value.into_owned()),
            "content_hash" => input.content_hash = value.trim().to_owned(),
            "reasons" => {
                // `code` or `code:field`: the console's checkboxes attach each reason to the
                // field it was ticked beside.
                let (code, field) = value.split_once(':').unwrap_or((&value, ""));
                let code = code.trim();
                if !code.is_empty() {
                    input.reasons.push(ReasonInput {
                        code: code.to_owned(),
                        field: field.trim().to_owned(),
                    });
                }
            }
            "note" => input.note = value.into_owned(),
            "deadline" => input.deadline = value.trim().to_owned(),
            // Unknown keys (a submit button's name, future fields) are ignored on purpose.
            _ => {}
        }
    }
    let revision_text =
        revision_text.ok_or_else(|| ServiceError::invalid("revision", "is required"))?;
    input.revision = revision_text.trim().parse().map_err(|_| {
        ServiceError::invalid(
            "revision",
            format!("{revision_text:?} is not a revision number"),
        )
    })?;
    Ok(input)
}

fn is_code_like(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_CODE_CHARS
        && text
            .bytes()
            .all(|byte| matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.'))
}

impl DecisionInput {
    /// Validate and turn into the use case's request. An approval carries no reasons or
    /// deadline: the HTML form has both buttons in one form, so ticked boxes must not leak
    /// into an approval.
    pub fn into_request(self, visit_id: &str) -> Result<DecisionRequest, ServiceError> {
        let decision = match self.decision.trim() {
            "approve" => Decision::Approve,
            "return" => Decision::Return,
            other => {
                return Err(ServiceError::invalid(
                    "decision",
                    format!("必须是 approve 或 return (got {other:?})"),
                ));
            }
        };
        if self.revision == 0 {
            return Err(ServiceError::invalid("revision", "starts at 1"));
        }
        if self.content_hash.is_empty() {
            return Err(ServiceError::invalid("content_hash", "is required"));
        }
        if self.note.chars().count() > MAX_NOTE_CHARS {
            return Err(ServiceError::invalid(
                "note",
                format!("最多{MAX_NOTE_CHARS}个字 (at most {MAX_NOTE_CHARS} characters)"),
            ));
        }
        let mut reasons: Vec<ReturnReason> = Vec::new();
        if decision == Decision::Return {
            if self.reasons.len() > MAX_REASONS {
                return Err(ServiceError::invalid(
                    "reasons",
                    format!("at most {MAX_REASONS} reasons"),
                ));
            }
            for reason in self.reasons {
                let code = reason.code.trim().to_owned();
                if !is_code_like(&code) {
                    return Err(ServiceError::invalid(
                        "reasons",
                        format!("{code:?} is not a reason code"),
                    ));
                }
                let field = match reason.field.trim() {
                    "" => reason_field(&code).to_owned(),
                    given if is_code_like(given) => given.to_owned(),
                    given => {
                        return Err(ServiceError::invalid(
                            "reasons.field",
                            format!("{given:?} is not a field name"),
                        ));
                    }
                };
                // A double-ticked or repeated reason says nothing new; the same code on two
                // fields (two thin sections) is two reasons.
                if !reasons
                    .iter()
                    .any(|known| known.code == code && known.field == field)
                {
                    reasons.push(ReturnReason { code, field });
                }
            }
        }
        Ok(DecisionRequest {
            visit_id: visit_id.to_owned(),
            revision: self.revision,
            content_hash: self.content_hash,
            decision,
            reasons,
            note: self.note.trim().to_owned(),
            deadline: if decision == Decision::Return {
                self.deadline.trim().to_owned()
            } else {
                String::new()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_point_at_the_field_they_criticise() {
        assert_eq!(reason_field("photo_not_at_household"), "photo_ids");
        assert_eq!(reason_field("photo_unclear"), "photo_ids");
        assert_eq!(reason_field("gps_far"), "gps");
        assert_eq!(reason_field("gps_missing"), "gps");
        assert_eq!(reason_field("content_too_short"), "observed_situation");
        assert_eq!(reason_field("income_inconsistent"), "");
        assert_eq!(reason_field("other"), "");
    }

    #[test]
    fn the_html_form_keeps_every_ticked_reason() {
        let body = "decision=return&revision=2&content_hash=abc&reasons=gps_far&reasons=photo_unclear\
                    &reasons=gps_far&note=%E8%AF%B7%E8%A1%A5%E6%8B%8D&deadline=2026-11-20";
        let input = parse_decision_form(body.as_bytes()).unwrap();
        assert_eq!(input.reasons.len(), 3);
        let request = input.into_request("v1").unwrap();
        assert_eq!(request.decision, Decision::Return);
        assert_eq!(request.revision, 2);
        assert_eq!(request.note, "请补拍");
        assert_eq!(request.deadline, "2026-11-20");
        assert_eq!(
            request.reasons,
            vec![
                ReturnReason {
                    code: "gps_far".into(),
                    field: "gps".into()
                },
                ReturnReason {
                    code: "photo_unclear".into(),
                    field: "photo_ids".into()
                },
            ]
        );
    }

    #[test]
    fn html_reasons_may_name_their_field() {
        let body = b"decision=return&revision=1&content_hash=abc\
                     &reasons=content_too_short%3Aplan_progress&reasons=content_too_short%3Aproblems\
                     &reasons=gps_far%3A&reasons=other%3A";
        let request = parse_decision_form(body)
            .unwrap()
            .into_request("v1")
            .unwrap();
        let pairs: Vec<(&str, &str)> = request
            .reasons
            .iter()
            .map(|reason| (reason.code.as_str(), reason.field.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("content_too_short", "plan_progress"),
                ("content_too_short", "problems"),
                ("gps_far", "gps"),
                ("other", ""),
            ]
        );
        let bad = parse_decision_form(
            b"decision=return&revision=1&content_hash=abc&reasons=gps_far%3A%3Cb%3E",
        )
        .and_then(|input| input.into_request("v1"));
        assert!(
            matches!(&bad, Err(ServiceError::InvalidArgument { field, .. }) if field == "reasons.field"),
            "{bad:?}"
        );
    }

    #[test]
    fn an_approval_drops_ticked_reasons_and_the_deadline() {
        let body = b"decision=approve&revision=1&content_hash=abc&reasons=gps_far&deadline=2026-11-20&note=";
        let request = parse_decision_form(body)
            .unwrap()
            .into_request("v1")
            .unwrap();
        assert_eq!(request.decision, Decision::Approve);
        assert!(request.reasons.is_empty());
        assert!(request.deadline.is_empty());
    }

    #[test]
    fn bad_input_names_the_field() {
        let field_of = |body: &[u8]| match parse_decision_form(body)
            .and_then(|input| input.into_request("v1"))
        {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        };
        assert_eq!(field_of(b"decision=approve&content_hash=abc"), "revision");
        assert_eq!(
            field_of(b"decision=approve&revision=x&content_hash=abc"),
            "revision"
        );
        assert_eq!(
            field_of(b"decision=maybe&revision=1&content_hash=abc"),
            "decision"
        );
        assert_eq!(field_of(b"decision=approve&revision=1"), "content_hash");
        assert_eq!(
            field_of(b"decision=return&revision=1&content_hash=abc&reasons=%3Cscript%3E"),
            "reasons"
        );
    }

    #[test]
    fn json_reasons_without_a_field_get_the_derived_one() {
        let input: DecisionInput = serde_json::from_str(
            r#"{"decision":"return","revision":3,"content_hash":"h","reasons":[{"code":"gps_far"},{"code":"other","field":"needs"}]}"#,
        )
        .unwrap();
        let request = input.into_request("v1").unwrap();
        assert_eq!(request.reasons[0].field, "gps");
        assert_eq!(request.reasons[1].field, "needs");
        assert!(request.note.is_empty());
    }
}
