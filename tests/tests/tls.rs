//! TLS on the link (issue 10), with real parts: a test county CA and a server certificate
//! made here with rcgen, a real server serving gRPC and the console over rustls on port 0,
//! the real client core and the real `fieldsync` CLI binary. Refusals are checked to be
//! typed and immediate: a client without the county CA gets a certificate error, `https://`
//! to a plain server never falls back to plain text, and `http://` beyond loopback is refused
//! before any connection unless explicitly allowed. The load generator reaches a TLS server
//! with the county CA file and counts the failures without it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fieldsync_client::{Client, ClientError, LinkOptions, NewVisit, TlsFailure};
use fieldsync_model::codes::VisitMode;
use fieldsync_tests::{DEMO_PASSWORD, TestServer, cli_binary, test_photo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber, date_time_ymd,
};

/// A refusal must come back at once; this only turns a hang into a failure.
const NO_HANG: Duration = Duration::from_secs(30);

/// A county CA and a server certificate it signed, as PEM files in a temporary folder.
struct CountyPki {
    folder: tempfile::TempDir,
    ca_pem: String,
}

impl CountyPki {
    /// Fixed names, serials and validity (2024-01-01 to 2099-12-31); only the keys are new
    /// on each run.
    fn new() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "fieldsync test county CA 测试县");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.serial_number = Some(SerialNumber::from_slice(&[1]));
        ca_params.not_before = date_time_ymd(2024, 1, 1);
        ca_params.not_after = date_time_ymd(2099, 12, 31);
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_certificate = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        server_params
            .distinguished_name
            .push(DnType::CommonName, "fieldsync.test-county.invalid");
        server_params.use_authority_key_identifier_extension = true;
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server_params.serial_number = Some(SerialNumber::from_slice(&[2]));
        server_params.not_before = date_time_ymd(2024, 1, 1);
        server_params.not_after = date_time_ymd(2099, 12, 31);
        let server_key = KeyPair::generate().expect("server key");
        let server_certificate = server_params
            .signed_by(&server_key, &issuer)
            .expect("server certificate");

        let folder = tempfile::tempdir().expect("temp dir");
        let ca_pem = ca_certificate.pem();
        std::fs::write(folder.path().join("county-ca.pem"), &ca_pem).expect("write CA");
        std::fs::write(
            folder.path().join("server-cert.pem"),
            server_certificate.pem(),
        )
        .expect("write certificate");
        std::fs::write(
            folder.path().join("server-key.pem"),
            server_key.serialize_pem(),
        )
        .expect("write key");
        Self { folder, ca_pem }
    }

    fn ca_file(&self) -> PathBuf {
        self.folder.path().join("county-ca.pem")
    }

    fn cert_file(&self) -> PathBuf {
        self.folder.path().join("server-cert.pem")
    }

    fn key_file(&self) -> PathBuf {
        self.folder.path().join("server-key.pem")
    }

    /// A demo-county server that speaks only TLS with this certificate.
    async fn server(&self) -> TestServer {
        let (cert, key) = (self.cert_file(), self.key_file());
        TestServer::start_with_settings(|settings| {
            settings.tls_cert_file = Some(cert);
            settings.tls_key_file = Some(key);
        })
        .await
    }
}

fn with_county_ca(pki: &CountyPki) -> LinkOptions {
    LinkOptions {
        ca_file: Some(pki.ca_file()),
        allow_insecure_http: false,
    }
}

async fn login_quickly(client: &Client) -> Result<(), ClientError> {
    tokio::time::timeout(NO_HANG, client.login("cadre01", DEMO_PASSWORD))
        .await
        .expect("a refusal, not a hang")
        .map(|_| ())
}

fn offline_visit(client: &Client) -> NewVisit {
    let household = client.households().expect("households")[0]
        .household_id
        .clone();
    let now = time::OffsetDateTime::now_utc();
    NewVisit {
        observed_situation: "户主在家，经 TLS 同步。".into(),
        photo_paths: vec![test_photo("gps_DSCN0010.jpg")],
        ..NewVisit::new(
            &household,
            VisitMode::InPerson,
            now - time::Duration::minutes(30),
            now,
        )
    }
}

#[tokio::test]
async fn the_client_core_logs_in_pushes_uploads_and_pulls_over_tls_with_the_county_ca() {
    let pki = CountyPki::new();
    let server = pki.server().await;
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let folder = tempfile::tempdir().expect("temp dir");
    let phone = Client::open_with_options(folder.path(), &server.url(), with_county_ca(&pki))
        .expect("open client");

    login_quickly(&phone).await.expect("login over TLS");
    let first = phone.sync().await.expect("first sync over TLS");
    assert_eq!(first.households_pulled, 8, "cadre01's 8 paired households");

    let visit_id = phone.record_visit(offline_visit(&phone)).expect("record");
    let report = phone.sync().await.expect("second sync over TLS");
    assert_eq!(
        report.mutations_applied, 2,
        "the visit and its photo record"
    );
    assert_eq!(
        report.uploads_completed, 1,
        "the photo bytes went over TLS too"
    );
    assert!(
        server
            .state
            .store
            .visit_detail(&visit_id)
            .await
            .expect("read")
            .is_some(),
        "the server stored the visit"
    );
    assert_eq!(
        phone.link_options().expect("options"),
        with_county_ca(&pki),
        "the CA file is kept with the server URL"
    );
}

#[tokio::test]
async fn a_client_without_the_county_ca_gets_a_certificate_error() {
    let pki = CountyPki::new();
    let server = pki.server().await;
    let folder = tempfile::tempdir().expect("temp dir");
    let phone = Client::open(folder.path(), &server.url()).expect("open client");

    let error = login_quickly(&phone).await.expect_err("untrusted CA");
    assert!(
        matches!(
            error,
            ClientError::Tls {
                failure: TlsFailure::UntrustedCertificate,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!error.is_transient(), "waiting does not fix a certificate");
    assert!(error.to_string().contains("--ca-file"), "{error}");
    assert!(phone.status().expect("status").user.is_none());

    // A certificate for another server (a CA the phone trusts, but a name it was not
    // issued for) is refused the same way.
    let other_name = server.url().replace("127.0.0.1", "localhost");
    let other_pki = CountyPki::new();
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let phone =
        Client::open_with_options(elsewhere.path(), &other_name, with_county_ca(&other_pki))
            .expect("open client");
    let error = login_quickly(&phone)
        .await
        .expect_err("another county's CA");
    assert!(
        matches!(
            error,
            ClientError::Tls {
                failure: TlsFailure::UntrustedCertificate,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn https_to_a_plain_text_server_is_refused_and_never_falls_back() {
    let pki = CountyPki::new();
    let plain = TestServer::start().await;
    let https_url = plain.url().replace("http://", "https://");
    let folder = tempfile::tempdir().expect("temp dir");
    let phone = Client::open_with_options(folder.path(), &https_url, with_county_ca(&pki))
        .expect("open client");

    let error = login_quickly(&phone).await.expect_err("not TLS");
    assert!(
        matches!(
            error,
            ClientError::Tls {
                failure: TlsFailure::NotTls,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("--tls-cert"), "{error}");
    assert!(
        phone.status().expect("status").user.is_none(),
        "no plain-text login happened"
    );
}

#[tokio::test]
async fn plain_http_beyond_loopback_is_refused_before_connecting_unless_allowed() {
    let folder = tempfile::tempdir().expect("temp dir");
    // `.invalid` never resolves, and the refusal comes before any name lookup anyway.
    let phone = Client::open(folder.path(), "http://example.invalid:7700").expect("open");
    let error = login_quickly(&phone).await.expect_err("plain http");
    assert!(
        matches!(error, ClientError::InsecureHttp { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("https://"), "{error}");
    assert!(
        error.to_string().contains("--allow-insecure-http"),
        "{error}"
    );

    // 0.0.0.0 is not loopback, so it is refused the same way; on Linux a connection to it
    // reaches this machine, which lets the allowed case run against a real local server.
    let plain = TestServer::start().await;
    let unspecified = format!("http://0.0.0.0:{}", plain.address.port());
    let refused_dir = tempfile::tempdir().expect("temp dir");
    let phone = Client::open(refused_dir.path(), &unspecified).expect("open");
    let error = login_quickly(&phone).await.expect_err("plain http");
    assert!(
        matches!(error, ClientError::InsecureHttp { .. }),
        "{error:?}"
    );

    let allowed_dir = tempfile::tempdir().expect("temp dir");
    let allowed = LinkOptions {
        ca_file: None,
        allow_insecure_http: true,
    };
    let phone = Client::open_with_options(allowed_dir.path(), &unspecified, allowed).expect("open");
    login_quickly(&phone)
        .await
        .expect("explicitly allowed plain http");

    // Loopback stays allowed without the option (a county's test install).
    let loopback_dir = tempfile::tempdir().expect("temp dir");
    let phone = Client::open(loopback_dir.path(), &plain.url()).expect("open");
    login_quickly(&phone).await.expect("plain http on loopback");
}

#[tokio::test]
async fn an_unreadable_or_wrong_ca_file_is_a_clear_error() {
    let pki = CountyPki::new();
    let server = pki.server().await;
    let folder = tempfile::tempdir().expect("temp dir");
    let not_a_certificate = folder.path().join("not-a-ca.pem");
    std::fs::write(&not_a_certificate, "hello\n").expect("write");
    for ca_file in [not_a_certificate, folder.path().join("missing.pem")] {
        let data = tempfile::tempdir().expect("temp dir");
        let options = LinkOptions {
            ca_file: Some(ca_file.clone()),
            allow_insecure_http: false,
        };
        let phone = Client::open_with_options(data.path(), &server.url(), options).expect("open");
        let error = login_quickly(&phone).await.expect_err("bad CA file");
        let ClientError::Invalid { field, message } = &error else {
            panic!("expected an invalid ca_file, got {error:?}");
        };
        assert_eq!(field, "ca_file");
        let name = ca_file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(message.contains(&name), "{message}");
    }
}

/// A browser-like client: HTTP/1.1 over TLS (ALPN http/1.1), trusting only `ca_pem`.
fn https_browser(ca_pem: &str) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.expect("CA PEM")).expect("add CA");
    }
    // ring, the one provider compiled in; rustls deprecates it only for lacking the
    // post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("https client")
}

#[tokio::test]
async fn the_console_over_tls_marks_the_session_cookie_secure() {
    let pki = CountyPki::new();
    let server = pki.server().await;
    let browser = https_browser(&pki.ca_pem);
    let response = browser
        .post(format!("{}/console/login", server.url()))
        .form(&[("username", "township1"), ("password", DEMO_PASSWORD)])
        .send()
        .await
        .expect("login over TLS");
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER);
    let cookie = response
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .expect("session cookie")
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");

    // The session works over TLS.
    let session = cookie.split(';').next().expect("name=value").to_owned();
    let dashboard = browser
        .get(format!("{}/console/dashboard", server.url()))
        .header(reqwest::header::COOKIE, &session)
        .send()
        .await
        .expect("dashboard");
    assert_eq!(dashboard.status(), reqwest::StatusCode::OK);
    let csrf_token =
        fieldsync_tests::csrf_token_in(&dashboard.text().await.expect("dashboard page"))
            .expect("the page carries the session's CSRF token");

    // Logging out clears the cookie with the same attributes.
    let logout = browser
        .post(format!("{}/console/logout", server.url()))
        .header(reqwest::header::COOKIE, &session)
        .form(&[("csrf_token", csrf_token.as_str())])
        .send()
        .await
        .expect("logout");
    let cleared = logout
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .expect("cleared cookie")
        .to_str()
        .expect("ascii");
    assert!(cleared.ends_with("; Secure"), "{cleared}");

    // Without TLS the cookie stays as before (no Secure, which a browser would drop on
    // plain http).
    let plain = TestServer::start().await;
    let response = https_browser(&pki.ca_pem)
        .post(format!("{}/console/login", plain.url()))
        .form(&[("username", "township1"), ("password", DEMO_PASSWORD)])
        .send()
        .await
        .expect("login");
    let cookie = response.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .expect("ascii");
    assert!(!cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn a_server_with_a_missing_or_invalid_certificate_does_not_start() {
    let pki = CountyPki::new();
    let folder = tempfile::tempdir().expect("temp dir");
    let garbage = folder.path().join("garbage-key.pem");
    std::fs::write(&garbage, "-----BEGIN NOTHING-----\n").expect("write");
    let cases = [
        (
            folder.path().join("missing-cert.pem"),
            pki.key_file(),
            "missing-cert.pem",
        ),
        (pki.cert_file(), garbage.clone(), "garbage-key.pem"),
        // A key where the certificate belongs.
        (pki.key_file(), pki.key_file(), "server-key.pem"),
    ];
    for (cert, key, named) in cases {
        let data = tempfile::tempdir().expect("temp dir");
        let settings = fieldsync_server::settings::Settings {
            data_dir: data.path().join("data"),
            key_dir: Some(data.path().join("keys")),
            tls_cert_file: Some(cert),
            tls_key_file: Some(key),
            // Many servers share the test process: no /metrics on the fixed port.
            metrics: fieldsync_server::settings::MetricsSettings {
                enabled: false,
                ..Default::default()
            },
            ..Default::default()
        };
        let state = fieldsync_server::AppState::open(settings).expect("open state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let outcome = tokio::time::timeout(
            NO_HANG,
            fieldsync_server::serve(listener, state, std::future::pending()),
        )
        .await
        .expect("start-up fails at once");
        let error = outcome.expect_err("bad TLS files");
        assert!(
            matches!(error, fieldsync_server::ServerError::Tls(_)),
            "{error:?}"
        );
        assert!(error.to_string().contains(named), "{error}");
    }
}

/// Run the `fieldsync` CLI with only the given flags (no `FIELDSYNC_*` from the test's own
/// environment). Returns (success, stdout + stderr).
async fn fieldsync_cli(binary: &Path, arguments: &[&str]) -> (bool, String) {
    let mut command = tokio::process::Command::new(binary);
    command.args(arguments).stdin(std::process::Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FIELDSYNC_") {
            command.env_remove(name);
        }
    }
    let output = tokio::time::timeout(NO_HANG, command.output())
        .await
        .expect("the CLI finishes")
        .expect("run fieldsync");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn the_cli_logs_in_and_syncs_over_tls_with_ca_file_and_is_refused_without_it() {
    // Build (or find) the binary before the server runs on this test's thread.
    let binary = tokio::task::spawn_blocking(cli_binary)
        .await
        .expect("CLI binary");
    let pki = CountyPki::new();
    let server = pki.server().await;
    let url = server.url();
    let ca_file = pki.ca_file();
    let ca_file = ca_file.to_str().expect("utf-8 path");
    let phone = tempfile::tempdir().expect("temp dir");
    let data_dir = phone.path().to_str().expect("utf-8 path");

    let (ok, output) = fieldsync_cli(
        &binary,
        &[
            "--data-dir",
            data_dir,
            "--server",
            &url,
            "login",
            "cadre01",
            "--password",
            DEMO_PASSWORD,
        ],
    )
    .await;
    assert!(!ok, "no CA file, no login: {output}");
    assert!(output.contains("--ca-file"), "says what to do: {output}");

    let (ok, output) = fieldsync_cli(
        &binary,
        &[
            "--data-dir",
            data_dir,
            "--server",
            &url,
            "--ca-file",
            ca_file,
            "login",
            "cadre01",
            "--password",
            DEMO_PASSWORD,
        ],
    )
    .await;
    assert!(ok, "{output}");
    assert!(output.contains("登录成功 logged in"), "{output}");

    let (ok, output) = fieldsync_cli(
        &binary,
        &[
            "--data-dir",
            data_dir,
            "--server",
            &url,
            "--ca-file",
            ca_file,
            "sync",
        ],
    )
    .await;
    assert!(ok, "{output}");
    let (ok, households) = fieldsync_cli(
        &binary,
        &["--data-dir", data_dir, "--server", &url, "households"],
    )
    .await;
    assert!(ok, "{households}");
    assert_eq!(
        Client::open_with_transport(
            phone.path(),
            Arc::new(fieldsync_client::GrpcTransport::new(Default::default())),
            Arc::new(fieldsync_client::SystemClock),
        )
        .expect("reopen the CLI's phone")
        .households()
        .expect("households")
        .len(),
        8,
        "the CLI's sync over TLS pulled cadre01's households"
    );

    // Plain http to a host beyond this device: refused by the CLI before connecting.
    let (ok, output) = fieldsync_cli(
        &binary,
        &[
            "--data-dir",
            data_dir,
            "--server",
            "http://example.invalid:7700",
            "sync",
        ],
    )
    .await;
    assert!(!ok, "{output}");
    assert!(output.contains("--allow-insecure-http"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_reaches_a_tls_server_with_the_county_ca_and_counts_failures_without_it()
{
    use fieldsync_loadgen::run::{Mix, RunOptions, run};

    let pki = CountyPki::new();
    let server = pki.server().await;
    let with_ca = RunOptions {
        ca_file: Some(pki.ca_file()),
        in_flight: 2,
        ..RunOptions::new(server.url(), 4, Mix::Health)
    };
    let report = tokio::time::timeout(NO_HANG, run(&with_ca))
        .await
        .expect("no hang")
        .expect("run");
    assert_eq!(report.total_errors(), 0, "{}", report.markdown());
    assert_eq!(report.devices_clean, 4);

    // Without the county CA every device fails its handshake: counted, never a panic, and
    // never a plain-text fallback that would succeed.
    let without_ca = RunOptions {
        in_flight: 2,
        ..RunOptions::new(server.url(), 2, Mix::Health)
    };
    let refused = tokio::time::timeout(NO_HANG, run(&without_ca))
        .await
        .expect("no hang")
        .expect("run");
    assert_eq!(refused.devices_clean, 0, "{}", refused.markdown());
    assert_eq!(refused.total_errors(), 2, "{}", refused.markdown());
}
