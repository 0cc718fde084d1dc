//! Resumable upload on a shaped link (issue 4): fieldsync's real phone upload (client-core
//! `Client::sync`, StartUpload → PutChunk 256 KiB + CRC32C → CompleteUpload) against a plain
//! `curl -X POST --data-binary @file` of the same 3 MB JPEG, both through the same emulated
//! EDGE link: 200 kbit/s up, 1 Mbit/s down, 420 ms one-way delay each way (RTT 840 ms).
//!
//!     cargo bench -p fieldsync-tests --bench shaped_upload --no-run
//!     cargo bench -p fieldsync-tests --bench shaped_upload
//!
//! Why a userspace proxy: this machine's kernel has no `sch_netem` (`tc qdisc add ... netem`
//! says "Specified qdisc kind is unknown") and Debian `trickle` neither shapes a tokio binary
//! nor adds a round-trip delay (see BENCHMARKS.md). The proxy below models one radio link
//! shared by all of a phone's connections: a per-direction FIFO that serialises bytes at the
//! link rate (a bounded bottleneck queue pushes back on the sender), then delays each piece
//! by the one-way latency; every new connection is charged one RTT for the TCP handshake.
//! It can also "cut": drop every connection once N bytes have passed upstream.
//!
//! Environment knobs, for a quick check only (the recorded numbers use the defaults):
//! `SHAPED_FILE_BYTES` (3000000), `SHAPED_UP_KBIT` (200), `SHAPED_RTT_MS` (840),
//! `SHAPED_RUNS` (3), `SHAPED_SWEEP` (1 = also time 64 KiB and 1 MiB chunks).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fieldsync_client::records::{LoginGrant, LoginRequest, PushAck, PushBatch, UploadPosition};
use fieldsync_client::{
    ChunkRefused, Client, ClientResult, GrpcTransport, NewVisit, PullFrames, SyncTransport,
    SystemClock,
};
use fieldsync_model::codes::{Crs, LocationProvider, VisitMode};
use fieldsync_model::visit::GpsFix;
use fieldsync_tests::{DEMO_PASSWORD, TestServer};
use rand::{Rng, SeedableRng};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// The chunk size the client core uses (`fieldsync_client::sync::CHUNK_BYTES`).
const CLIENT_CHUNK: u64 = fieldsync_client::sync::CHUNK_BYTES;
/// Largest piece the link moves at once: about one TCP segment.
const PIECE: usize = 1400;
/// Bottleneck buffer of the emulated link, in bytes (about 1.3 s at 200 kbit/s).
const LINK_QUEUE_BYTES: f64 = 32.0 * 1024.0;
/// Downlink rate: generous next to the uplink; answers here are small.
const DOWN_KBIT: f64 = 1000.0;
/// Cut the link after this share of the file has passed upstream.
const CUT_SHARE: f64 = 0.5;

#[derive(Debug, Clone, Copy)]
struct Knobs {
    file_bytes: usize,
    up_kbit: f64,
    rtt: Duration,
    runs: usize,
    sweep: bool,
}

impl Knobs {
    fn from_env() -> Self {
        let get = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<f64>().ok());
        Self {
            file_bytes: get("SHAPED_FILE_BYTES").map_or(3_000_000, |v| v as usize),
            up_kbit: get("SHAPED_UP_KBIT").unwrap_or(200.0),
            rtt: Duration::from_millis(get("SHAPED_RTT_MS").map_or(840, |v| v as u64)),
            runs: get("SHAPED_RUNS").map_or(3, |v| v as usize),
            sweep: get("SHAPED_SWEEP").is_none_or(|v| v != 0.0),
        }
    }
}

fn main() {
    // A test run must not spend twenty minutes on a 200 kbit/s link: skipped without `--bench`.
    fieldsync_tests::bench_main("shaped_upload", || bench(Knobs::from_env()));
}

// ---------------------------------------------------------------------------------------
// The emulated link
// ---------------------------------------------------------------------------------------

/// One direction of the radio link, shared by every connection of the phone.
#[derive(Debug)]
struct Link {
    bytes_per_sec: f64,
    one_way: Duration,
    /// When the link finishes serialising what is already queued.
    free_at: Mutex<Instant>,
    /// Bytes delivered at the far end.
    delivered: AtomicU64,
}

impl Link {
    fn new(kbit: f64, one_way: Duration) -> Self {
        Self {
            bytes_per_sec: kbit * 1000.0 / 8.0,
            one_way,
            free_at: Mutex::new(Instant::now()),
            delivered: AtomicU64::new(0),
        }
    }

    /// Queue `len` bytes read now: returns when they arrive at the far end, and how long the
    /// reader must wait before reading more (the bottleneck queue is full beyond that).
    fn enqueue(&self, len: usize) -> (Instant, Duration) {
        let now = Instant::now();
        let mut free_at = self.free_at.lock().expect("link lock");
        let start = (*free_at).max(now);
        let done = start + Duration::from_secs_f64(len as f64 / self.bytes_per_sec);
        *free_at = done;
        let queue_time = Duration::from_secs_f64(LINK_QUEUE_BYTES / self.bytes_per_sec);
        let backlog = done.saturating_duration_since(now);
        (done + self.one_way, backlog.saturating_sub(queue_time))
    }

    fn reset(&self) {
        *self.free_at.lock().expect("link lock") = Instant::now();
    }
}

/// A shaping TCP proxy in front of `target`.
#[derive(Debug)]
struct Shaper {
    address: SocketAddr,
    up: Arc<Link>,
    /// Cut every connection once `up.delivered` reaches this (0 = disarmed).
    cut_at: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Shaper {
    async fn start(target: SocketAddr, knobs: Knobs) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let one_way = knobs.rtt / 2;
        let up = Arc::new(Link::new(knobs.up_kbit, one_way));
        let down = Arc::new(Link::new(DOWN_KBIT, one_way));
        let cut_at = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let (cut_sender, cut_receiver) = watch::channel(0u64);
        let cut_sender = Arc::new(cut_sender);
        let task = {
            let (up, down, cut_at, connections) = (
                up.clone(),
                down.clone(),
                cut_at.clone(),
                connections.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let context = Pipe {
                        up: up.clone(),
                        down: down.clone(),
                        cut_at: cut_at.clone(),
                        cut_sender: cut_sender.clone(),
                        cut_receiver: cut_receiver.clone(),
                    };
                    tokio::spawn(context.run(client, target, one_way * 2));
                }
            })
        };
        Self {
            address,
            up,
            cut_at,
            connections,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn up_bytes(&self) -> u64 {
        self.up.delivered.load(Ordering::SeqCst)
    }

    /// Drop every connection once `more` further bytes have passed upstream.
    fn arm_cut(&self, more: u64) {
        self.cut_at
            .store(self.up_bytes() + more.max(1), Ordering::SeqCst);
    }
}

impl Drop for Shaper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct Pipe {
    up: Arc<Link>,
    down: Arc<Link>,
    cut_at: Arc<AtomicU64>,
    cut_sender: Arc<watch::Sender<u64>>,
    cut_receiver: watch::Receiver<u64>,
}

impl Pipe {
    async fn run(self, client: TcpStream, target: SocketAddr, handshake: Duration) {
        // The TCP handshake costs one round trip before the first byte can leave the phone.
        tokio::time::sleep(handshake).await;
        let Ok(server) = TcpStream::connect(target).await else {
            return;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let mut cut = self.cut_receiver.clone();
        let generation = *cut.borrow();
        let upstream = direction(
            client_read,
            server_write,
            self.up.clone(),
            Some((
                self.cut_at.clone(),
                self.cut_sender.clone(),
                self.up.clone(),
            )),
        );
        let downstream = direction(server_read, client_write, self.down.clone(), None);
        let both = async { tokio::join!(upstream, downstream) };
        tokio::select! {
            _ = both => {}
            // A cut drops both sockets with whatever is still in flight.
            _ = cut.wait_for(|current| *current != generation) => {}
        }
    }
}

/// The cut threshold, the switch that drops every connection, and the link to reset.
type CutSwitch = (Arc<AtomicU64>, Arc<watch::Sender<u64>>, Arc<Link>);

/// Move bytes from `from` to `to` through `link`; with `cut`, trip the cut when the
/// delivered count reaches the armed threshold.
async fn direction(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Arc<Link>,
    cut: Option<CutSwitch>,
) {
    let (sender, mut receiver) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = {
        let link = link.clone();
        async move {
            let mut buffer = vec![0u8; PIECE];
            loop {
                let read = match from.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => read,
                };
                let (arrive_at, hold) = link.enqueue(read);
                if sender.send((arrive_at, buffer[..read].to_vec())).is_err() {
                    return;
                }
                if !hold.is_zero() {
                    tokio::time::sleep(hold).await;
                }
            }
        }
    };
    let writer = async move {
        while let Some((arrive_at, piece)) = receiver.recv().await {
            tokio::time::sleep_until(arrive_at.into()).await;
            if to.write_all(&piece).await.is_err() {
                return;
            }
            let total = link
                .delivered
                .fetch_add(piece.len() as u64, Ordering::SeqCst)
                + piece.len() as u64;
            if let Some((cut_at, cut_sender, up)) = &cut {
                let threshold = cut_at.load(Ordering::SeqCst);
                if threshold != 0
                    && total >= threshold
                    && cut_at
                        .compare_exchange(threshold, 0, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                {
                    up.reset();
                    cut_sender.send_modify(|generation| *generation += 1);
                    return;
                }
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

// ---------------------------------------------------------------------------------------
// The plain HTTP sink for curl
// ---------------------------------------------------------------------------------------

async fn start_sink() -> SocketAddr {
    use axum::routing::post;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
    let address = listener.local_addr().expect("sink address");
    let app = axum::Router::new()
        .route(
            "/",
            post(|body: axum::body::Bytes| async move { format!("{}\n", body.len()) }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024));
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("sink runs");
    });
    address
}

/// `curl -X POST --data-binary @file URL`: (wall time, success).
async fn curl_post(file: &Path, url: &str) -> (Duration, bool) {
    let started = Instant::now();
    let status = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-X", "POST", "--data-binary"])
        .arg(format!("@{}", file.display()))
        .arg(url)
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .expect("run curl");
    (started.elapsed(), status.success())
}

// ---------------------------------------------------------------------------------------
// A recording transport around the real gRPC one
// ---------------------------------------------------------------------------------------

/// The client core's own `GrpcTransport`, with timestamps and byte counts around the upload
/// calls, and an optional cut armed when the upload starts.
#[derive(Debug)]
struct Recorder {
    inner: GrpcTransport,
    url: Arc<Mutex<String>>,
    log: Mutex<UploadLog>,
    /// (shaper up-counter reader, bytes after which to cut) armed at the first StartUpload.
    cut: Mutex<Option<(Arc<Shaper>, u64)>>,
}

#[derive(Debug, Default, Clone)]
struct UploadLog {
    started: Option<Instant>,
    completed: Option<Instant>,
    /// Chunk payload bytes handed to PutChunk, including chunks cut in flight.
    chunk_bytes_attempted: u64,
    chunks_attempted: u64,
    /// Committed offsets StartUpload answered, in order.
    start_offsets: Vec<u64>,
}

impl Recorder {
    fn new(url: &str) -> Arc<Self> {
        let url = Arc::new(Mutex::new(url.to_owned()));
        Arc::new(Self {
            inner: GrpcTransport::new(url.clone()),
            url,
            log: Mutex::new(UploadLog::default()),
            cut: Mutex::new(None),
        })
    }

    fn point_at(&self, url: &str) {
        *self.url.lock().expect("url lock") = url.to_owned();
    }

    fn log(&self) -> UploadLog {
        self.log.lock().expect("log lock").clone()
    }
}

#[async_trait]
impl SyncTransport for Recorder {
    async fn login(&self, request: &LoginRequest) -> ClientResult<LoginGrant> {
        self.inner.login(request).await
    }

    async fn push(&self, token: &str, batch: &PushBatch) -> ClientResult<PushAck> {
        self.inner.push(token, batch).await
    }

    async fn pull(
        &self,
        token: &str,
        request: &fieldsync_client::records::PullRequest,
    ) -> ClientResult<Box<dyn PullFrames>> {
        self.inner.pull(token, request).await
    }

    async fn start_upload(
        &self,
        token: &str,
        sha256: &str,
        size_bytes: u64,
        mime_type: &str,
    ) -> ClientResult<UploadPosition> {
        {
            let mut log = self.log.lock().expect("log lock");
            log.started.get_or_insert_with(Instant::now);
        }
        if let Some((shaper, after)) = self.cut.lock().expect("cut lock").take() {
            shaper.arm_cut(after);
        }
        let position = self
            .inner
            .start_upload(token, sha256, size_bytes, mime_type)
            .await?;
        self.log
            .lock()
            .expect("log lock")
            .start_offsets
            .push(position.committed_offset);
        Ok(position)
    }

    async fn put_chunk(
        &self,
        token: &str,
        upload_id: &str,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<u64, ChunkRefused> {
        {
            let mut log = self.log.lock().expect("log lock");
            log.chunk_bytes_attempted += data.len() as u64;
            log.chunks_attempted += 1;
        }
        self.inner.put_chunk(token, upload_id, offset, data).await
    }

    async fn complete_upload(&self, token: &str, upload_id: &str) -> ClientResult<(String, u64)> {
        let done = self.inner.complete_upload(token, upload_id).await?;
        self.log.lock().expect("log lock").completed = Some(Instant::now());
        Ok(done)
    }

    async fn upload_status(&self, token: &str, upload_id: &str) -> ClientResult<UploadPosition> {
        self.inner.upload_status(token, upload_id).await
    }
}

// ---------------------------------------------------------------------------------------
// The photo
// ---------------------------------------------------------------------------------------

/// A real baseline JPEG of about `target` bytes: seeded gradient + sensor-like noise,
/// quality 90, 4:2:0. Noise keeps it incompressible, like a 3 MB phone photo.
fn make_jpeg(target: usize) -> Vec<u8> {
    // Bytes per pixel of this content at q90 is about 1.0; start there and correct once.
    let mut pixels_wanted = target as f64 / 1.0;
    let mut jpeg = Vec::new();
    for _ in 0..3 {
        let width = ((pixels_wanted * 4.0 / 3.0).sqrt() as u32).max(16) & !15;
        let height = (width * 3 / 4).max(16) & !15;
        jpeg = encode(width, height);
        let per_pixel = jpeg.len() as f64 / f64::from(width * height);
        if (jpeg.len() as f64 - target as f64).abs() / (target as f64) < 0.05 {
            break;
        }
        pixels_wanted = target as f64 / per_pixel;
    }
    jpeg
}

fn encode(width: u32, height: u32) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0000_ED6E_2026);
    let mut pixels = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let base = [
                (x * 160 / width + 40) as i32,
                (y * 140 / height + 60) as i32,
                ((x + y) * 100 / (width + height) + 80) as i32,
            ];
            for channel in base {
                let noise: i32 = rng.random_range(-48..=48);
                pixels.push((channel + noise).clamp(0, 255) as u8);
            }
        }
    }
    let mut jpeg = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, 90);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    encoder
        .encode(
            &pixels,
            width as u16,
            height as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .expect("encode JPEG");
    jpeg
}

/// `jpeg` with a COM segment after SOI: a distinct, still valid JPEG per run (uploads are
/// content-addressed, so the same bytes twice would be "already complete").
fn with_comment(jpeg: &[u8], comment: &str) -> Vec<u8> {
    let mut bytes = jpeg[..2].to_vec();
    bytes.extend_from_slice(&[0xFF, 0xFE]);
    bytes.extend_from_slice(&((comment.len() + 2) as u16).to_be_bytes());
    bytes.extend_from_slice(comment.as_bytes());
    bytes.extend_from_slice(&jpeg[2..]);
    bytes
}

// ---------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default)]
struct FieldsyncRun {
    /// StartUpload sent → CompleteUpload answered, on the connection the push opened.
    upload: Duration,
    /// The whole `sync()`: new connection (handshake), push, upload, pull.
    sync: Duration,
    /// Bytes the phone sent over the link during the whole sync.
    up_bytes: u64,
    chunks: u64,
}

/// A logged-in phone with its scope pulled over the unshaped path, and a visit with
/// `photo` recorded and waiting in its outbox.
async fn phone_with_visit(
    server: &TestServer,
    photo: &Path,
) -> (Client, Arc<Recorder>, tempfile::TempDir) {
    let folder = tempfile::tempdir().expect("phone dir");
    let recorder = Recorder::new(&server.url());
    let client =
        Client::open_with_transport(folder.path(), recorder.clone(), Arc::new(SystemClock))
            .expect("open client");
    client.login("cadre01", DEMO_PASSWORD).await.expect("login");
    client.sync().await.expect("first sync");
    let households = client.households().expect("households");
    let household = client
        .household(&households[0].household_id)
        .expect("read")
        .expect("household");
    let home = household.location.expect("demo households have a location");
    let now = time::OffsetDateTime::now_utc();
    client
        .record_visit(NewVisit {
            observed_situation: "户主在家，秋粮已收，两位老人身体尚可，医保已续缴。".into(),
            gps: Some(GpsFix {
                lat: home.lat + 0.0003,
                lon: home.lon,
                crs: Crs::Wgs84,
                accuracy_m: 8.0,
                provider: Some(LocationProvider::Gps),
                is_mock: false,
                fix_time: Some(now - time::Duration::minutes(20)),
            }),
            photo_paths: vec![photo.to_owned()],
            ..NewVisit::new(
                household.household_id.clone(),
                VisitMode::InPerson,
                now - time::Duration::minutes(40),
                now,
            )
        })
        .expect("record visit");
    (client, recorder, folder)
}

async fn fieldsync_run(server: &TestServer, photo: &Path, knobs: Knobs) -> FieldsyncRun {
    let (client, recorder, _folder) = phone_with_visit(server, photo).await;
    let shaper = Shaper::start(server.address, knobs).await;
    recorder.point_at(&shaper.url());
    let started = Instant::now();
    let report = client.sync().await.expect("shaped sync");
    let sync = started.elapsed();
    assert_eq!(report.uploads_completed, 1, "{report:?}");
    let log = recorder.log();
    FieldsyncRun {
        upload: log.completed.expect("completed") - log.started.expect("started"),
        sync,
        up_bytes: shaper.up_bytes(),
        chunks: log.chunks_attempted,
    }
}

#[derive(Debug, Clone, Default)]
struct CutRun {
    cut_after: u64,
    first_error: String,
    /// Offsets StartUpload answered: 0 at first, then where the server really was.
    start_offsets: Vec<u64>,
    chunk_bytes_attempted: u64,
    up_bytes_total: u64,
    connections: u64,
    resumed_wall: Duration,
}

async fn fieldsync_cut_run(
    server: &TestServer,
    photo: &Path,
    file_len: u64,
    knobs: Knobs,
) -> CutRun {
    let (client, recorder, _folder) = phone_with_visit(server, photo).await;
    let shaper = Arc::new(Shaper::start(server.address, knobs).await);
    recorder.point_at(&shaper.url());
    let cut_after = (file_len as f64 * CUT_SHARE) as u64;
    *recorder.cut.lock().expect("cut lock") = Some((shaper.clone(), cut_after));
    // A cut mid-PutChunk surfaces either as an error (the sync stops) or, when tonic reports
    // the dropped connection as `Unknown: transport error`, as an upload failure in an
    // otherwise finished sync; either way the upload stays pending.
    let first = match client.sync().await {
        Err(error) => format!("Err: {error}"),
        Ok(report) => {
            assert_eq!(report.uploads_completed, 0, "the cut must stop the upload");
            format!(
                "Ok, upload_failures: {:?}",
                report.upload_failures.first().map(|f| &f.1)
            )
        }
    };
    // The phone notices coverage again and syncs: StartUpload tells the committed offset.
    let resumed = Instant::now();
    let report = client.sync().await.expect("resumed sync");
    assert_eq!(report.uploads_completed, 1, "{report:?}");
    let log = recorder.log();
    let stored = server
        .state
        .blobs
        .read(&hex::encode(sha2::Sha256::digest(
            std::fs::read(photo).expect("photo"),
        )))
        .await
        .expect("stored blob");
    assert_eq!(
        stored,
        std::fs::read(photo).expect("photo"),
        "byte-exact after resume"
    );
    CutRun {
        cut_after,
        first_error: first,
        start_offsets: log.start_offsets.clone(),
        chunk_bytes_attempted: log.chunk_bytes_attempted,
        up_bytes_total: shaper.up_bytes(),
        connections: shaper.connections.load(Ordering::SeqCst),
        resumed_wall: resumed.elapsed(),
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct CurlRun {
    wall: Duration,
    up_bytes: u64,
}

async fn curl_run(sink: SocketAddr, file: &Path, knobs: Knobs) -> CurlRun {
    let shaper = Shaper::start(sink, knobs).await;
    let (wall, ok) = curl_post(file, &format!("{}/", shaper.url())).await;
    assert!(ok, "curl POST through the shaper failed");
    CurlRun {
        wall,
        up_bytes: shaper.up_bytes(),
    }
}

/// curl cut at the same point, then run again: a plain POST restarts from zero.
async fn curl_cut_run(sink: SocketAddr, file: &Path, file_len: u64, knobs: Knobs) -> (u64, u64) {
    let shaper = Shaper::start(sink, knobs).await;
    shaper.arm_cut((file_len as f64 * CUT_SHARE) as u64);
    let url = format!("{}/", shaper.url());
    let (_, first_ok) = curl_post(file, &url).await;
    assert!(!first_ok, "the cut must break the first curl");
    let before_retry = shaper.up_bytes();
    let (_, ok) = curl_post(file, &url).await;
    assert!(ok, "curl retry failed");
    (shaper.up_bytes(), before_retry)
}

/// Upload with the client core's `GrpcTransport` directly in `chunk` pieces (the client
/// core's chunk size is a constant, so other sizes are timed this way).
async fn chunk_sweep_run(
    server: &TestServer,
    bytes: &[u8],
    chunk: usize,
    knobs: Knobs,
) -> Duration {
    let shaper = Shaper::start(server.address, knobs).await;
    let transport = GrpcTransport::new(Arc::new(Mutex::new(shaper.url())));
    let grant = transport
        .login(&LoginRequest {
            username: "cadre02".into(),
            password: DEMO_PASSWORD.into(),
            device_id: uuid::Uuid::now_v7().to_string(),
            device_name: "bench".into(),
        })
        .await
        .expect("login");
    let sha = hex::encode(sha2::Sha256::digest(bytes));
    let started = Instant::now();
    let position = transport
        .start_upload(&grant.token, &sha, bytes.len() as u64, "image/jpeg")
        .await
        .expect("start");
    let mut offset = position.committed_offset as usize;
    while offset < bytes.len() {
        let end = (offset + chunk).min(bytes.len());
        let committed = transport
            .put_chunk(
                &grant.token,
                &position.upload_id,
                offset as u64,
                bytes[offset..end].to_vec(),
            )
            .await
            .map_err(|refused| format!("{refused:?}"))
            .expect("chunk");
        offset = committed as usize;
    }
    transport
        .complete_upload(&grant.token, &position.upload_id)
        .await
        .expect("complete");
    started.elapsed()
}

// ---------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn kbit(bytes: u64, wall: Duration) -> f64 {
    bytes as f64 * 8.0 / 1000.0 / wall.as_secs_f64()
}

fn secs(values: &[Duration]) -> String {
    values
        .iter()
        .map(|value| format!("{:.1}", value.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let curl = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .map(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    format!("{cores} logical CPUs ({model}); build: release; {curl}")
}

fn now_utc() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute()
    )
}

async fn bench(knobs: Knobs) {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = make_jpeg(knobs.file_bytes);
    let photo = |name: &str| -> (PathBuf, Vec<u8>) {
        let bytes = with_comment(&base, &format!("fieldsync shaped upload {name}"));
        let path = dir.path().join(format!("{name}.jpg"));
        std::fs::write(&path, &bytes).expect("write photo");
        (path, bytes)
    };
    let (curl_file, curl_bytes) = photo("curl");
    let file_len = curl_bytes.len() as u64;
    println!("### Run of {}", now_utc());
    println!();
    println!("Machine: {}.", machine());
    println!(
        "Link: {:.0} kbit/s up, {DOWN_KBIT:.0} kbit/s down, {} ms RTT ({} ms each way), \
         {:.0} KiB bottleneck queue, one RTT charged per new TCP connection.",
        knobs.up_kbit,
        knobs.rtt.as_millis(),
        knobs.rtt.as_millis() / 2,
        LINK_QUEUE_BYTES / 1024.0
    );
    println!(
        "File: one generated baseline JPEG, {file_len} bytes ({:.2} MB), a distinct COM \
         comment per run; chunk size {} KiB ({} chunks); ideal time at the link rate {:.1} s.",
        file_len as f64 / 1e6,
        CLIENT_CHUNK / 1024,
        file_len.div_ceil(CLIENT_CHUNK),
        file_len as f64 * 8.0 / (knobs.up_kbit * 1000.0)
    );
    println!();

    let server = TestServer::start().await;
    let sink = start_sink().await;

    // Interleaved so slow drift on this shared VM hits both sides alike.
    let (mut curls, mut fieldsyncs) = (Vec::new(), Vec::new());
    for run in 0..knobs.runs {
        let curl = curl_run(sink, &curl_file, knobs).await;
        eprintln!("curl run {run}: {curl:?}");
        curls.push(curl);
        let (path, _) = photo(&format!("fieldsync{run}"));
        let fieldsync = fieldsync_run(&server, &path, knobs).await;
        eprintln!("fieldsync run {run}: {fieldsync:?}");
        fieldsyncs.push(fieldsync);
    }
    let curl_wall = median(curls.iter().map(|r| r.wall.as_secs_f64()).collect());
    let upload_wall = median(fieldsyncs.iter().map(|r| r.upload.as_secs_f64()).collect());
    let sync_wall = median(fieldsyncs.iter().map(|r| r.sync.as_secs_f64()).collect());
    let goodput = |wall: f64| file_len as f64 * 8.0 / 1000.0 / wall;
    println!(
        "#### Goodput ({} runs each, interleaved; median)",
        knobs.runs
    );
    println!();
    println!(
        "| transfer | wall per run (s) | median wall | goodput (median) | ratio to curl (target ≥ 0.85) | bytes up the link (median) |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| `curl -X POST --data-binary @file` (new connection) | {} | {curl_wall:.1} s | {:.1} kbit/s | 1.00 | {} |",
        secs(&curls.iter().map(|r| r.wall).collect::<Vec<_>>()),
        goodput(curl_wall),
        median(curls.iter().map(|r| r.up_bytes as f64).collect()) as u64,
    );
    println!(
        "| fieldsync upload: StartUpload → {} × PutChunk → CompleteUpload answered | {} | {upload_wall:.1} s | {:.1} kbit/s | **{:.2}** | |",
        fieldsyncs.first().map_or(0, |r| r.chunks),
        secs(&fieldsyncs.iter().map(|r| r.upload).collect::<Vec<_>>()),
        goodput(upload_wall),
        curl_wall / upload_wall,
    );
    println!(
        "| fieldsync whole `sync()` (new connection, push visit + photo record, upload, pull) | {} | {sync_wall:.1} s | {:.1} kbit/s | {:.2} | {} |",
        secs(&fieldsyncs.iter().map(|r| r.sync).collect::<Vec<_>>()),
        goodput(sync_wall),
        curl_wall / sync_wall,
        median(fieldsyncs.iter().map(|r| r.up_bytes as f64).collect()) as u64,
    );
    println!();
    println!(
        "Link rate ceiling: {:.1} kbit/s of file bytes would take {:.1} s.",
        knobs.up_kbit,
        file_len as f64 * 8.0 / (knobs.up_kbit * 1000.0)
    );
    println!();

    // Forced disconnect at about 50 %.
    let (cut_path, cut_bytes) = photo("fieldsync-cut");
    let cut_len = cut_bytes.len() as u64;
    let cut = fieldsync_cut_run(&server, &cut_path, cut_len, knobs).await;
    eprintln!("fieldsync cut: {cut:?}");
    let uncut_up = median(fieldsyncs.iter().map(|r| r.up_bytes as f64).collect()) as u64;
    let resumed_at = cut.start_offsets.get(1).copied().unwrap_or(0);
    let resent_payload = cut.chunk_bytes_attempted.saturating_sub(cut_len);
    let (curl_total, curl_before_retry) = curl_cut_run(sink, &curl_file, file_len, knobs).await;
    let curl_uncut_up = median(curls.iter().map(|r| r.up_bytes as f64).collect()) as u64;
    println!(
        "#### Forced disconnect after {} bytes ({:.0} %) of upload traffic passed upstream",
        cut.cut_after,
        CUT_SHARE * 100.0
    );
    println!();
    println!(
        "| transfer | resumed at | file bytes re-sent (upper bound: whole chunks handed to gRPC) | extra bytes up the link vs an uncut run (what the radio really re-sent, framing and reconnect included) | re-sent ≤ one chunk ({} B) |",
        CLIENT_CHUNK
    );
    println!("|---|---|---|---|---|");
    println!(
        "| fieldsync (first `sync()`: {}; the next `sync()` asks StartUpload and resumes) | offset {resumed_at} (StartUpload answers: {:?}) | {resent_payload} B (PutChunk payload handed to the link {} B − file {} B) | {} B ({} B total vs {} B) | {} |",
        cut.first_error.replace('|', "/"),
        cut.start_offsets,
        cut.chunk_bytes_attempted,
        cut_len,
        cut.up_bytes_total as i64 - uncut_up as i64,
        cut.up_bytes_total,
        uncut_up,
        if resent_payload <= CLIENT_CHUNK {
            "yes"
        } else {
            "**no**"
        },
    );
    println!(
        "| curl (plain POST; the retry starts from zero) | offset 0 | {} B (everything that passed before the cut) | {} B ({} B total vs {} B) | no (restart from zero) |",
        curl_before_retry,
        curl_total as i64 - curl_uncut_up as i64,
        curl_total,
        curl_uncut_up,
    );
    println!();
    println!(
        "fieldsync resume: {} connections in all (one cut), resumed `sync()` took {:.1} s.",
        cut.connections,
        cut.resumed_wall.as_secs_f64()
    );
    println!();

    if knobs.sweep {
        println!(
            "#### Chunk size (one run each, `GrpcTransport` driven directly, warm connection)"
        );
        println!();
        println!(
            "| chunk | chunks | StartUpload → CompleteUpload | goodput | ratio to curl median |"
        );
        println!("|---|---|---|---|---|");
        println!(
            "| {} KiB (client core, median above) | {} | {upload_wall:.1} s | {:.1} kbit/s | {:.2} |",
            CLIENT_CHUNK / 1024,
            file_len.div_ceil(CLIENT_CHUNK),
            goodput(upload_wall),
            curl_wall / upload_wall
        );
        for chunk in [64 * 1024usize, 1024 * 1024] {
            let (_, bytes) = photo(&format!("sweep{chunk}"));
            let wall = chunk_sweep_run(&server, &bytes, chunk, knobs).await;
            eprintln!("sweep {chunk}: {wall:?}");
            println!(
                "| {} KiB | {} | {:.1} s | {:.1} kbit/s | {:.2} |",
                chunk / 1024,
                bytes.len().div_ceil(chunk),
                wall.as_secs_f64(),
                kbit(bytes.len() as u64, wall),
                curl_wall / wall.as_secs_f64()
            );
        }
        println!();
    }
}
