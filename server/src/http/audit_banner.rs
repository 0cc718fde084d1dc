//! The red banner (审计日志校验失败 …) that every console page shows county staff (county
//! admin and auditor) while the last audit chain verification failed.
//!
//! Why a task-local: [`super::views::layout`] frames every page but is handed only the
//! principal, not the state; a middleware puts the latest result in scope for the request,
//! so no page handler has to pass it along (and none can forget to).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use fieldsync_model::codes::Role;
use maud::{Markup, html};

use super::ConsoleState;
use crate::store::Principal;

tokio::task_local! {
    /// The audit problem for this request, when the chain is broken.
    static AUDIT_PROBLEM: Option<String>;
}

/// Middleware: run the request with the latest audit result in scope.
pub(super) async fn with_audit_result(
    State(state): State<ConsoleState>,
    request: Request,
    next: Next,
) -> Response {
    let problem = state.app.audit_health.broken();
    AUDIT_PROBLEM.scope(problem, next.run(request)).await
}

/// Whether `role` is county staff, who answer for the audit log.
fn sees_audit_state(role: Role) -> bool {
    matches!(role, Role::County | Role::Auditor)
}

/// The banner for `principal`, or nothing.
pub(super) fn banner(principal: Option<&Principal>) -> Markup {
    let problem = principal
        .filter(|principal| sees_audit_state(principal.role))
        .and_then(|_| AUDIT_PROBLEM.try_with(Clone::clone).ok().flatten());
    html! {
        @if let Some(problem) = problem {
            div.notice.error.audit-broken role="alert" {
                strong { "审计日志校验失败" }
                "：审计记录可能被篡改或损坏，请立即联系系统管理员，并运行 "
                code { "fieldsync-server audit verify" }
                " 核查。（" (problem) "）"
            }
        }
    }
}
