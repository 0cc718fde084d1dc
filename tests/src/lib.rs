//! Harness for fieldsync's end-to-end tests: a real server on a real socket (port 0) with a
//! temporary SQLite file and blob folder, seeded with the demo county, plus helpers to talk
//! to it over real gRPC.

use std::net::SocketAddr;
use std::path::PathBuf;

use fieldsync_proto::v1;
use fieldsync_server::AppState;
use fieldsync_server::settings::Settings;
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// Password of every demo account.
pub use fieldsync_server::demo::DEMO_PASSWORD;

/// A running server; dropping it stops the server and deletes its data.
#[derive(Debug)]
pub struct TestServer {
    pub address: SocketAddr,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    data_dir: tempfile::TempDir,
}

impl TestServer {
    /// Start a server with the demo county on 127.0.0.1:0.
    pub async fn start() -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(data_dir).await
    }

    async fn start_in(data_dir: tempfile::TempDir) -> Self {
        let settings = Settings {
            data_dir: data_dir.path().to_owned(),
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Settings::default()
        };
        let state = AppState::open(settings).expect("open state");
        fieldsync_server::demo::seed_demo_if_empty(state.store.as_ref())
            .await
            .expect("seed demo county");
        // Binding before spawning means connections queue in the kernel until the server
        // accepts them: no readiness polling or sleeps needed.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (shutdown, shutdown_signal) = oneshot::channel::<()>();
        let served_state = state.clone();
        let task = tokio::spawn(async move {
            fieldsync_server::serve(listener, served_state, async {
                let _ = shutdown_signal.await;
            })
            .await
            .expect("server runs");
        });
        Self {
            address,
            state,
            shutdown: Some(shutdown),
            task: Some(task),
            data_dir,
        }
    }

    /// Stop the server and start a new one on the same data folder (a restart).
    pub async fn restart(mut self) -> Self {
        self.stop().await;
        let data_dir = tempfile::tempdir().expect("temp dir");
        let old = std::mem::replace(&mut self.data_dir, data_dir);
        Self::start_in(old).await
    }

    async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn data_path(&self) -> PathBuf {
        self.data_dir.path().to_owned()
    }

    /// A gRPC channel to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }

    /// Log in over gRPC and return the bearer token.
    pub async fn login(&self, username: &str, device_id: &str) -> String {
        let mut auth = v1::auth_client::AuthClient::new(self.channel().await);
        auth.login(v1::LoginRequest {
            username: username.into(),
            password: DEMO_PASSWORD.into(),
            device_id: device_id.into(),
            device_name: "test".into(),
            client: Some(client_info()),
        })
        .await
        .expect("login")
        .into_inner()
        .token
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The client info a current app sends.
pub fn client_info() -> v1::ClientInfo {
    v1::ClientInfo {
        schema_version: fieldsync_proto::SCHEMA_VERSION,
        app_version: "test".into(),
    }
}

/// Wrap a message with a bearer token.
pub fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request
}

/// Pull the caller's whole scope from an empty cursor.
pub async fn pull_all(
    channel: Channel,
    token: &str,
) -> (Vec<v1::Household>, Vec<v1::VisitStatus>, String) {
    let mut sync = v1::sync_client::SyncClient::new(channel);
    let mut stream = sync
        .pull(authorized(
            v1::PullRequest {
                cursor: String::new(),
                client: Some(client_info()),
                ..Default::default()
            },
            token,
        ))
        .await
        .expect("pull")
        .into_inner();
    let (mut households, mut statuses) = (Vec::new(), Vec::new());
    while let Some(frame) = stream.message().await.expect("frame") {
        match frame.frame {
            Some(v1::pull_response::Frame::Page(page)) => {
                households.extend(page.households);
                statuses.extend(page.visit_statuses);
            }
            Some(v1::pull_response::Frame::Checkpoint(checkpoint)) => {
                return (households, statuses, checkpoint.cursor);
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    panic!("pull ended without a checkpoint")
}

/// Absolute path of a test photo in the shared test data.
pub fn test_photo(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/photos")
        .join(name)
}
