//! UniFFI bindings of the fieldsync client core for the phone apps (Kotlin on Android,
//! Swift on iOS) and for Python (the binding tests). A thin layer: one object,
//! [`FieldsyncClient`], wraps `fieldsync_client::Client`; plain records and enums carry the
//! data (times as epoch milliseconds); [`FieldsyncError`] carries stable codes. No business
//! logic lives here, and no proto or tonic type crosses the surface.
//!
//! Calls are blocking: each one runs to completion on the calling thread, with network
//! calls driven by a tokio runtime the object owns. The app calls them from a background
//! thread (Kotlin `Dispatchers.IO`, a Swift `Task.detached`/`DispatchQueue`, a Python
//! thread); ARCHITECTURE.md says why this was chosen over UniFFI async.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use fieldsync_client::{CancelSync, Client, LinkOptions, NewVisit};
use fieldsync_model::register::FieldTarget;

pub mod error;
pub mod progress;
pub mod records;

pub use error::{FieldsyncError, FieldsyncResult};
pub use progress::{CallbackError, ChangeListener, SyncPhase, SyncProgressObserver};
pub use records::*;

uniffi::setup_scaffolding!();

/// The phone's client: one per data folder, shared by all screens (it is thread-safe).
#[derive(uniffi::Object)]
pub struct FieldsyncClient {
    client: Client,
    /// Drives the network calls of the blocking methods.
    runtime: tokio::runtime::Runtime,
    /// The cancel flag of the running sync, if any.
    running_sync: Mutex<Option<CancelSync>>,
    /// Told what each sync changed.
    change_listener: Mutex<Option<Arc<dyn ChangeListener>>>,
}

impl std::fmt::Debug for FieldsyncClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FieldsyncClient")
            .field("data_dir", &self.client.data_dir())
            .finish_non_exhaustive()
    }
}

#[uniffi::export]
impl FieldsyncClient {
    /// Open (or create) the client in `data_dir` (the app's private files folder), talking
    /// to `server_url`. `ca_file` is the county's CA certificate (PEM) when its server uses
    /// its own CA. Plain `http://` is accepted for this device's loopback only.
    #[uniffi::constructor]
    pub fn open(
        data_dir: String,
        server_url: String,
        ca_file: Option<String>,
    ) -> FieldsyncResult<Arc<Self>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("fieldsync-client")
            .build()
            .map_err(|error| FieldsyncError::Storage {
                message: format!("could not start the client's runtime: {error}"),
            })?;
        let options = LinkOptions {
            ca_file: ca_file.filter(|path| !path.is_empty()).map(PathBuf::from),
            allow_insecure_http: false,
        };
        let client = Client::open_with_options(&PathBuf::from(data_dir), &server_url, options)?;
        Ok(Arc::new(Self {
            client,
            runtime,
            running_sync: Mutex::new(None),
            change_listener: Mutex::new(None),
        }))
    }

    /// This install's device id.
    pub fn device_id(&self) -> String {
        self.client.device_id().to_owned()
    }

    /// Log in (登录). On `must_change_password` show the change-password screen first.
    pub fn login(&self, username: String, password: String) -> FieldsyncResult<SignedInUser> {
        match self
            .runtime
            .block_on(self.client.login(&username, &password))
        {
            Ok(info) => Ok(info.into()),
            // At login, "not authenticated" can only mean the credentials.
            Err(fieldsync_client::ClientError::NotLoggedIn(message)) => {
                Err(FieldsyncError::WrongCredentials { message })
            }
            Err(other) => Err(other.into()),
        }
    }

    /// The phone's model (e.g. `Build.MODEL` on Android, the model identifier on iOS), sent
    /// at the next login so the console's 冲突记录 can name the device beside its last four
    /// id characters. Call it before `login`.
    pub fn set_device_model(&self, model: String) -> FieldsyncResult<()> {
        Ok(self.client.set_device_model(&model)?)
    }

    /// Who is signed in on this device, if anyone.
    pub fn signed_in_user(&self) -> FieldsyncResult<Option<SignedInUser>> {
        Ok(self.client.user()?.map(SignedInUser::from))
    }

    /// Log out (退出登录). Unsent records stay on the phone. Returns whether the server was
    /// told (false when offline; the session then ends when it expires).
    pub fn logout(&self) -> FieldsyncResult<bool> {
        Ok(self.runtime.block_on(self.client.logout())?)
    }

    /// Change the password (修改密码). Returns how many other sessions the server ended.
    pub fn change_password(
        &self,
        old_password: String,
        new_password: String,
    ) -> FieldsyncResult<u32> {
        Ok(self
            .runtime
            .block_on(self.client.change_password(&old_password, &new_password))?)
    }

    /// The session as the app shows it.
    pub fn session(&self) -> FieldsyncResult<SessionStatus> {
        Ok(self.client.session_state()?.into())
    }

    /// The households on this phone (帮扶对象).
    pub fn households(&self) -> FieldsyncResult<Vec<HouseholdListItem>> {
        Ok(self
            .client
            .households()?
            .into_iter()
            .map(HouseholdListItem::from)
            .collect())
    }

    /// One household's page, by id or unique prefix.
    pub fn household(&self, household_id: String) -> FieldsyncResult<HouseholdDetail> {
        let resolved = self.client.resolve_household_id(&household_id)?;
        self.client
            .household(&resolved)?
            .map(HouseholdDetail::from)
            .ok_or(FieldsyncError::UnknownHousehold {
                household_id,
                message: "not on this phone".to_owned(),
            })
    }

    /// Record a visit (记录走访) on the phone; it goes out at the next sync. Checked before
    /// anything is saved: the household (id or unique prefix; `UnknownHousehold`, or
    /// `HouseholdsNotSynced` before the first sync), the location (`ImpossibleLocation`,
    /// `InvalidAccuracy`), the duration (`VisitTooLong`), the photos from their bytes
    /// (`PhotoNotAnImage`, `PhotoHeicNeedsConversion`), then the model's rules (`Invalid`).
    /// Photos are copied into the core's storage. Returns the visit id.
    pub fn record_visit(&self, form: VisitForm) -> FieldsyncResult<String> {
        let checkin_at = records::time_from_millis("checkin_at_ms", form.checkin_at_ms)?;
        let checkout_at = records::time_from_millis("checkout_at_ms", form.checkout_at_ms)?;
        let gps = form
            .location
            .as_ref()
            .map(LocationFix::to_model)
            .transpose()?;
        let new_visit = NewVisit {
            exception_reason: form.exception_reason.map(Into::into),
            visit_type: form.visit_type.into(),
            observed_situation: form.observed_situation,
            plan_progress: form.plan_progress,
            problems: form.problems,
            actions: form.actions,
            needs: form.needs,
            policies_explained: form.policies_explained,
            wellbeing: form.wellbeing.into(),
            proposed_changes: form.proposed_changes.into_iter().map(Into::into).collect(),
            gps,
            photo_paths: form.photo_paths.iter().map(PathBuf::from).collect(),
            ..NewVisit::new(form.household_id, form.mode.into(), checkin_at, checkout_at)
        };
        Ok(self.client.record_visit(new_visit)?)
    }

    /// One visit read back: state, the latest revision's whole form (checklist included),
    /// its photos and, when returned, the task. `NotFound` when it is not on this phone.
    pub fn visit(&self, visit_id: String) -> FieldsyncResult<VisitDetail> {
        let visit_id = self.client.resolve_visit_id(&visit_id)?;
        let summary = self
            .client
            .visit(&visit_id)?
            .ok_or_else(|| FieldsyncError::NotFound {
                message: format!("visit {visit_id}"),
            })?;
        let task = self
            .client
            .tasks()?
            .into_iter()
            .find(|task| task.visit_id == visit_id)
            .map(TaskItem::from);
        Ok(VisitDetail {
            photos: self
                .client
                .visit_photos(&visit_id)?
                .into_iter()
                .map(VisitPhoto::from)
                .collect(),
            visit_id: summary.visit_id,
            revision: summary.revision,
            household_id: summary.household_id,
            head_name: summary.head_name,
            state: summary.state.into(),
            form: summary.visit.map(VisitForm::from),
            task,
        })
    }

    /// 整改: submit a new revision of a returned visit (or amend a draft or a waiting one)
    /// with the whole form as the cadre left it (start from `visit(id).form`). The form's
    /// `household_id` is ignored (a visit stays with its household). `keep_photo_ids` are
    /// the current photos to keep, in order; `form.photo_paths` are new photos added after
    /// them. Checked like `record_visit`. Returns the new revision number.
    pub fn fix_visit(
        &self,
        visit_id: String,
        form: VisitForm,
        keep_photo_ids: Vec<String>,
    ) -> FieldsyncResult<u32> {
        let visit_id = self.client.resolve_visit_id(&visit_id)?;
        let checkin_at = records::time_from_millis("checkin_at_ms", form.checkin_at_ms)?;
        let checkout_at = records::time_from_millis("checkout_at_ms", form.checkout_at_ms)?;
        let gps = form
            .location
            .as_ref()
            .map(LocationFix::to_model)
            .transpose()?;
        let photo_paths: Vec<PathBuf> = form.photo_paths.iter().map(PathBuf::from).collect();
        Ok(self
            .client
            .revise_visit_with(&visit_id, &photo_paths, |visit, new_photo_ids| {
                visit.mode = form.mode.into();
                visit.exception_reason = form.exception_reason.map(Into::into);
                visit.visit_type = form.visit_type.into();
                visit.checkin_at = checkin_at;
                visit.checkout_at = checkout_at;
                visit.observed_situation = form.observed_situation;
                visit.plan_progress = form.plan_progress;
                visit.problems = form.problems;
                visit.actions = form.actions;
                visit.needs = form.needs;
                visit.policies_explained = form.policies_explained;
                visit.wellbeing = form.wellbeing.into();
                visit.proposed_changes =
                    form.proposed_changes.into_iter().map(Into::into).collect();
                visit.gps = gps;
                visit.photo_ids = keep_photo_ids;
                visit.photo_ids.extend(new_photo_ids.iter().cloned());
            })?)
    }

    /// Remove one photo of a draft or returned visit (a new revision without it). Returns
    /// the new revision number.
    pub fn remove_photo(&self, visit_id: String, photo_id: String) -> FieldsyncResult<u32> {
        let visit_id = self.client.resolve_visit_id(&visit_id)?;
        Ok(self.client.remove_visit_photo(&visit_id, &photo_id)?)
    }

    /// Replace one photo of a draft or returned visit with a new camera file (checked and
    /// copied); the new photo takes the old one's place. Returns the new revision number.
    pub fn replace_photo(
        &self,
        visit_id: String,
        photo_id: String,
        photo_path: String,
    ) -> FieldsyncResult<u32> {
        let visit_id = self.client.resolve_visit_id(&visit_id)?;
        Ok(self
            .client
            .replace_visit_photo(&visit_id, &photo_id, &PathBuf::from(photo_path))?)
    }

    /// Set one household field (户卡修改), e.g. `phone` to `"13900000000"`. `value_json` is
    /// the value as JSON (a string in quotes, a number, true/false, a list). Works offline;
    /// returns the outbox seq.
    pub fn edit_household_field(
        &self,
        household_id: String,
        field: String,
        value_json: String,
    ) -> FieldsyncResult<u64> {
        let household_id = self.client.resolve_household_id(&household_id)?;
        let value = json_value(&field, &value_json)?;
        Ok(self.client.edit_household_field(
            &household_id,
            FieldTarget::Household,
            &field,
            value,
        )?)
    }

    /// Set one member field (成员修改), e.g. `health` to `2`. Works offline; returns the
    /// outbox seq.
    pub fn edit_member_field(
        &self,
        household_id: String,
        member_id: String,
        field: String,
        value_json: String,
    ) -> FieldsyncResult<u64> {
        let household_id = self.client.resolve_household_id(&household_id)?;
        let value = json_value(&field, &value_json)?;
        Ok(self.client.edit_household_field(
            &household_id,
            FieldTarget::Member(member_id),
            &field,
            value,
        )?)
    }

    /// Add a member (新增成员). Returns the new member id.
    pub fn add_member(&self, household_id: String, member: MemberForm) -> FieldsyncResult<String> {
        use fieldsync_model::CodeList;
        use fieldsync_model::codes::{
            Disability, Health, LabourCapacity, Relation, Schooling, Sex,
        };
        let household_id = self.client.resolve_household_id(&household_id)?;
        let code_error = |field: &str, code: i32| FieldsyncError::Invalid {
            field: field.to_owned(),
            message: format!("{code} is not a known code"),
        };
        let member = fieldsync_model::household::Member {
            member_id: String::new(),
            name: member.name,
            relation: Relation::from_code(member.relation_code)
                .ok_or_else(|| code_error("relation_code", member.relation_code))?,
            sex: Sex::from_code(member.sex_code)
                .ok_or_else(|| code_error("sex_code", member.sex_code))?,
            birth_date: member.birth_date,
            id_number: member.id_number,
            health: Health::Healthy,
            labour_capacity: LabourCapacity::Ordinary,
            schooling: Schooling::NotInSchool,
            disability: Disability::None,
            disability_grade: 0,
            has_medical_insurance: false,
            has_serious_illness_insurance: false,
            has_pension_insurance: false,
            removed: false,
        };
        Ok(self.client.add_member(&household_id, member)?)
    }

    /// Remove a member (移除成员; a tombstone). Returns the outbox seq.
    pub fn remove_member(&self, household_id: String, member_id: String) -> FieldsyncResult<u64> {
        let household_id = self.client.resolve_household_id(&household_id)?;
        Ok(self.client.remove_member(&household_id, &member_id)?)
    }

    /// The household's 季度收入登记 screen: this phone's registrations with their fate,
    /// then those another device made that are in force on the server (as of the last
    /// sync). All households when `household_id` is `None`.
    pub fn income_registrations(
        &self,
        household_id: Option<String>,
    ) -> FieldsyncResult<Vec<IncomeItem>> {
        let household_id = household_id
            .map(|text| self.client.resolve_household_id(&text))
            .transpose()?;
        let own = self.client.income_registrations(household_id.as_deref())?;
        let mut items: Vec<IncomeItem> = own
            .iter()
            .map(|local| IncomeItem {
                registration: local.registration.clone().into(),
                progress: match local.state {
                    fieldsync_client::IncomeState::Unsent => IncomeProgress::Unsent,
                    fieldsync_client::IncomeState::Sent => IncomeProgress::Sent,
                    fieldsync_client::IncomeState::Rejected => IncomeProgress::Rejected,
                },
                rejection_code: local.rejection.as_ref().map(|(code, _)| code.clone()),
            })
            .collect();
        for registration in self
            .client
            .server_income_registrations(household_id.as_deref())?
        {
            if own
                .iter()
                .all(|local| local.registration.registration_id != registration.registration_id)
            {
                items.push(IncomeItem {
                    registration: registration.into(),
                    progress: IncomeProgress::OnServer,
                    rejection_code: None,
                });
            }
        }
        Ok(items)
    }

    /// The pending photo uploads as requests for the OS background uploader (Android
    /// WorkManager, an iOS background `URLSession`): one tus `PATCH` each. Needs the
    /// network: the outbox is pushed first (the server takes a photo's bytes only after its
    /// record) and each upload is started on the server. The headers carry the short-lived
    /// access token: list right before handing over, and again after a `401`. A later
    /// `sync` finishes whatever the OS did not.
    pub fn pending_uploads(&self) -> FieldsyncResult<PendingUploads> {
        Ok(self
            .runtime
            .block_on(self.client.background_uploads())?
            .into())
    }

    /// The OS uploader reports an upload done: the core asks the server whether it holds
    /// the whole photo and, if so, marks it uploaded. Returns false when the server does
    /// not have every byte yet (list again, or let the next sync finish it).
    pub fn upload_finished(&self, sha256: String) -> FieldsyncResult<bool> {
        Ok(self
            .runtime
            .block_on(self.client.background_upload_finished(&sha256))?)
    }

    /// 季度收入登记: register a quarter's income; it goes out at the next sync. A quarter
    /// already registered (here or, as of the last sync, by another device) is refused with
    /// `QuarterAlreadyRegistered`; use `correct_income` to replace it on purpose (更正).
    pub fn register_income(&self, form: IncomeForm) -> FieldsyncResult<IncomeRegistered> {
        let household_id = self.client.resolve_household_id(&form.household_id)?;
        Ok(self
            .client
            .register_income(&household_id, form.year, form.quarter, form.components())?
            .into())
    }

    /// 更正: register a quarter's income again, replacing the registration in force.
    pub fn correct_income(&self, form: IncomeForm) -> FieldsyncResult<IncomeRegistered> {
        let household_id = self.client.resolve_household_id(&form.household_id)?;
        Ok(self
            .client
            .correct_income(&household_id, form.year, form.quarter, form.components())?
            .into())
    }

    /// The visits on this phone with their review state.
    pub fn visits(&self) -> FieldsyncResult<Vec<VisitListItem>> {
        Ok(self
            .client
            .visits()?
            .into_iter()
            .map(VisitListItem::from)
            .collect())
    }

    /// Returned visits to fix (待整改).
    pub fn tasks(&self) -> FieldsyncResult<Vec<TaskItem>> {
        Ok(self
            .client
            .tasks()?
            .into_iter()
            .map(TaskItem::from)
            .collect())
    }

    /// Sync health for the status screen.
    pub fn status(&self) -> FieldsyncResult<DeviceStatus> {
        Ok(self.client.status()?.into())
    }

    /// Push the outbox, upload photos, pull the households and review results, telling
    /// `observer` how far it got. Blocks until done; `cancel_sync` from any thread (or from
    /// the observer) stops it at the next step with `FieldsyncError::Cancelled`, and the next
    /// sync resumes where it stopped.
    pub fn sync(&self, observer: Arc<dyn SyncProgressObserver>) -> FieldsyncResult<SyncReport> {
        let tasks_before = self.client.tasks()?;
        let cancel = CancelSync::new();
        *self.lock_running_sync() = Some(cancel.clone());
        let forward = progress::ForwardToApp::new(observer);
        let result = self
            .runtime
            .block_on(self.client.sync_with_progress(&forward, &cancel));
        *self.lock_running_sync() = None;
        if forward.observer_failed() {
            tracing::warn!("the sync went on without the app's progress observer");
        }
        let mut report = SyncReport::from(result?);
        report.changes.task_visit_ids = changed_tasks(&tasks_before, &self.client.tasks()?);
        let listener = self
            .change_listener
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Some(listener) = listener
            && !report.changes.is_empty()
            && let Err(error) = listener.on_changes(report.changes.clone())
        {
            // The report carries the same changes; a broken listener changes nothing.
            tracing::warn!(%error, "the app's change listener failed");
        }
        Ok(report)
    }

    /// Register (or with `None` remove) the listener told what each sync changed.
    pub fn set_change_listener(&self, listener: Option<Arc<dyn ChangeListener>>) {
        *self
            .change_listener
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = listener;
    }

    /// Stop the running sync at its next step. Returns false when no sync was running.
    pub fn cancel_sync(&self) -> bool {
        match self.lock_running_sync().as_ref() {
            Some(cancel) => {
                cancel.cancel();
                true
            }
            None => false,
        }
    }
}

impl FieldsyncClient {
    fn lock_running_sync(&self) -> std::sync::MutexGuard<'_, Option<CancelSync>> {
        // The guarded value is a plain flag handle; a panic elsewhere cannot leave it torn.
        self.running_sync
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Visit ids of tasks that appeared, disappeared or changed between two task lists.
fn changed_tasks(
    before: &[fieldsync_client::Task],
    after: &[fieldsync_client::Task],
) -> Vec<String> {
    let mut changed: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for task in before {
        if !after.contains(task) {
            changed.insert(task.visit_id.clone());
        }
    }
    for task in after {
        if !before.contains(task) {
            changed.insert(task.visit_id.clone());
        }
    }
    changed.into_iter().collect()
}

/// A typed value from its JSON text; text that is not JSON is taken as a string for the
/// text fields, so `13900000000` stays a phone number.
fn json_value(field: &str, value_json: &str) -> FieldsyncResult<serde_json::Value> {
    serde_json::from_str(value_json).map_err(|error| FieldsyncError::Invalid {
        field: field.to_owned(),
        message: format!(
            "the value must be JSON (a \"string\" in quotes, a number, true/false): {error}"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_client::ClientError;

    #[test]
    fn an_observer_that_fails_is_muted_for_the_rest_of_the_sync_and_nothing_panics() {
        use fieldsync_client::SyncObserver;
        use std::sync::atomic::{AtomicU32, Ordering};

        #[derive(Debug, Default)]
        struct Throwing {
            calls: AtomicU32,
        }
        impl SyncProgressObserver for Throwing {
            fn on_phase(&self, _phase: SyncPhase) -> Result<(), CallbackError> {
                self.calls.fetch_add(1, Ordering::Relaxed);
                // What the scaffolding hands back when Kotlin/Swift/Python code throws.
                Err(uniffi::UnexpectedUniFFICallbackError::new("RuntimeException: boom").into())
            }
            fn on_items(
                &self,
                _phase: SyncPhase,
                _done: u64,
                _total: u64,
            ) -> Result<(), CallbackError> {
                self.calls.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            fn on_photo_bytes(
                &self,
                _sha256: String,
                _sent: u64,
                _total: u64,
            ) -> Result<(), CallbackError> {
                self.calls.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
        let observer = Arc::new(Throwing::default());
        let forward = progress::ForwardToApp::new(observer.clone());
        forward.phase_started(fieldsync_client::SyncPhase::Push);
        assert!(forward.observer_failed());
        forward.items_done(fieldsync_client::SyncPhase::Push, 1, 2);
        forward.photo_bytes_sent("abc", 1, 2);
        assert_eq!(
            observer.calls.load(Ordering::Relaxed),
            1,
            "muted after the failure"
        );
        let unexpected: CallbackError =
            uniffi::UnexpectedUniFFICallbackError::new("ValueError").into();
        assert!(
            matches!(unexpected, CallbackError::Unexpected { reason } if reason == "ValueError")
        );
    }

    /// A URL on a port that was just free, so connecting is refused at once.
    fn closed_port_url() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        drop(listener);
        format!("http://127.0.0.1:{port}")
    }

    fn form(household_id: &str, photo_paths: Vec<String>) -> VisitForm {
        VisitForm {
            household_id: household_id.to_owned(),
            mode: VisitModeChoice::InPerson,
            exception_reason: None,
            visit_type: VisitTypeChoice::Routine,
            checkin_at_ms: 1_772_700_000_000,
            checkout_at_ms: 1_772_702_000_000,
            observed_situation: "户主在家，秋粮已收。".to_owned(),
            plan_progress: String::new(),
            problems: String::new(),
            actions: String::new(),
            needs: String::new(),
            policies_explained: Vec::new(),
            wellbeing: WellbeingForm::default(),
            proposed_changes: Vec::new(),
            location: None,
            photo_paths,
        }
    }

    #[test]
    fn core_errors_become_stable_codes_with_their_fields() {
        let signed_out = FieldsyncError::from(ClientError::SignedOut {
            reason: fieldsync_client::SignOutReason::Revoked,
        });
        assert!(matches!(
            signed_out,
            FieldsyncError::SignedOutByServer { reason } if reason == "session_revoked"
        ));
        assert!(matches!(
            FieldsyncError::from(ClientError::Cancelled),
            FieldsyncError::Cancelled
        ));
        assert!(matches!(
            FieldsyncError::from(ClientError::DeviceClockWrong {
                ahead_minutes: 90,
                server_time_ms: Some(5),
            }),
            FieldsyncError::ClockWrong {
                ahead_minutes: 90,
                server_time_ms: Some(5)
            }
        ));
        assert!(matches!(
            FieldsyncError::from(ClientError::Server {
                code: "PermissionDenied".to_owned(),
                message: "x".to_owned(),
            }),
            FieldsyncError::ServerRefused { code, .. } if code == "PermissionDenied"
        ));
    }

    #[test]
    fn offline_the_client_opens_refuses_unknown_households_and_cannot_sync_unsigned() {
        let folder = tempfile::tempdir().expect("temp dir");
        let client = FieldsyncClient::open(
            folder.path().join("phone").to_string_lossy().into_owned(),
            closed_port_url(),
            None,
        )
        .expect("open");
        assert_eq!(client.session().expect("session"), SessionStatus::SignedOut);
        assert!(client.households().expect("households").is_empty());
        // Before the first sync a household cannot be checked, and the code says so.
        assert!(matches!(
            client.record_visit(form("zzzz", Vec::new())),
            Err(FieldsyncError::HouseholdsNotSynced { household_id }) if household_id == "zzzz"
        ));
        assert!(matches!(
            client.household("zzzz".to_owned()),
            Err(FieldsyncError::HouseholdsNotSynced { .. })
        ));

        #[derive(Debug)]
        struct Silent;
        impl SyncProgressObserver for Silent {
            fn on_phase(&self, _phase: SyncPhase) -> Result<(), CallbackError> {
                Ok(())
            }
            fn on_items(
                &self,
                _phase: SyncPhase,
                _done: u64,
                _total: u64,
            ) -> Result<(), CallbackError> {
                Ok(())
            }
            fn on_photo_bytes(
                &self,
                _sha256: String,
                _sent: u64,
                _total: u64,
            ) -> Result<(), CallbackError> {
                Ok(())
            }
        }
        assert!(matches!(
            client.sync(Arc::new(Silent)),
            Err(FieldsyncError::NotSignedIn { .. })
        ));
        assert!(!client.cancel_sync(), "no sync is running");
    }

    #[test]
    fn times_outside_the_supported_range_are_invalid_fields_not_panics() {
        assert!(matches!(
            records::time_from_millis("checkin_at_ms", i64::MAX),
            Err(FieldsyncError::Invalid { field, .. }) if field == "checkin_at_ms"
        ));
        let time = records::time_from_millis("checkin_at_ms", 1_772_700_000_123).expect("time");
        assert_eq!(records::epoch_millis(time), 1_772_700_000_123);
    }
}
