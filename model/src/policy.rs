//! Who may do what (职责分离 separation of duties), as pure rules the server's use cases ask
//! before they act. Issue 12 §3 and DESIGN §6 (roles):
//!
//! | action | cadre 帮扶干部 | village 村干部 | township 乡镇审核员 | county 县级管理员 | auditor 审计员 |
//! |---|---|---|---|---|---|
//! | approve or return a visit | no | no | yes, not their own visit | no | no |
//! | manage accounts | no | no | no | yes, not their own role/area/state | no |
//! | change data at all | own visits and paired households | no | review only | set-up only | never (read-only) |
//!
//! The county administrator sets the county up (areas, accounts, pairings, imports) and so
//! must not also approve the visits that set-up makes possible; an auditor reads everything
//! and changes nothing; nobody approves a visit they recorded themselves, whatever role
//! they hold when it is reviewed.
//!
//! The area an account is scoped to follows its role ([`area_level_for_role`]): a cadre
//! works in a township (their households come from pairings), a village cadre in a village,
//! a supervisor in a township, the administrator and the auditor in the county.

use crate::codes::Role;

/// Why a review decision (approve or return) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReviewRefusal {
    /// Only township supervisors review visits; the county administrator and the auditor
    /// explicitly do not (separation of duties).
    #[error("只有乡镇审核员可以审核走访，{0}不能审核 (only township supervisors review visits)")]
    NotAReviewer(&'static str),
    /// The reviewer recorded this visit.
    #[error("不能审核本人提交的走访 (nobody approves or returns their own visit)")]
    OwnVisit,
}

/// May `actor` (with `actor_role`) decide on a visit recorded by `author_user_id`?
pub fn check_review_duty(
    actor_role: Role,
    actor_user_id: &str,
    author_user_id: &str,
) -> Result<(), ReviewRefusal> {
    if actor_role != Role::Township {
        return Err(ReviewRefusal::NotAReviewer(role_label(actor_role)));
    }
    if actor_user_id == author_user_id {
        return Err(ReviewRefusal::OwnVisit);
    }
    Ok(())
}

/// Why an account change is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccountRefusal {
    /// Only the county administrator manages accounts.
    #[error("只有县级管理员可以管理账号，{0}不能 (only the county administrator manages accounts)")]
    NotAnAdministrator(&'static str),
    /// An administrator may not disable themselves or change their own role or area: the
    /// county would be left without anyone able to undo it.
    #[error(
        "不能停用本人账号或修改本人的角色、区域 (you cannot disable yourself or change your own role or area)"
    )]
    OwnAccount,
}

/// What an account change does, for [`check_account_duty`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountAction {
    /// Create an account, edit name/phone/unit, reset a password.
    Manage,
    /// Disable, or change role or area.
    DisableOrRescope,
}

/// May `actor` do `action` to the account `subject_user_id`?
pub fn check_account_duty(
    actor_role: Role,
    actor_user_id: &str,
    subject_user_id: &str,
    action: AccountAction,
) -> Result<(), AccountRefusal> {
    if actor_role != Role::County {
        return Err(AccountRefusal::NotAnAdministrator(role_label(actor_role)));
    }
    if action == AccountAction::DisableOrRescope && actor_user_id == subject_user_id {
        return Err(AccountRefusal::OwnAccount);
    }
    Ok(())
}

/// The level of the area an account of `role` is scoped to: `"township"`, `"village"` or
/// `"county"` (the `level` of stored areas).
pub fn area_level_for_role(role: Role) -> &'static str {
    match role {
        Role::Cadre | Role::Township => "township",
        Role::Village => "village",
        Role::County | Role::Auditor => "county",
    }
}

fn role_label(role: Role) -> &'static str {
    use crate::CodeList;
    role.label_zh()
}

/// Why a username is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("用户名为3到32个字符 (a username has 3 to 32 characters)")]
    Length,
    #[error(
        "用户名只能包含英文字母、数字和 . _ - (a username uses letters, digits, '.', '_' and '-')"
    )]
    Characters,
}

/// Usernames are typed on phone keyboards at login: ASCII letters, digits, `.`, `_`, `-`,
/// 3–32 characters (a mobile number is a valid username). Compared as given (the store
/// keeps them unique).
pub fn check_username(username: &str) -> Result<(), UsernameError> {
    let length = username.chars().count();
    if !(3..=32).contains(&length) {
        return Err(UsernameError::Length);
    }
    if !username
        .chars()
        .all(|character| character.is_ascii_alphanumeric() || "._-".contains(character))
    {
        return Err(UsernameError::Characters);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CodeList;

    /// Separation of duties as a table: every role, deciding on someone else's visit and on
    /// their own.
    #[test]
    fn only_a_township_supervisor_reviews_and_never_their_own_visit() {
        let table = [
            (Role::Cadre, false, false),
            (Role::Village, false, false),
            (Role::Township, true, false),
            (Role::County, false, false),
            (Role::Auditor, false, false),
        ];
        assert_eq!(table.len(), Role::ALL.len(), "every role is in the table");
        for (role, may_review_others, may_review_own) in table {
            assert_eq!(
                check_review_duty(role, "actor", "someone-else").is_ok(),
                may_review_others,
                "{role:?} on another's visit"
            );
            assert_eq!(
                check_review_duty(role, "actor", "actor").is_ok(),
                may_review_own,
                "{role:?} on their own visit"
            );
        }
        assert_eq!(
            check_review_duty(Role::Township, "s1", "s1"),
            Err(ReviewRefusal::OwnVisit)
        );
        assert_eq!(
            check_review_duty(Role::County, "admin", "cadre"),
            Err(ReviewRefusal::NotAReviewer("县级管理员"))
        );
    }

    #[test]
    fn only_the_county_administrator_manages_accounts_and_never_disables_themselves() {
        let table = [
            (Role::Cadre, false, false, false),
            (Role::Village, false, false, false),
            (Role::Township, false, false, false),
            (Role::County, true, true, false),
            (Role::Auditor, false, false, false),
        ];
        assert_eq!(table.len(), Role::ALL.len(), "every role is in the table");
        for (role, manage_other, rescope_other, rescope_self) in table {
            assert_eq!(
                check_account_duty(role, "a", "b", AccountAction::Manage).is_ok(),
                manage_other,
                "{role:?} manages another"
            );
            assert_eq!(
                check_account_duty(role, "a", "b", AccountAction::DisableOrRescope).is_ok(),
                rescope_other,
                "{role:?} disables another"
            );
            assert_eq!(
                check_account_duty(role, "a", "a", AccountAction::DisableOrRescope).is_ok(),
                rescope_self,
                "{role:?} disables themselves"
            );
        }
        // Resetting one's own password through the admin page is allowed (it forces a
        // change at the next login, nothing more).
        assert!(check_account_duty(Role::County, "a", "a", AccountAction::Manage).is_ok());
    }

    #[test]
    fn every_role_has_an_area_level() {
        for role in Role::ALL {
            assert!(["county", "township", "village"].contains(&area_level_for_role(*role)));
        }
        assert_eq!(area_level_for_role(Role::Cadre), "township");
        assert_eq!(area_level_for_role(Role::Auditor), "county");
    }

    #[test]
    fn usernames_are_typeable_on_a_phone() {
        for good in ["admin", "13800138000", "wang.dashan", "zs_01", "li-mei"] {
            assert_eq!(check_username(good), Ok(()), "{good}");
        }
        assert_eq!(check_username("ab"), Err(UsernameError::Length));
        assert_eq!(check_username(&"a".repeat(33)), Err(UsernameError::Length));
        for bad in ["王大山", "has space", "semi;colon", "tab\there"] {
            assert_eq!(check_username(bad), Err(UsernameError::Characters), "{bad}");
        }
    }
}
