//! The one error type of the client core. Variants are chosen by what the app (or the CLI)
//! does about them: `Unavailable` means "keep working offline and retry later",
//! `NotLoggedIn` means "ask for the password again", `UpgradeRequired` means "update the
//! app", `Invalid` means "fix the form", and the rest are reported as they are.

use std::path::PathBuf;

/// Everything that can go wrong in the client core.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached (no signal, server down, timeout). Local recording
    /// keeps working; the outbox goes out at the next successful sync.
    #[error("服务器无法连接 server unavailable ({server_url}): {message}")]
    Unavailable { server_url: String, message: String },

    /// `http://` to a host beyond this device: refused before any connection is made,
    /// because the password, the token and personal data would cross the network in plain
    /// text. Only an explicit `allow_insecure_http` (`--allow-insecure-http`) lifts it.
    #[error(
        "拒绝明文连接 refusing plain http:// to {server_url}: passwords and personal data would travel unencrypted. Use the server's https:// address (add --ca-file with the county's CA certificate if it uses its own CA); only on a trusted test network pass --allow-insecure-http"
    )]
    InsecureHttp { server_url: String },

    /// The TLS handshake with an `https://` server failed; nothing was sent in plain text.
    /// Waiting does not help: the certificate, the CA file or the URL must be fixed.
    #[error("安全连接失败 TLS with {server_url} failed: {message}. {failure}")]
    Tls {
        server_url: String,
        failure: TlsFailure,
        message: String,
    },

    /// There is no session, or the server no longer accepts it.
    #[error("未登录或登录已失效 not logged in: {0}")]
    NotLoggedIn(String),

    /// Too many failed logins for this username or from this network: the server refuses
    /// logins for `retry_after_secs` (gRPC RESOURCE_EXHAUSTED with `retry-after`). The app
    /// shows the wait and lets the cadre try again after it; it must not retry on its own.
    #[error("登录尝试过多，请 {retry_after_secs} 秒后再试 too many login attempts: {message}")]
    LoginThrottled {
        retry_after_secs: u64,
        message: String,
    },

    /// The server ended this device's session (revoked from the console, logged out,
    /// password changed elsewhere) or it expired. The token is gone; everything recorded on
    /// the phone, the outbox included, is kept and goes out after the next login.
    #[error(
        "{}，请重新登录。未上传的记录仍保存在本机，登录后继续上传。 signed out on the server ({}); log in again, unsent records are kept",
        .reason.label_zh(),
        .reason.as_str()
    )]
    SignedOut {
        reason: crate::records::SignOutReason,
    },

    /// Only the short-lived access token expired. The client core refreshes it and retries
    /// by itself; callers see this only from the transport.
    #[error("访问令牌已过期 access token expired: {0}")]
    AccessTokenExpired(String),

    /// The server refuses this app version or schema version.
    #[error("需要升级应用 app upgrade required: {0}")]
    UpgradeRequired(String),

    /// The server refused the request as malformed (gRPC INVALID_ARGUMENT).
    #[error("服务器拒绝请求 rejected by server: {0}")]
    Rejected(String),

    /// The server refused the push because the phone's clock is more than a day ahead of
    /// the server's. Nothing was lost: the outbox is kept and re-stamped once the clock is
    /// corrected.
    #[error(
        "手机时间不正确：比服务器快约 {hours} 小时。请在手机设置中校准时间后再同步。Your data is safe and will be sent after the clock is fixed.",
        hours = (.ahead_minutes + 30) / 60
    )]
    DeviceClockWrong {
        ahead_minutes: u64,
        /// The server's time (unix ms) when it refused, when it said.
        server_time_ms: Option<u64>,
    },

    /// Another sync of this install (another process or another `Client` on the same data
    /// dir) is running; one uploader per install keeps batches and uploads from racing.
    #[error("正在同步 another sync of this device is already running")]
    SyncInProgress,

    /// The app cancelled the sync ([`crate::progress::CancelSync`]). What the server
    /// acknowledged before stays acknowledged; the next sync resumes from there.
    #[error("同步已取消 sync cancelled")]
    Cancelled,

    /// Input that fails a check before anything is stored; `field` names the form field.
    #[error("输入有误 invalid {field}: {message}")]
    Invalid { field: String, message: String },

    /// A quarterly income registration that breaks the model's rules (quarter not 1–4, a
    /// negative component, an empty household, amounts that overflow). Nothing was queued.
    #[error("收入登记有误 invalid income registration: {0}")]
    InvalidIncome(#[from] fieldsync_model::income::IncomeError),

    /// The quarter already has a registration in force: made on this phone, or by another
    /// device (the second helper, the cadre's previous phone) as of the last sync. A new one
    /// would replace it, so nothing was queued; [`crate::Client::correct_income`] replaces it
    /// on purpose (更正).
    #[error(
        "{year}年第{quarter}季度已登记（家庭纯收入 {net} 元，{source}）。如需更正，请选择“更正”。 Q{quarter} {year} is already registered for household {household_id}; correct it explicitly.",
        net = crate::income::format_fen(*.net_fen),
        source = if *.on_this_phone { "本机登记" } else { "其他设备登记" }
    )]
    IncomeAlreadyRegistered {
        household_id: String,
        year: i32,
        quarter: u32,
        /// 家庭纯收入 of the registration in force, in fen.
        net_fen: i64,
        /// Made on this phone (else known from the server).
        on_this_phone: bool,
    },

    /// The household id (or prefix) is not among this phone's households, and the phone has
    /// downloaded them at least once: a typo, or a household not paired with this cadre.
    /// Nothing was saved.
    #[error(
        "未找到帮扶户“{household}”：不在本机的帮扶对象中，请核对户编号 unknown household {household:?}: not among the households on this phone; check the id"
    )]
    UnknownHousehold { household: String },

    /// The phone has never downloaded its households, so a household id cannot be checked
    /// yet. Nothing was saved: sync once (with signal), then record.
    #[error(
        "本机尚未下载帮扶对象，无法核对户“{household}”：请先联网同步一次 households not downloaded yet: sync once before recording for {household:?}"
    )]
    HouseholdsNotSynced { household: String },

    /// A location fix that cannot be on Earth: latitude outside −90…90, longitude outside
    /// −180…180, or not a number. Nothing was saved.
    #[error(
        "定位坐标无效（纬度 {lat}，经度 {lon}）：纬度应在−90到90之间，经度应在−180到180之间 impossible location (lat {lat}, lon {lon}): latitude must be −90…90 and longitude −180…180"
    )]
    ImpossibleLocation { lat: f64, lon: f64 },

    /// A location fix whose accuracy is negative or not a number. Nothing was saved.
    #[error(
        "定位精度无效（{accuracy_m} 米）：应为不小于0的米数 invalid location accuracy {accuracy_m} m: must be a non-negative number of metres"
    )]
    InvalidAccuracy { accuracy_m: f64 },

    /// Check-in to check-out longer than the visit form allows
    /// ([`fieldsync_model::visit::MAX_VISIT_MINUTES`]). Nothing was saved.
    #[error(
        "走访时长 {minutes} 分钟超过上限 {max_minutes} 分钟，请核对入户和离开时间 visit lasts {minutes} minutes, more than the form's limit of {max_minutes}; check the check-in and check-out times"
    )]
    VisitTooLong { minutes: i64, max_minutes: i64 },

    /// A photo file that is not a JPEG, PNG or WebP image, told from its bytes by the
    /// server's rules ([`fieldsync_model::photo_type`]). Nothing was saved.
    #[error("照片文件不是图片 {path} is not a photo: {reason}")]
    PhotoNotAnImage { path: PathBuf, reason: String },

    /// A HEIC/HEIF photo: the app converts it to JPEG and records again. Nothing was saved.
    #[error(
        "照片为HEIC格式（{brand}），请先转换为JPEG {path} is a HEIC/HEIF photo ({brand}): convert it to JPEG first"
    )]
    PhotoHeicNeedsConversion { path: PathBuf, brand: String },

    /// A household, visit or other local record that does not exist on this device.
    #[error("未找到 not found: {0}")]
    NotFound(String),

    /// The local state does not allow the operation (e.g. fixing a visit that was not
    /// returned).
    #[error("当前状态不允许 not allowed now: {0}")]
    NotAllowed(String),

    /// Reading or writing a local file.
    #[error("文件错误 I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The local SQLite database.
    #[error("本地数据库错误 local database error: {0}")]
    Database(#[from] rusqlite::Error),

    /// Stored local data that no longer parses (a bug or a damaged file).
    #[error("本地数据损坏 corrupt local data: {0}")]
    Corrupt(String),

    /// The server answered with an error status not covered above.
    #[error("服务器错误 server error {code}: {message}")]
    Server { code: String, message: String },

    /// The server sent something this client cannot use (missing frame, bad enum code,
    /// checksum mismatch).
    #[error("协议错误 protocol error: {0}")]
    Protocol(String),
}

/// `Server::code` values (tonic `Code` names) that waiting may cure; see
/// [`ClientError::is_transient`].
/// (`RESOURCE_EXHAUSTED` is not among them: the server uses it for a throttled login,
/// which becomes [`ClientError::LoginThrottled`] with its wait, never an automatic retry.)
const RETRYABLE_SERVER_CODES: [&str; 4] = ["Internal", "Unknown", "Aborted", "DataLoss"];

/// What went wrong in a TLS handshake; `Display` says what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The server's certificate is not signed by a trusted CA, has expired, or is for
    /// another name.
    UntrustedCertificate,
    /// The server answered something that is not TLS (a plain-text server at an
    /// `https://` address).
    NotTls,
    /// Any other handshake failure (no common protocol version, the connection closed).
    Handshake,
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::UntrustedCertificate => {
                "服务器证书不受信任 the server certificate is not trusted: if the county runs its own CA, pass its certificate with --ca-file (FIELDSYNC_CA_FILE); check the address matches the certificate and the phone's date is right"
            }
            Self::NotTls => {
                "服务器未启用 TLS the server does not speak TLS at this address: ask the administrator to start it with --tls-cert/--tls-key, or check the port"
            }
            Self::Handshake => {
                "安全握手失败 the TLS handshake failed: check the address and ask the administrator to check the server's certificate"
            }
        })
    }
}

impl ClientError {
    /// True when the failure is "no connection": the caller should keep the data and retry
    /// later rather than show an error dialog.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// True when waiting and trying again may help (no signal, a server hiccup, a torn
    /// stream). Logging in again, updating the app or fixing the clock need the cadre.
    ///
    /// Of the other server statuses only those that may pass are retried (`INTERNAL`,
    /// `UNKNOWN`, `ABORTED`, `RESOURCE_EXHAUSTED`, `DATA_LOSS`). A permanent answer
    /// (`FAILED_PRECONDITION`, `NOT_FOUND`, `PERMISSION_DENIED`, `ALREADY_EXISTS`,
    /// `OUT_OF_RANGE`, `UNIMPLEMENTED`) comes back the same on every retry, so it stops
    /// `sync_until_quiet` and is shown to the cadre instead of looping forever.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable { .. } | Self::Protocol(_) => true,
            Self::Server { code, .. } => RETRYABLE_SERVER_CODES.contains(&code.as_str()),
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(what: impl std::fmt::Display) -> Self {
        Self::Corrupt(what.to_string())
    }
}

impl From<fieldsync_model::visit::InvalidField> for ClientError {
    fn from(invalid: fieldsync_model::visit::InvalidField) -> Self {
        Self::Invalid {
            field: invalid.field.to_owned(),
            message: invalid.message,
        }
    }
}

/// Result alias of the client core.
pub type ClientResult<T> = Result<T, ClientError>;

#[cfg(test)]
mod tests {
    #[test]
    fn permanent_server_answers_are_not_retried_forever() {
        let server = |code: tonic::Code| {
            crate::transport::map_status("http://server", tonic::Status::new(code, "x"))
        };
        for code in [
            tonic::Code::Unavailable,
            tonic::Code::DeadlineExceeded,
            tonic::Code::Internal,
            tonic::Code::Unknown,
            tonic::Code::Aborted,
            tonic::Code::DataLoss,
        ] {
            assert!(server(code).is_transient(), "{code:?} is worth a retry");
        }
        // A throttled login waits for its retry-after; the app decides when to try again.
        assert!(matches!(
            server(tonic::Code::ResourceExhausted),
            crate::ClientError::LoginThrottled { .. }
        ));
        assert!(!server(tonic::Code::ResourceExhausted).is_transient());
        for code in [
            tonic::Code::InvalidArgument,
            tonic::Code::FailedPrecondition,
            tonic::Code::NotFound,
            tonic::Code::PermissionDenied,
            tonic::Code::AlreadyExists,
            tonic::Code::OutOfRange,
            tonic::Code::Unimplemented,
            tonic::Code::Unauthenticated,
        ] {
            assert!(!server(code).is_transient(), "{code:?} must not loop");
        }
    }
}
