//! TLS on the one port (issue 10): when `tls_cert_file` and `tls_key_file` are set, gRPC
//! (HTTP/2) and the console (HTTP/1.1 from browsers) are both served over rustls, told apart
//! by ALPN. Plain text stays the default because a county often starts on a loopback test
//! install; listening anywhere else without TLS logs a loud warning, since passwords and
//! bearer tokens would cross the network readable by anyone on the path.
//!
//! Only the `ring` crypto provider is compiled in (aws-lc-rs needs cmake and a C build).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tower::ServiceExt;

use crate::settings::Settings;

/// ALPN protocols offered, in the server's order of preference: phones speak gRPC over h2,
/// browsers may pick http/1.1.
const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A client that opens a TCP connection and never finishes the handshake must not hold a
/// task forever. 2G links are slow, but a handshake is a few kilobytes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why TLS could not be set up. Every variant names the file, so an operator knows which
/// setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error(
        "TLS needs both a certificate and a key: tls_cert_file is {cert} and tls_key_file is {key} (set both, or neither for plain text on loopback)"
    )]
    Incomplete { cert: String, key: String },
    #[error("cannot read TLS certificate file {path}: {source}")]
    ReadCertificate {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "TLS certificate file {path} holds no usable PEM certificate ({message}); it must contain -----BEGIN CERTIFICATE----- blocks, the server's first"
    )]
    BadCertificate { path: PathBuf, message: String },
    #[error("cannot read TLS key file {path}: {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "TLS key file {path} holds no usable PEM private key ({message}); it must contain a PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key"
    )]
    BadKey { path: PathBuf, message: String },
    #[error("TLS certificate {cert} and key {key} were refused: {message}")]
    Refused {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

/// The rustls configuration named by the settings, or `None` for plain text.
pub fn server_config(settings: &Settings) -> Result<Option<Arc<ServerConfig>>, TlsSetupError> {
    match (&settings.tls_cert_file, &settings.tls_key_file) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => load_server_config(cert, key).map(Some),
        (cert, key) => Err(TlsSetupError::Incomplete {
            cert: describe_setting(cert.as_deref()),
            key: describe_setting(key.as_deref()),
        }),
    }
}

fn describe_setting(path: Option<&Path>) -> String {
    match path {
        Some(path) => format!("{:?}", path.display().to_string()),
        None => "unset".to_owned(),
    }
}

/// Read a PEM certificate chain and private key and build a server configuration offering
/// h2 and http/1.1.
pub fn load_server_config(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let cert_pem = std::fs::read(cert_file).map_err(|source| TlsSetupError::ReadCertificate {
        path: cert_file.to_owned(),
        source,
    })?;
    let bad_certificate = |message: String| TlsSetupError::BadCertificate {
        path: cert_file.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| bad_certificate(error.to_string()))?;
    if chain.is_empty() {
        return Err(bad_certificate("no certificate found".to_owned()));
    }
    let key_pem = std::fs::read(key_file).map_err(|source| TlsSetupError::ReadKey {
        path: key_file.to_owned(),
        source,
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| TlsSetupError::BadKey {
        path: key_file.to_owned(),
        message: error.to_string(),
    })?;
    let refused = |message: String| TlsSetupError::Refused {
        cert: cert_file.to_owned(),
        key: key_file.to_owned(),
        message,
    };
    // ring on purpose (aws-lc-rs needs cmake and a C build); rustls 0.23.48 deprecates
    // it only because it lacks the post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| refused(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| refused(error.to_string()))?;
    config.alpn_protocols = ALPN_PROTOCOLS
        .iter()
        .map(|protocol| protocol.to_vec())
        .collect();
    Ok(Arc::new(config))
}

/// The start-up warning for a server that listens beyond loopback in plain text, or `None`
/// when the link is safe (TLS on, or loopback only, e.g. behind a TLS-terminating proxy on
/// the same machine).
pub fn plain_text_warning(address: SocketAddr, tls_enabled: bool) -> Option<String> {
    if tls_enabled || address.ip().is_loopback() {
        return None;
    }
    Some(format!(
        "警告 WARNING: listening on {address} WITHOUT TLS: passwords, tokens and personal data cross the network in plain text. Set tls_cert_file and tls_key_file (--tls-cert/--tls-key), or listen on 127.0.0.1 behind a TLS proxy."
    ))
}

/// Accept connections on `listener`, finish the TLS handshake and serve `app` over whatever
/// protocol ALPN chose, until `shutdown` resolves; then stop accepting and wait for the open
/// connections to finish their requests (graceful, like `axum::serve`).
pub(crate) async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    config: Arc<ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning,
                    // as axum::serve does.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small gRPC frames must not wait for a delayed ACK (issue 11: 40 ms per Pull).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let app = app.clone();
        tokio::spawn(async move {
            let tls_stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => tls_stream,
                    Ok(Err(error)) => {
                        // A client that does not trust the certificate, or speaks plain
                        // HTTP to the TLS port: its problem, not the server's.
                        tracing::debug!(%remote, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
            // The same ConnectInfo the plain path gets from axum::serve.
            let service = app.map_request(move |mut request: axum::extract::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                request
            });
            let connection = builder
                .serve_connection(TokioIo::new(tls_stream), TowerToHyperService::new(service));
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%remote, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_only_quiet_on_loopback() {
        let loopback: SocketAddr = "127.0.0.1:7700".parse().unwrap();
        let everywhere: SocketAddr = "0.0.0.0:7700".parse().unwrap();
        assert_eq!(plain_text_warning(loopback, false), None);
        assert_eq!(plain_text_warning(everywhere, true), None);
        let warning = plain_text_warning(everywhere, false).expect("a warning");
        assert!(warning.contains("WITHOUT TLS"), "{warning}");
        assert!(warning.contains("--tls-cert"), "{warning}");
    }

    #[test]
    fn only_one_of_certificate_and_key_is_an_error() {
        let settings = Settings {
            tls_cert_file: Some(PathBuf::from("/etc/fieldsync/cert.pem")),
            ..Settings::default()
        };
        let error = server_config(&settings).unwrap_err();
        assert!(
            error.to_string().contains("tls_key_file is unset"),
            "{error}"
        );
        assert!(server_config(&Settings::default()).unwrap().is_none());
    }

    #[test]
    fn unreadable_and_invalid_files_are_named_in_the_error() {
        let folder = tempfile::tempdir().unwrap();
        let missing = folder.path().join("missing-cert.pem");
        let garbage = folder.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let error = load_server_config(&missing, &garbage).unwrap_err();
        assert!(matches!(error, TlsSetupError::ReadCertificate { .. }));
        assert!(error.to_string().contains("missing-cert.pem"), "{error}");
        let error = load_server_config(&garbage, &missing).unwrap_err();
        assert!(matches!(error, TlsSetupError::BadCertificate { .. }));
        assert!(error.to_string().contains("garbage.pem"), "{error}");
    }
}
