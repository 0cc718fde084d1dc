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

pub mod error;
pub mod progress;
pub mod records;

pub use error::{FieldsyncError, FieldsyncResult};
pub use progress::{ChangeListener, SyncPhase, SyncProgressObserver};
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
        let resolved = self.resolve_household(&household_id)?;
        self.client
            .household(&resolved)?
            .map(HouseholdDetail::from)
            .ok_or(FieldsyncError::UnknownHousehold {
                household_id,
                message: "not on this phone".to_owned(),
            })
    }

    /// Record a visit (记录走访) on the phone; it goes out at the next sync. Photos are
    /// checked from their bytes (JPEG, PNG or WebP; HEIC must be converted first) and copied
    /// into the core's storage. Returns the visit id.
    pub fn record_visit(&self, form: VisitForm) -> FieldsyncResult<String> {
        let household_id = self.resolve_household(&form.household_id)?;
        let photo_paths = form
            .photo_paths
            .iter()
            .map(|path| check_photo_file(path))
            .collect::<FieldsyncResult<Vec<_>>>()?;
        let checkin_at = records::time_from_millis("checkin_at_ms", form.checkin_at_ms)?;
        let checkout_at = records::time_from_millis("checkout_at_ms", form.checkout_at_ms)?;
        let gps = form
            .location
            .map(|fix| -> FieldsyncResult<_> {
                Ok(fieldsync_model::visit::GpsFix {
                    lat: fix.latitude,
                    lon: fix.longitude,
                    crs: fix.coordinate_system.into(),
                    accuracy_m: fix.accuracy_m,
                    provider: None,
                    is_mock: fix.is_mock,
                    fix_time: fix
                        .fix_time_ms
                        .map(|millis| records::time_from_millis("fix_time_ms", millis))
                        .transpose()?,
                })
            })
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
            gps,
            photo_paths,
            ..NewVisit::new(household_id, form.mode.into(), checkin_at, checkout_at)
        };
        Ok(self.client.record_visit(new_visit)?)
    }

    /// 季度收入登记: register a quarter's income; it goes out at the next sync. A quarter
    /// already registered (here or, as of the last sync, by another device) is refused with
    /// `QuarterAlreadyRegistered`; use `correct_income` to replace it on purpose (更正).
    pub fn register_income(&self, form: IncomeForm) -> FieldsyncResult<IncomeRegistered> {
        let household_id = self.resolve_household(&form.household_id)?;
        Ok(self
            .client
            .register_income(&household_id, form.year, form.quarter, form.components())?
            .into())
    }

    /// 更正: register a quarter's income again, replacing the registration in force.
    pub fn correct_income(&self, form: IncomeForm) -> FieldsyncResult<IncomeRegistered> {
        let household_id = self.resolve_household(&form.household_id)?;
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
        let forward = progress::ForwardToApp(observer);
        let result = self
            .runtime
            .block_on(self.client.sync_with_progress(&forward, &cancel));
        *self.lock_running_sync() = None;
        let mut report = SyncReport::from(result?);
        report.changes.task_visit_ids = changed_tasks(&tasks_before, &self.client.tasks()?);
        let listener = self
            .change_listener
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Some(listener) = listener
            && !report.changes.is_empty()
        {
            listener.on_changes(report.changes.clone());
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

    fn resolve_household(&self, household_id: &str) -> FieldsyncResult<String> {
        self.client
            .resolve_household_id(household_id)
            .map_err(|error| match error {
                fieldsync_client::ClientError::NotFound(message) => {
                    FieldsyncError::UnknownHousehold {
                        household_id: household_id.to_owned(),
                        message,
                    }
                }
                other => other.into(),
            })
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

/// Refuse a photo file that is not an image, from its first bytes (the same magic numbers
/// as the server's check), before anything is stored. HEIC gets its own code because the
/// app can convert it.
fn check_photo_file(path: &str) -> FieldsyncResult<PathBuf> {
    use std::io::Read;
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path)
        .and_then(|file| file.take(16).read_to_end(&mut head))
        .map_err(|error| FieldsyncError::Storage {
            message: format!("cannot read photo {path}: {error}"),
        })?;
    match fieldsync_client::photos::sniff_mime_type(&head) {
        "image/jpeg" | "image/png" | "image/webp" => Ok(PathBuf::from(path)),
        "image/heic" => Err(FieldsyncError::PhotoHeicNeedsConversion {
            path: path.to_owned(),
        }),
        _ => Err(FieldsyncError::PhotoNotAnImage {
            path: path.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_client::ClientError;

    fn testdata_photo(name: &str) -> String {
        format!("{}/../testdata/photos/{name}", env!("CARGO_MANIFEST_DIR"))
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
            location: None,
            photo_paths,
        }
    }

    #[test]
    fn photos_are_checked_from_their_bytes_not_their_names() {
        let folder = tempfile::tempdir().expect("temp dir");
        assert!(check_photo_file(&testdata_photo("gps_DSCN0010.jpg")).is_ok());

        let text = folder.path().join("photo.jpg");
        std::fs::write(&text, "not a photo").expect("write");
        let text = text.to_string_lossy().into_owned();
        assert!(matches!(
            check_photo_file(&text),
            Err(FieldsyncError::PhotoNotAnImage { path }) if path == text
        ));

        let heic = folder.path().join("IMG_0001.jpg");
        std::fs::write(&heic, b"\0\0\0\x18ftypheic\0\0\0\0mif1heic").expect("write");
        let heic = heic.to_string_lossy().into_owned();
        assert!(matches!(
            check_photo_file(&heic),
            Err(FieldsyncError::PhotoHeicNeedsConversion { .. })
        ));

        let empty = folder.path().join("empty.jpg");
        std::fs::write(&empty, b"").expect("write");
        assert!(matches!(
            check_photo_file(&empty.to_string_lossy()),
            Err(FieldsyncError::PhotoNotAnImage { .. })
        ));
        assert!(matches!(
            check_photo_file(&folder.path().join("missing.jpg").to_string_lossy()),
            Err(FieldsyncError::Storage { .. })
        ));
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
        assert!(matches!(
            client.record_visit(form("zzzz", Vec::new())),
            Err(FieldsyncError::UnknownHousehold { household_id, .. }) if household_id == "zzzz"
        ));
        assert!(matches!(
            client.household("zzzz".to_owned()),
            Err(FieldsyncError::UnknownHousehold { .. })
        ));

        #[derive(Debug)]
        struct Silent;
        impl SyncProgressObserver for Silent {
            fn on_phase(&self, _phase: SyncPhase) {}
            fn on_items(&self, _phase: SyncPhase, _done: u64, _total: u64) {}
            fn on_photo_bytes(&self, _sha256: String, _sent: u64, _total: u64) {}
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
