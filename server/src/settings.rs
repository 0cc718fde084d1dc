//! Typed server settings. Sources, later ones winning: built-in defaults, then an optional
//! TOML file, then `FIELDSYNC_*` environment variables (`FIELDSYNC_LISTEN_ADDR`,
//! `FIELDSYNC_DATA_DIR`, `FIELDSYNC_EVIDENCE__HOUSEHOLD_RADIUS_M` for nested keys, …).
//! Settings are passed explicitly into [`crate::run`]; nothing reads the environment later.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use fieldsync_model::evidence::EvidenceSettings;
use fieldsync_model::wellbeing::WellbeingRules;
use serde::{Deserialize, Serialize};

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "FIELDSYNC_";

/// How serde begins the message of a key that names no field (`deny_unknown_fields`):
/// "unknown field `server`, expected one of …".
const UNKNOWN_FIELD: &str = "unknown field";

/// A value that must never reach a log line: `Debug` prints `[redacted]`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("[redacted]")
    }
}

/// Everything the server needs to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address of the single port that serves gRPC and the console.
    pub listen_addr: SocketAddr,
    /// Folder holding the SQLite file and the blob folder.
    pub data_dir: PathBuf,
    /// Folder holding the server's secret keys (audit HMAC, personal-field encryption).
    /// It must sit outside `data_dir`, so a copy of the data alone cannot be read or its
    /// audit log forged; unset means the sibling folder `<data_dir>-keys`.
    pub key_dir: Option<PathBuf>,
    /// PEM certificate chain (server certificate first, then intermediates) for TLS. With
    /// `tls_key_file` it switches gRPC and the console to TLS on the same port
    /// (`FIELDSYNC_TLS_CERT_FILE`, `--tls-cert`); unset means plain text, which is only safe
    /// on loopback (a warning is logged otherwise).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert_file`
    /// (`FIELDSYNC_TLS_KEY_FILE`, `--tls-key`). Keep it readable by the server's user only.
    pub tls_key_file: Option<PathBuf>,
    /// `postgres://…` (env `FIELDSYNC_DATABASE_URL`) keeps the data on that PostgreSQL
    /// server, which several replicas may share; empty means the embedded SQLite file.
    pub database_url: Secret,
    /// PEM file of the certificate authority that signed the PostgreSQL server's certificate
    /// (env `FIELDSYNC_DATABASE_CA_FILE`). Needed when `database_url` says
    /// `sslmode=require`: the connection is then encrypted and the server's certificate
    /// verified against it, name included (libpq's `verify-full`).
    pub database_ca_file: Option<PathBuf>,
    /// Where photos are kept, TOML table `[blobs]`, env `FIELDSYNC_BLOBS__*`: the local
    /// folder `<data_dir>/blobs` by default, or an S3-compatible object store (see
    /// [`BlobSettings`]).
    pub blobs: BlobSettings,
    /// Lifetime of a phone or console session, in hours. Phones that refresh (see
    /// `access_token_minutes`) are bound by `refresh_token_days` instead; this remains the
    /// lifetime of tokens of older apps that cannot refresh, and the longest a console
    /// session may last however active it is.
    pub session_ttl_hours: u32,
    /// Lifetime of an access token of an app that refreshes, in minutes. Short, so a token
    /// copied off a phone or a log is useful only briefly.
    pub access_token_minutes: u32,
    /// Lifetime of a refresh token, in days: a phone that has not synced for this long has
    /// to log in again. Each refresh issues a new one (rotation).
    pub refresh_token_days: u32,
    /// A console session ends after this many minutes without a request (sliding; measured
    /// to within a minute, because last-seen is written at most once a minute).
    pub console_idle_minutes: u32,
    /// Oldest client schema version the server still accepts.
    pub min_client_schema_version: u32,
    /// Largest gRPC message the server decodes, in bytes. Chunks are 256 KiB, so 4 MiB
    /// leaves room while keeping a hostile message from exhausting memory.
    pub max_message_bytes: usize,
    /// Radii and thresholds of the evidence flags (DESIGN §5), TOML table `[evidence]`;
    /// every key has a default (see [`EvidenceSettings`]).
    pub evidence: EvidenceSettings,
    /// Days a reassignment tombstone stays in the change log. A phone that has not synced
    /// for longer is told to RESET (download its scope again, keeping its outbox).
    pub tombstone_horizon_days: u32,
    /// Hours an incomplete photo upload is kept; older ones (abandoned) are deleted with
    /// their staged bytes by the daily maintenance, and the phone starts them over.
    /// Complete uploads and blobs never expire.
    pub upload_expiry_hours: u32,
    /// Days without any push or heartbeat after which a cadre is listed as silent (长期未同步)
    /// on the dashboard (工作台).
    pub silent_cadre_days: u32,
    /// Margin of the income projection flag: a household is flagged when its projected
    /// annual per-capita net income is below line × (1 + margin) (domain.md §1.8). 0.1 = 10%.
    pub income_projection_margin: f64,
    /// Rules of the 两不愁三保障 + 饮水安全 checklist, TOML table `[wellbeing]`; every key has a
    /// default (see [`WellbeingRules`]).
    pub wellbeing: WellbeingRules,
    /// Log filter in `tracing` syntax, e.g. `info` or `fieldsync_server=debug,info`
    /// (`FIELDSYNC_LOG`).
    pub log: String,
    /// Password hashing and login throttling (登录防护), TOML table `[login]`, env
    /// `FIELDSYNC_LOGIN__*`; every key has a default (see [`LoginSettings`]).
    pub login: LoginSettings,
    /// Log line format: `"text"` for people (colours only when stdout is a terminal) or
    /// `"json"`, one object per line for a log collector (`FIELDSYNC_LOG_FORMAT`). Either
    /// way every line of a request carries its `request_id`, and no line carries personal
    /// data (docs/operations.md "Logs").
    pub log_format: LogFormat,
    /// Prometheus `/metrics` on its own address, TOML table `[metrics]`, env
    /// `FIELDSYNC_METRICS__*` (see [`MetricsSettings`]).
    pub metrics: MetricsSettings,
    /// Seconds between the shutdown signal and the listener closing, during which
    /// `grpc.health.v1` already answers NOT_SERVING while requests are still served, so a
    /// load balancer that polls readiness stops sending new work first. 0 (the default)
    /// closes at once: right for a single server behind nginx.
    pub shutdown_drain_secs: u64,
    /// Seconds, after the listener closed, that requests in flight get to finish (a push
    /// being committed, an upload chunk); then the server exits anyway, cutting long-lived
    /// streams such as a health `Watch`.
    pub shutdown_deadline_secs: u64,
    /// Reverse proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed
    /// (`FIELDSYNC_TRUSTED_PROXIES`, addresses or CIDR blocks, comma-separated), e.g.
    /// `["127.0.0.1"]` for nginx on this machine. Empty (the default): the TCP peer is the
    /// client and forwarded headers are ignored (docs/operations.md "Behind nginx").
    pub trusted_proxies: TrustedProxies,
}

/// The `trusted_proxies` setting: addresses and CIDR blocks. Written as a TOML list or as
/// one comma-separated string (how an environment variable can say it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ProxyList", into = "ProxyList")]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ProxyList {
    List(Vec<String>),
    Text(String),
}

impl TrustedProxies {
    /// Parse addresses (`127.0.0.1`, `::1`) and CIDR blocks (`10.0.0.0/8`).
    pub fn parse(entries: impl IntoIterator<Item = String>) -> Result<Self, String> {
        entries
            .into_iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<std::net::IpAddr>()
                    .map(ipnet::IpNet::from)
                    .or_else(|_| entry.parse::<ipnet::IpNet>())
                    .map(|network| network.trunc())
                    .map_err(|_| {
                        format!(
                            "trusted_proxies: `{entry}` is not an IP address or CIDR block \
                             (e.g. 127.0.0.1 or 10.0.0.0/8)"
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `address` is one of the proxies (an IPv4-mapped IPv6 address counts as its
    /// IPv4 address).
    pub fn contains(&self, address: std::net::IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|network| network.contains(&address))
    }
}

impl TryFrom<ProxyList> for TrustedProxies {
    type Error = String;

    fn try_from(list: ProxyList) -> Result<Self, Self::Error> {
        match list {
            ProxyList::List(entries) => Self::parse(entries),
            ProxyList::Text(text) => Self::parse(
                text.split(',')
                    .map(str::trim)
                    .filter(|entry| !entry.is_empty())
                    .map(str::to_owned),
            ),
        }
    }
}

impl From<TrustedProxies> for ProxyList {
    fn from(proxies: TrustedProxies) -> Self {
        Self::List(proxies.0.iter().map(ToString::to_string).collect())
    }
}

/// The log line format (`log_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Where Prometheus scrapes `/metrics` (docs/operations.md "Monitoring").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Serve `/metrics` at all (`FIELDSYNC_METRICS__ENABLED=false` turns it off).
    pub enabled: bool,
    /// Its own address, loopback by default: the metrics name no person, but they tell an
    /// outsider how busy the county is and which calls fail, so they are not served on the
    /// phones' port. Point Prometheus (or an SSH tunnel) at it; listen on a private address
    /// only when the scraper sits on another machine, behind the firewall.
    pub listen_addr: SocketAddr,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 9770)),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 7700)),
            data_dir: PathBuf::from("./fieldsync-data"),
            key_dir: None,
            tls_cert_file: None,
            tls_key_file: None,
            database_url: Secret::default(),
            database_ca_file: None,
            blobs: BlobSettings::default(),
            session_ttl_hours: 24 * 30,
            access_token_minutes: 15,
            refresh_token_days: 30,
            console_idle_minutes: 30,
            min_client_schema_version: 1,
            max_message_bytes: 4 * 1024 * 1024,
            evidence: EvidenceSettings::default(),
            tombstone_horizon_days: 90,
            upload_expiry_hours: 72,
            silent_cadre_days: 7,
            log: "info".to_owned(),
            income_projection_margin: 0.1,
            wellbeing: WellbeingRules::default(),
            login: LoginSettings::default(),
            log_format: LogFormat::Text,
            metrics: MetricsSettings::default(),
            shutdown_drain_secs: 0,
            shutdown_deadline_secs: 30,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// Where photo blobs live (docs/operations.md "Photos on object storage"). Several server
/// replicas need a store they all see; the local folder serves one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlobSettings {
    /// `""` (the default): the local folder `<data_dir>/blobs`. `s3://bucket` or
    /// `s3://bucket/prefix`: an S3-compatible object store (`FIELDSYNC_BLOBS__URL`).
    pub url: BlobLocation,
    /// The S3 endpoint, e.g. `http://127.0.0.1:9000` (MinIO, Garage) or
    /// `https://oss-cn-hangzhou.aliyuncs.com`; unset means AWS itself.
    pub endpoint: Option<String>,
    /// The store's region (MinIO and Garage accept any; AWS needs the bucket's).
    pub region: String,
    /// Allow a plain-HTTP endpoint. Only for a store on the same machine or a private
    /// network: the photos and the request signatures would cross the wire in clear.
    pub allow_http: bool,
    /// Address buckets as `https://bucket.endpoint/` (AWS, OSS, COS, OBS) instead of
    /// `https://endpoint/bucket/` (the default, which MinIO and Garage need).
    pub virtual_hosted_style: bool,
    /// Access key id (`FIELDSYNC_BLOBS__ACCESS_KEY_ID`).
    pub access_key_id: Secret,
    /// Secret access key (`FIELDSYNC_BLOBS__SECRET_ACCESS_KEY`); never logged.
    pub secret_access_key: Secret,
}

impl Default for BlobSettings {
    fn default() -> Self {
        Self {
            url: BlobLocation::LocalFolder,
            endpoint: None,
            region: "us-east-1".to_owned(),
            allow_http: false,
            virtual_hosted_style: false,
            access_key_id: Secret::default(),
            secret_access_key: Secret::default(),
        }
    }
}

/// The typed form of `blobs.url`: a malformed URL is refused when settings load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum BlobLocation {
    /// `<data_dir>/blobs`.
    #[default]
    LocalFolder,
    /// A bucket of an S3-compatible store, with an optional key prefix (no leading or
    /// trailing slash) so several counties can share one bucket.
    S3 { bucket: String, prefix: String },
}

impl TryFrom<String> for BlobLocation {
    type Error = String;

    fn try_from(url: String) -> Result<Self, Self::Error> {
        if url.is_empty() {
            return Ok(Self::LocalFolder);
        }
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(format!(
                "blobs.url {url:?}: use s3://bucket[/prefix], or leave it empty for the local folder"
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // S3 bucket naming rules: 3-63 of lower-case letters, digits, dots and dashes.
        let bucket_is_valid = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|byte| {
                byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'.' || byte == b'-'
            });
        if !bucket_is_valid {
            return Err(format!(
                "blobs.url {url:?}: the bucket must be 3-63 lower-case letters, digits, dots or dashes"
            ));
        }
        Ok(Self::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }
}

impl From<BlobLocation> for String {
    fn from(location: BlobLocation) -> Self {
        match location {
            BlobLocation::LocalFolder => String::new(),
            BlobLocation::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
            BlobLocation::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }
}

/// How passwords are hashed and how failed logins are throttled (docs/security.md §3).
///
/// The argon2id defaults (m = 7168 KiB, t = 5, p = 1) are one of the five equivalent
/// configurations the OWASP Password Storage Cheat Sheet lists for argon2id
/// (<https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html#argon2id>:
/// m = 47104/t = 1, 19456/2, 12288/3, 9216/4, 7168/5, all p = 1). Issue 11 timed all five on
/// the server's password pool (`fieldsync-loadgen hash-costs`, BENCHMARKS.md "Login latency")
/// and 7168/5 was the fastest on the 2-core server (15.6 ms per hash in release against
/// 19 ms for 19456/2 and 17 ms for 12288/3 and 9216/4); it also makes the pool's memory
/// bound (`hashing_threads × argon2_memory_kib`) the smallest. They apply to new hashes; stored PHC
/// strings carry their own parameters and keep verifying after a change (an account hashed
/// with the earlier 19456/2 default still logs in, at that hash's cost).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginSettings {
    /// Password hashes computed at once, on that many dedicated threads; 0 means one per
    /// CPU core. Each running hash holds `argon2_memory_kib`, so this bounds the memory
    /// logins can take however many arrive together; the rest wait in line.
    pub hashing_threads: usize,
    /// argon2id memory cost in KiB (OWASP: 7168 with t = 5, p = 1).
    pub argon2_memory_kib: u32,
    /// argon2id passes over the memory (time cost).
    pub argon2_iterations: u32,
    /// argon2id lanes (degree of parallelism inside one hash).
    pub argon2_parallelism: u32,
    /// Failures of one username within `failure_window_secs` before it is locked.
    pub username_failures_before_lock: u32,
    /// Failures from one client address before it is locked. Higher than the username
    /// limit because a township office shares one address (NAT) among its cadres.
    pub address_failures_before_lock: u32,
    /// Quiet seconds (after the last failure and any lock) after which a username's or an
    /// address's failures are forgotten.
    pub failure_window_secs: u64,
    /// The first lock, in seconds; each further failure doubles it.
    pub first_lock_secs: u64,
    /// The longest lock, in seconds (15 min).
    pub max_lock_secs: u64,
    /// Usernames and addresses remembered at most; beyond it the oldest quiet entry is
    /// forgotten, so a flood of made-up names cannot grow the table without bound.
    pub throttle_max_entries: usize,
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self {
            hashing_threads: 0,
            argon2_memory_kib: 7 * 1024,
            argon2_iterations: 5,
            argon2_parallelism: 1,
            username_failures_before_lock: 5,
            address_failures_before_lock: 20,
            failure_window_secs: 15 * 60,
            first_lock_secs: 1,
            max_lock_secs: 15 * 60,
            throttle_max_entries: 10_000,
        }
    }
}

impl LoginSettings {
    /// `hashing_threads`, with 0 resolved to the number of CPU cores.
    pub fn hashing_threads(&self) -> usize {
        match self.hashing_threads {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            threads => threads,
        }
    }
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid settings: {0}")]
    Invalid(String),
}

/// The phone CLI's own variables (client-core's `fieldsync`): a shell set up for the CLI can
/// start the server too, and these never reach the server's settings (skipped without a
/// warning, since they are expected there).
pub const CLI_VARIABLES: [&str; 5] = [
    "FIELDSYNC_SERVER",
    "FIELDSYNC_CA_FILE",
    "FIELDSYNC_ALLOW_INSECURE_HTTP",
    "FIELDSYNC_PASSWORD",
    "FIELDSYNC_NEW_PASSWORD",
];

/// Settings as loaded, with the `FIELDSYNC_*` variables that named no setting: the binary
/// names them in a warning once logging is set up (they are ignored, not fatal).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedSettings {
    pub settings: Settings,
    /// Names of the ignored variables, in the order the environment listed them.
    pub ignored_variables: Vec<String>,
}

impl Settings {
    /// Defaults, then the TOML file (if any), then the given environment variables. An
    /// unknown key in the file is an error; an unknown `FIELDSYNC_*` variable is ignored
    /// ([`Settings::load_reporting`] names them).
    pub fn load(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        Ok(Self::load_reporting(file, environment)?.settings)
    }

    /// [`Settings::load`], also returning the `FIELDSYNC_*` variables that were ignored
    /// because they name no setting. The file is someone's deliberate configuration, so a
    /// typo there stops the server; the environment is shared with other programs (the
    /// phone CLI's [`CLI_VARIABLES`], scripts), so an unknown name there only warns. A known
    /// variable with a bad value is still an error naming the variable.
    pub fn load_reporting(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<LoadedSettings, SettingsError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                let table = text.parse::<toml::Table>().map_err(|error| {
                    SettingsError::Invalid(format!("{}: {}", path.display(), error.message()))
                })?;
                Self::from_table(table.clone()).map_err(|error| {
                    SettingsError::Invalid(format!("{}: {error}", path.display()))
                })?;
                table
            }
            None => toml::Table::new(),
        };
        let mut ignored_variables = Vec::new();
        for (name, value) in environment {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if CLI_VARIABLES.contains(&name.as_str()) {
                continue;
            }
            let path: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
            let mut candidate = table.clone();
            insert_nested(&mut candidate, &path, parse_env_value(&value));
            match Self::from_table(candidate.clone()) {
                Ok(_) => table = candidate,
                Err(message) if message.starts_with(UNKNOWN_FIELD) => {
                    ignored_variables.push(name);
                }
                Err(message) => return Err(SettingsError::Invalid(format!("{name}: {message}"))),
            }
        }
        let settings = Self::from_table(table).map_err(SettingsError::Invalid)?;
        Ok(LoadedSettings {
            settings,
            ignored_variables,
        })
    }

    /// The settings a TOML table describes, or serde's one-line message.
    fn from_table(table: toml::Table) -> Result<Self, String> {
        table
            .try_into()
            .map_err(|error: toml::de::Error| error.message().trim().to_owned())
    }

    /// True when the server speaks TLS (both certificate and key are set); the console
    /// cookie is then marked `Secure`.
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert_file.is_some() && self.tls_key_file.is_some()
    }

    /// The SQLite database file inside the data folder.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("fieldsync.sqlite3")
    }

    /// The folder of the server's secret keys: `key_dir`, or `<data_dir>-keys` beside the
    /// data folder.
    pub fn key_dir(&self) -> PathBuf {
        self.key_dir.clone().unwrap_or_else(|| {
            let mut name = self
                .data_dir
                .file_name()
                .map(std::ffi::OsStr::to_os_string)
                .unwrap_or_else(|| "fieldsync-data".into());
            name.push("-keys");
            self.data_dir.with_file_name(name)
        })
    }

    /// The blob folder inside the data folder.
    pub fn blob_dir(&self) -> PathBuf {
        self.data_dir.join("blobs")
    }
}

/// Environment values are strings; read numbers and booleans as such so that
/// `FIELDSYNC_SESSION_TTL_HOURS=8` deserializes into an integer field.
fn parse_env_value(value: &str) -> toml::Value {
    if let Ok(integer) = value.parse::<i64>() {
        return toml::Value::Integer(integer);
    }
    if let Ok(float) = value.parse::<f64>() {
        return toml::Value::Float(float);
    }
    match value {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(value.to_owned()),
    }
}

fn insert_nested(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(inner) = entry {
                insert_nested(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blob_store_is_the_local_folder_unless_an_s3_url_is_given() {
        let settings = Settings::load(None, Vec::new()).unwrap();
        assert_eq!(settings.blobs.url, BlobLocation::LocalFolder);
        let settings = Settings::load(
            None,
            vec![
                (
                    "FIELDSYNC_BLOBS__URL".to_owned(),
                    "s3://county-photos/anxian/".to_owned(),
                ),
                (
                    "FIELDSYNC_BLOBS__ENDPOINT".to_owned(),
                    "http://127.0.0.1:9000".to_owned(),
                ),
                ("FIELDSYNC_BLOBS__ALLOW_HTTP".to_owned(), "true".to_owned()),
                (
                    "FIELDSYNC_BLOBS__SECRET_ACCESS_KEY".to_owned(),
                    "s3cr3t-key".to_owned(),
                ),
            ],
        )
        .unwrap();
        assert_eq!(
            settings.blobs.url,
            BlobLocation::S3 {
                bucket: "county-photos".into(),
                prefix: "anxian".into()
            }
        );
        assert_eq!(
            settings.blobs.endpoint.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert!(settings.blobs.allow_http);
        assert_eq!(settings.blobs.secret_access_key.0, "s3cr3t-key");
        for wrong in ["gs://bucket", "s3://Upper", "s3://x"] {
            let error = Settings::load(
                None,
                vec![("FIELDSYNC_BLOBS__URL".to_owned(), wrong.to_owned())],
            )
            .unwrap_err()
            .to_string();
            assert!(error.contains("FIELDSYNC_BLOBS__URL"), "{wrong}: {error}");
        }
    }

    #[test]
    fn defaults_then_file_then_environment() {
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("fieldsync.toml");
        std::fs::write(
            &file,
            "listen_addr = \"0.0.0.0:9000\"\nsession_ttl_hours = 8\n[evidence]\nhousehold_radius_m = 500.0\n",
        )
        .unwrap();
        let environment = vec![
            ("FIELDSYNC_SESSION_TTL_HOURS".to_owned(), "12".to_owned()),
            (
                "FIELDSYNC_EVIDENCE__HOUSEHOLD_RADIUS_M".to_owned(),
                "250.5".to_owned(),
            ),
            ("HOME".to_owned(), "/root".to_owned()),
            (
                "FIELDSYNC_DATABASE_CA_FILE".to_owned(),
                "/etc/fieldsync/db-ca.pem".to_owned(),
            ),
        ];
        let settings = Settings::load(Some(&file), environment).unwrap();
        assert_eq!(
            settings.database_ca_file.as_deref(),
            Some(Path::new("/etc/fieldsync/db-ca.pem"))
        );
        assert_eq!(settings.listen_addr.to_string(), "0.0.0.0:9000");
        assert_eq!(settings.session_ttl_hours, 12);
        assert_eq!(settings.evidence.household_radius_m, 250.5);
        assert_eq!(
            settings.evidence.max_travel_kmh,
            EvidenceSettings::default().max_travel_kmh,
            "unnamed thresholds keep their defaults"
        );
        assert_eq!(settings.data_dir, PathBuf::from("./fieldsync-data"));
        assert_eq!(settings.key_dir(), PathBuf::from("./fieldsync-data-keys"));
    }

    #[test]
    fn trusted_proxies_are_a_list_in_the_file_or_a_comma_separated_variable() {
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("fieldsync.toml");
        std::fs::write(
            &file,
            "trusted_proxies = [\"127.0.0.1\", \"10.8.0.0/16\"]\n",
        )
        .unwrap();
        let from_file = Settings::load(Some(&file), Vec::new()).unwrap();
        let address = |text: &str| text.parse::<std::net::IpAddr>().unwrap();
        assert!(from_file.trusted_proxies.contains(address("127.0.0.1")));
        assert!(from_file.trusted_proxies.contains(address("10.8.200.1")));
        assert!(!from_file.trusted_proxies.contains(address("10.9.0.1")));
        assert!(
            from_file
                .trusted_proxies
                .contains(address("::ffff:127.0.0.1")),
            "an IPv4-mapped peer is its IPv4 address"
        );

        let from_environment = Settings::load(
            None,
            vec![(
                "FIELDSYNC_TRUSTED_PROXIES".to_owned(),
                "::1, 192.168.1.0/24".to_owned(),
            )],
        )
        .unwrap();
        assert!(from_environment.trusted_proxies.contains(address("::1")));
        assert!(
            from_environment
                .trusted_proxies
                .contains(address("192.168.1.77"))
        );
        assert!(Settings::default().trusted_proxies.is_empty());

        let error = Settings::load(
            None,
            vec![(
                "FIELDSYNC_TRUSTED_PROXIES".to_owned(),
                "127.0.0.1, nginx.local".to_owned(),
            )],
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("FIELDSYNC_TRUSTED_PROXIES"), "{error}");
        assert!(
            error.contains("`nginx.local` is not an IP address or CIDR block"),
            "{error}"
        );
    }

    #[test]
    fn late_record_limits_are_evidence_settings() {
        let defaults = Settings::default();
        assert_eq!(defaults.evidence.late_record_max_days, 7);
        assert_eq!(defaults.evidence.late_record_max_hours, 8);
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("fieldsync.toml");
        std::fs::write(&file, "[evidence]\nlate_record_max_days = 3\n").unwrap();
        let settings = Settings::load(
            Some(&file),
            vec![(
                "FIELDSYNC_EVIDENCE__LATE_RECORD_MAX_HOURS".to_owned(),
                "12".to_owned(),
            )],
        )
        .unwrap();
        assert_eq!(settings.evidence.late_record_max_days, 3);
        assert_eq!(settings.evidence.late_record_max_hours, 12);
    }

    #[test]
    fn login_settings_are_a_nested_table_with_owasp_defaults() {
        let settings = Settings::load(
            None,
            vec![
                (
                    "FIELDSYNC_LOGIN__HASHING_THREADS".to_owned(),
                    "3".to_owned(),
                ),
                (
                    "FIELDSYNC_LOGIN__ADDRESS_FAILURES_BEFORE_LOCK".to_owned(),
                    "100".to_owned(),
                ),
            ],
        )
        .unwrap();
        assert_eq!(settings.login.hashing_threads(), 3);
        assert_eq!(settings.login.address_failures_before_lock, 100);
        let defaults = LoginSettings::default();
        assert_eq!(
            (
                defaults.argon2_memory_kib,
                defaults.argon2_iterations,
                defaults.argon2_parallelism
            ),
            (7168, 5, 1)
        );
        assert!(defaults.hashing_threads() >= 1);
    }

    #[test]
    fn the_log_filter_is_an_ordinary_setting() {
        let settings = Settings::load(
            None,
            vec![(
                "FIELDSYNC_LOG".to_owned(),
                "fieldsync_server=debug".to_owned(),
            )],
        )
        .unwrap();
        assert_eq!(settings.log, "fieldsync_server=debug");
        assert_eq!(Settings::default().log, "info");
    }

    #[test]
    fn operations_settings_have_loopback_metrics_and_text_logs_by_default() {
        let defaults = Settings::default();
        assert_eq!(defaults.log_format, LogFormat::Text);
        assert!(defaults.metrics.enabled);
        assert_eq!(defaults.metrics.listen_addr.to_string(), "127.0.0.1:9770");
        let settings = Settings::load(
            None,
            vec![
                ("FIELDSYNC_LOG_FORMAT".to_owned(), "json".to_owned()),
                ("FIELDSYNC_METRICS__ENABLED".to_owned(), "false".to_owned()),
                (
                    "FIELDSYNC_SHUTDOWN_DEADLINE_SECS".to_owned(),
                    "5".to_owned(),
                ),
            ],
        )
        .unwrap();
        assert_eq!(settings.log_format, LogFormat::Json);
        assert!(!settings.metrics.enabled);
        assert_eq!(settings.shutdown_deadline_secs, 5);
        assert!(
            Settings::load(
                None,
                vec![("FIELDSYNC_LOG_FORMAT".to_owned(), "xml".to_owned())]
            )
            .is_err()
        );
    }

    #[test]
    fn unknown_environment_variables_are_named_and_ignored_but_file_typos_stop() {
        // The phone CLI's variables and unknown ones never stop the server.
        let loaded = Settings::load_reporting(
            None,
            vec![
                ("FIELDSYNC_SERVER".to_owned(), "https://x".to_owned()),
                ("FIELDSYNC_PASSWORD".to_owned(), "secret".to_owned()),
                ("FIELDSYNC_LISTEN_ADR".to_owned(), "x".to_owned()),
                ("FIELDSYNC_EVIDENCE__RADIUS".to_owned(), "5".to_owned()),
                ("FIELDSYNC_SESSION_TTL_HOURS".to_owned(), "9".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(
            loaded.ignored_variables,
            ["FIELDSYNC_LISTEN_ADR", "FIELDSYNC_EVIDENCE__RADIUS"],
            "unknown names are reported; the CLI's own are not"
        );
        assert_eq!(loaded.settings.session_ttl_hours, 9, "known ones apply");
        assert_eq!(loaded.settings.listen_addr, Settings::default().listen_addr);

        // A known variable with a bad value is an error naming it, on one line.
        let error = Settings::load(
            None,
            vec![("FIELDSYNC_SESSION_TTL_HOURS".to_owned(), "soon".to_owned())],
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("FIELDSYNC_SESSION_TTL_HOURS"), "{error}");
        assert!(!error.contains('\n'), "{error}");

        // An unknown key in the file stays an error, naming the file and the key.
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("fieldsync.toml");
        std::fs::write(&file, "listen_adr = \"0.0.0.0:1\"\n").unwrap();
        let error = Settings::load(Some(&file), Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("listen_adr") && error.contains("fieldsync.toml"),
            "{error}"
        );
        assert!(!error.contains('\n'), "one line: {error}");
        std::fs::write(&file, "[evidence\n").unwrap();
        let error = Settings::load(Some(&file), Vec::new())
            .unwrap_err()
            .to_string();
        assert!(!error.contains('\n'), "one line: {error}");
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let settings = Settings {
            database_url: Secret("postgres://user:hunter2@db/fieldsync".into()),
            blobs: BlobSettings {
                access_key_id: Secret("AKIDEXAMPLE".into()),
                secret_access_key: Secret("wJalrXUtnFEMI".into()),
                ..BlobSettings::default()
            },
            ..Settings::default()
        };
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"));
        assert!(!printed.contains("AKIDEXAMPLE"));
        assert!(!printed.contains("wJalrXUtnFEMI"));
        assert!(printed.contains("[redacted]"));
    }
}
