//! Evidence flags computed inside the push's own write transaction (issue 11 §2), over real
//! gRPC against a real server and SQLite file:
//!
//! - flag equivalence: seeded randomized scenarios (several cadres, check-in times with
//!   sub-millisecond parts, GPS in three coordinate systems near and far from the household,
//!   modes, late pushes landing between earlier visits, revisions, photos sharing a file or
//!   a near-identical picture, uploads completing after the push) where after every push
//!   and upload the flags stored for every visit equal an oracle: the pure
//!   `model::evidence::evaluate` fed with inputs built from the scenario in memory, applied to
//!   the visits the refresh semantics re-evaluate (the pushed ones, visits sharing an
//!   attached stored file, their one-step neighbours; on upload, every visit of the file);
//! - neighbour re-evaluation: a late push between two earlier visits flags the earlier
//!   neighbour's impossible travel, an upload makes a reused file visible on the other
//!   visit, and the per-day limit reaches the day's earlier visits;
//! - one durable write transaction per push, counted by the store's commit hook.

use std::collections::HashMap;

use fieldsync_model::CodeList;
use fieldsync_model::codes::{Crs, VisitExceptionReason, VisitMode, VisitType};
use fieldsync_model::evidence::{
    self, CadreVisitSummary, EvidenceFlag, EvidenceSettings, OtherPhotoUse, PhotoEvidence,
};
use fieldsync_model::geo;
use fieldsync_model::household::GeoPoint;
use fieldsync_model::time_util::BEIJING;
use fieldsync_model::visit::{GpsFix, PhotoRecord, Visit, WellbeingCheck};
use fieldsync_proto::v1;
use fieldsync_server::media::photo::{self, Limits};
use fieldsync_server::store::{CADRE_VISIT_WINDOW, CaptureTime, PhotoMeta};
use fieldsync_tests::{TestServer, authorized, client_info, pull_all, push_applied};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::Digest;
use time::{Duration, OffsetDateTime, macros::datetime};

const CHUNK: usize = 64 * 1024;

/// A Monday morning in Beijing, inside the business years.
const BASE: OffsetDateTime = datetime!(2026-11-02 08:00 +08:00);

/// The scenario server's fixed clock: every push is received eight days after `BASE`, so the
/// visits of the scenario's first day are late records (补录) and the later ones are not,
/// and the oracle knows each visit's receipt exactly.
const RECEIVED: OffsetDateTime = datetime!(2026-11-10 08:00 +08:00);

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A small real JPEG: a seeded pattern, and a comment that makes the file (not the picture)
/// distinct, so two comments give two files with the same perceptual hash.
fn jpeg(pattern: u64, comment: &str) -> Vec<u8> {
    let (width, height) = (96u16, 72u16);
    let mut rng = StdRng::seed_from_u64(pattern);
    let blocks: Vec<[u8; 3]> = (0..48).map(|_| rng.random()).collect();
    let mut pixels = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
    for y in 0..height {
        for x in 0..width {
            let block = blocks[usize::from(y / 12) * 8 + usize::from(x / 12)];
            pixels.extend_from_slice(&block);
        }
    }
    let mut encoded = Vec::new();
    jpeg_encoder::Encoder::new(&mut encoded, 90)
        .encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb)
        .expect("encode JPEG");
    let mut bytes = encoded[..2].to_vec();
    bytes.extend_from_slice(&[0xFF, 0xFE]);
    bytes.extend_from_slice(&((comment.len() + 2) as u16).to_be_bytes());
    bytes.extend_from_slice(comment.as_bytes());
    bytes.extend_from_slice(&encoded[2..]);
    bytes
}

/// Upload `bytes` over gRPC Media and complete it.
async fn upload(server: &TestServer, token: &str, bytes: &[u8]) {
    let mut media = v1::media_client::MediaClient::new(server.channel().await);
    let started = media
        .start_upload(authorized(
            v1::StartUploadRequest {
                client: Some(client_info()),
                sha256: sha256_hex(bytes),
                size_bytes: bytes.len() as u64,
                mime_type: "image/jpeg".into(),
            },
            token,
        ))
        .await
        .expect("start")
        .into_inner();
    let mut offset = started.committed_offset as usize;
    while offset < bytes.len() {
        let end = (offset + CHUNK).min(bytes.len());
        let chunk = &bytes[offset..end];
        offset = media
            .put_chunk(authorized(
                v1::PutChunkRequest {
                    client: Some(client_info()),
                    upload_id: started.upload_id.clone(),
                    offset: offset as u64,
                    data: chunk.to_vec(),
                    crc32c: crc32c::crc32c(chunk),
                },
                token,
            ))
            .await
            .expect("chunk")
            .into_inner()
            .committed_offset as usize;
    }
    media
        .complete_upload(authorized(
            v1::CompleteUploadRequest {
                client: Some(client_info()),
                upload_id: started.upload_id,
            },
            token,
        ))
        .await
        .expect("complete");
}

/// A visit of `household_id` at `checkin` lasting `minutes`.
fn visit(household_id: &str, checkin: OffsetDateTime, minutes: i64, gps: Option<GpsFix>) -> Visit {
    Visit {
        visit_id: uuid::Uuid::now_v7().to_string(),
        revision: 1,
        supersedes_revision: 0,
        household_id: household_id.into(),
        mode: VisitMode::InPerson,
        exception_reason: None,
        visit_type: VisitType::Routine,
        checkin_at: checkin,
        checkout_at: checkin + Duration::minutes(minutes),
        observed_situation: "户主在家，秋粮已收，家中老人身体尚可。".into(),
        plan_progress: String::new(),
        problems: String::new(),
        actions: String::new(),
        needs: String::new(),
        policies_explained: Vec::new(),
        wellbeing: WellbeingCheck::default(),
        proposed_changes: Vec::new(),
        photo_ids: Vec::new(),
        gps,
        recorded_at_device: checkin + Duration::minutes(minutes),
    }
}

fn fix(lat: f64, lon: f64, crs: Crs) -> GpsFix {
    GpsFix {
        lat,
        lon,
        crs,
        accuracy_m: 15.0,
        provider: None,
        is_mock: false,
        fix_time: None,
    }
}

/// A WGS-84 point expressed in `crs`, `north_m`/`east_m` away from `home`.
fn point_near(home: &GeoPoint, north_m: f64, east_m: f64, crs: Crs) -> GpsFix {
    let home = geo::to_wgs84(home);
    let lat = home.lat + north_m / 111_320.0;
    let lon = home.lon + east_m / (111_320.0 * home.lat.to_radians().cos());
    let wgs = GeoPoint {
        lat,
        lon,
        crs: Crs::Wgs84,
    };
    let (lat, lon) = match crs {
        Crs::Wgs84 => (lat, lon),
        Crs::Gcj02 => {
            let gcj = geo::to_gcj02(&wgs);
            (gcj.lat, gcj.lon)
        }
        Crs::Bd09 => {
            let gcj = geo::to_gcj02(&wgs);
            let bd = geo::gcj02_to_bd09(gcj.lat, gcj.lon);
            (bd.0, bd.1)
        }
    };
    fix(lat, lon, crs)
}

fn photo_record(visit_id: &str, bytes: &[u8]) -> PhotoRecord {
    PhotoRecord {
        photo_id: uuid::Uuid::now_v7().to_string(),
        visit_id: visit_id.into(),
        sha256: sha256_hex(bytes),
        size_bytes: bytes.len() as u64,
        mime_type: "image/jpeg".into(),
        subject: None,
        captured_at_device: None,
        in_app_camera: true,
    }
}

fn submit(visit: &Visit) -> v1::mutation::Payload {
    v1::mutation::Payload::SubmitVisit(v1::Visit::from(visit))
}

fn add_photo(record: &PhotoRecord) -> v1::mutation::Payload {
    v1::mutation::Payload::AddPhoto(v1::PhotoRecord::from(record))
}

/// The scenario as the test knows it, independent of the store: what each visit's rules
/// must see, and the flags each visit must have stored now.
#[derive(Default)]
struct Oracle {
    settings: EvidenceSettings,
    /// Latest revision of each visit, with its cadre.
    visits: HashMap<String, (usize, Visit)>,
    /// Every photo record, in the order the server stored them.
    photos: Vec<PhotoRecord>,
    /// Metadata of every file whose upload completed.
    arrived: HashMap<String, PhotoMeta>,
    locations: HashMap<String, Option<GeoPoint>>,
    expected: HashMap<String, Vec<EvidenceFlag>>,
}

impl Oracle {
    fn cadre_window(&self, visit_id: &str) -> Vec<CadreVisitSummary> {
        let (cadre, own) = &self.visits[visit_id];
        let mut window: Vec<CadreVisitSummary> = self
            .visits
            .values()
            .filter(|(other_cadre, other)| {
                other_cadre == cadre
                    && other.visit_id != own.visit_id
                    && other.checkin_at >= own.checkin_at - CADRE_VISIT_WINDOW
                    && other.checkin_at <= own.checkin_at + CADRE_VISIT_WINDOW
            })
            .map(|(_, other)| CadreVisitSummary {
                visit_id: other.visit_id.clone(),
                checkin_at: other.checkin_at,
                checkout_at: other.checkout_at,
                gps: other.gps.map(|gps| {
                    let point = geo::to_wgs84(&GeoPoint {
                        lat: gps.lat,
                        lon: gps.lon,
                        crs: gps.crs,
                    });
                    (point.lat, point.lon)
                }),
                in_person: other.mode == VisitMode::InPerson,
            })
            .collect();
        window.sort_by(|a, b| a.visit_id.cmp(&b.visit_id));
        window
    }

    fn flags(&self, visit_id: &str) -> Vec<EvidenceFlag> {
        let (_, visit) = &self.visits[visit_id];
        let own: Vec<&PhotoRecord> = self
            .photos
            .iter()
            .filter(|photo| photo.visit_id == visit_id)
            .collect();
        let photos: Vec<PhotoEvidence> = own
            .iter()
            .filter_map(|photo| {
                let meta = self.arrived.get(&photo.sha256)?;
                Some(PhotoEvidence {
                    photo_id: photo.photo_id.clone(),
                    sha256: photo.sha256.clone(),
                    phash: Some(meta.phash),
                    exif_time: meta.exif_time.map(|captured| match captured {
                        CaptureTime::Offset(instant) => instant,
                        CaptureTime::Local(local) => local.assume_offset(BEIJING),
                    }),
                    exif_gps: meta.exif_gps,
                    in_app_camera: photo.in_app_camera,
                    exif_damaged: meta.exif_damaged,
                    gps_time: meta.gps_time,
                    device_time: photo.captured_at_device,
                })
            })
            .collect();
        let own_hashes: Vec<u64> = photos.iter().filter_map(|photo| photo.phash).collect();
        let bits = self.settings.near_duplicate_max_bits;
        let other_photos: Vec<OtherPhotoUse> = self
            .photos
            .iter()
            .filter(|other| other.visit_id != visit_id)
            .filter_map(|other| {
                let phash = self.arrived.get(&other.sha256).map(|meta| meta.phash);
                let same_file = own.iter().any(|mine| mine.sha256 == other.sha256);
                let similar = phash.is_some_and(|theirs| {
                    own_hashes
                        .iter()
                        .any(|ours| (ours ^ theirs).count_ones() <= bits)
                });
                let (_, other_visit) = &self.visits[&other.visit_id];
                (same_file || similar).then(|| OtherPhotoUse {
                    photo_id: other.photo_id.clone(),
                    visit_id: other.visit_id.clone(),
                    household_id: other_visit.household_id.clone(),
                    month: other_visit.business_month(),
                    sha256: other.sha256.clone(),
                    phash,
                })
            })
            .collect();
        evidence::evaluate(
            visit,
            self.locations[&visit.household_id],
            &photos,
            &other_photos,
            &self.cadre_window(visit_id),
            &evidence::Receipt {
                first_submitted_at: RECEIVED,
                device_skew: None,
            },
            &self.settings,
        )
    }

    /// The refresh semantics' one-step neighbours of a visit (server/src/evidence.rs
    /// `affected_neighbours`): nearest before and after, and the day when it crosses the
    /// per-day limit.
    fn neighbours(&self, visit_id: &str) -> Vec<String> {
        let (_, visit) = &self.visits[visit_id];
        let window = self.cadre_window(visit_id);
        let day = visit.checkin_at.to_offset(BEIJING).date();
        let before = window
            .iter()
            .filter(|other| other.checkin_at < visit.checkin_at)
            .max_by_key(|other| other.checkin_at);
        let after = window
            .iter()
            .filter(|other| other.checkin_at >= visit.checkin_at)
            .min_by_key(|other| other.checkin_at);
        let same_day: Vec<&CadreVisitSummary> = window
            .iter()
            .filter(|other| other.checkin_at.to_offset(BEIJING).date() == day)
            .collect();
        let count = same_day.iter().filter(|other| other.in_person).count()
            + usize::from(visit.mode == VisitMode::InPerson);
        let limit = self.settings.max_in_person_visits_per_day as usize;
        let crossing = count == limit || count == limit + 1;
        before
            .into_iter()
            .chain(after)
            .chain(same_day.into_iter().filter(|_| crossing))
            .map(|other| other.visit_id.clone())
            .collect()
    }

    /// After a push stored `visit_ids` and photos of `sha256s`.
    fn pushed(&mut self, visit_ids: &[String], sha256s: &[String]) {
        let mut touched: Vec<String> = visit_ids.to_vec();
        for sha256 in sha256s {
            if self.arrived.contains_key(sha256) {
                touched.extend(
                    self.photos
                        .iter()
                        .filter(|photo| &photo.sha256 == sha256)
                        .map(|photo| photo.visit_id.clone()),
                );
            }
        }
        touched.sort();
        touched.dedup();
        let mut neighbours = Vec::new();
        for visit_id in &touched {
            self.expected.insert(visit_id.clone(), self.flags(visit_id));
            neighbours.extend(self.neighbours(visit_id));
        }
        neighbours.sort();
        neighbours.dedup();
        neighbours.retain(|visit_id| touched.binary_search(visit_id).is_err());
        for visit_id in neighbours {
            let flags = self.flags(&visit_id);
            self.expected.insert(visit_id, flags);
        }
    }

    /// After the upload of `sha256` completed.
    fn uploaded(&mut self, sha256: &str, meta: PhotoMeta) {
        self.arrived.insert(sha256.to_owned(), meta);
        let mut visit_ids: Vec<String> = self
            .photos
            .iter()
            .filter(|photo| photo.sha256 == sha256)
            .map(|photo| photo.visit_id.clone())
            .collect();
        visit_ids.sort();
        visit_ids.dedup();
        for visit_id in visit_ids {
            let flags = self.flags(&visit_id);
            self.expected.insert(visit_id, flags);
        }
    }
}

/// Every visit's stored flags equal what the oracle expects.
/// The evidence flags the server stored for a visit's latest revision.
async fn stored_flags(server: &TestServer, visit_id: &str) -> Vec<EvidenceFlag> {
    server
        .state
        .store
        .visit_detail(visit_id)
        .await
        .expect("detail")
        .expect("visit stored")
        .flags
        .expect("flags computed")
}

async fn assert_flags_match(server: &TestServer, oracle: &Oracle, step: &str) {
    for (visit_id, expected) in &oracle.expected {
        let stored = stored_flags(server, visit_id).await;
        assert!(
            same_flags(&stored, expected),
            "{step}: flags of visit {visit_id} differ from the oracle\n stored: {stored:?}\n oracle: {expected:?}"
        );
    }
}

/// Equal flags, numbers within a relative 1e-9: the visit's own fix is read back from its
/// JSON body, and serde_json's default float parsing may differ from the sent `f64` in the
/// last bit (it did before issue 11 too), which moves a distance in the 13th digit.
fn same_flags(stored: &[EvidenceFlag], expected: &[EvidenceFlag]) -> bool {
    fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
        use serde_json::Value;
        match (a, b) {
            (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
                _ => a == b,
            },
            (Value::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(a, b)| close(a, b))
            }
            (Value::Object(a), Value::Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(key, value)| b.get(key).is_some_and(|other| close(value, other)))
            }
            _ => a == b,
        }
    }
    close(
        &serde_json::to_value(stored).expect("encode"),
        &serde_json::to_value(expected).expect("encode"),
    )
}

struct Cadre {
    token: String,
    device: String,
    next_seq: u64,
    households: Vec<(String, Option<GeoPoint>)>,
}

async fn cadre(server: &TestServer, username: &str, oracle: &mut Oracle) -> Cadre {
    try_cadre(server, username, oracle)
        .await
        .unwrap_or_else(|| panic!("{username} has households to visit"))
}

/// A cadre's phone with up to eight of their households, `None` with fewer than three.
async fn try_cadre(server: &TestServer, username: &str, oracle: &mut Oracle) -> Option<Cadre> {
    let device = uuid::Uuid::now_v7().to_string();
    let token = server.login(username, &device).await;
    let (households, _, _) = pull_all(server.channel().await, &token).await;
    // A household can come more than once in a pull (each change of its card).
    let mut ids: Vec<String> = households
        .iter()
        .map(|household| household.household_id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    let mut located = Vec::new();
    for household_id in ids.iter().take(8) {
        let stored = server
            .state
            .store
            .get_household(household_id)
            .await
            .expect("household")
            .expect("stored");
        oracle
            .locations
            .insert(stored.household_id.clone(), stored.location);
        located.push((stored.household_id, stored.location));
    }
    (located.len() >= 3).then_some(Cadre {
        token,
        device,
        next_seq: 1,
        households: located,
    })
}

/// One randomized scenario from `seed`.
async fn run_scenario(seed: u64) {
    let server = TestServer::start_with_clock(std::sync::Arc::new(
        fieldsync_server::clock::ManualClock::new(RECEIVED),
    ))
    .await;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut oracle = Oracle {
        settings: server.state.settings.evidence.clone(),
        ..Oracle::default()
    };
    let mut cadres = Vec::new();
    for number in 1..=20 {
        if cadres.len() == 3 {
            break;
        }
        if let Some(found) = try_cadre(&server, &format!("cadre{number:02}"), &mut oracle).await {
            cadres.push(found);
        }
    }
    assert_eq!(
        cadres.len(),
        3,
        "the demo county has three cadres with households"
    );
    // Pictures: a few patterns, each as several files (same picture, other bytes).
    let pictures: Vec<Vec<u8>> = (0..6)
        .map(|index| jpeg(seed * 100 + index % 3, &format!("file {index}")))
        .collect();
    let mut metas: HashMap<String, PhotoMeta> = HashMap::new();
    for bytes in &pictures {
        let prepared = photo::prepare(bytes, &Limits::default(), 1600).expect("a good photo");
        metas.insert(
            sha256_hex(bytes),
            fieldsync_server::media::pipeline::photo_meta(&prepared),
        );
    }
    let mut uploaded = vec![false; pictures.len()];

    // Each cadre's phone queue: visits in random order of check-in over three days, so a
    // push often lands between visits stored earlier.
    let mut queues: Vec<Vec<(Visit, Vec<PhotoRecord>)>> = Vec::new();
    for (index, cadre) in cadres.iter().enumerate() {
        let mut queue = Vec::new();
        for _ in 0..18 {
            let (household_id, home) =
                &cadre.households[rng.random_range(0..cadre.households.len())];
            let checkin = BASE
                + Duration::minutes(rng.random_range(0..3 * 24 * 60))
                + Duration::nanoseconds(rng.random_range(0..1_000_000_000));
            let gps = match (home, rng.random_range(0..10)) {
                (_, 0) | (None, _) => None,
                (Some(home), 1..=6) => {
                    let crs = Crs::from_code(rng.random_range(1..=3)).unwrap_or(Crs::Wgs84);
                    Some(point_near(
                        home,
                        rng.random_range(-400.0..400.0),
                        rng.random_range(-400.0..400.0),
                        crs,
                    ))
                }
                (Some(home), _) => Some(point_near(
                    home,
                    rng.random_range(20_000.0..60_000.0),
                    rng.random_range(-60_000.0..60_000.0),
                    Crs::Gcj02,
                )),
            };
            let mut planned = visit(household_id, checkin, rng.random_range(3..80), gps);
            if rng.random_range(0..6) == 0 {
                planned.mode = VisitMode::Phone;
                planned.exception_reason = Some(VisitExceptionReason::Other);
            }
            let photos: Vec<PhotoRecord> = (0..rng.random_range(0..3))
                .map(|_| {
                    photo_record(
                        &planned.visit_id,
                        &pictures[rng.random_range(0..pictures.len())],
                    )
                })
                .collect();
            planned.photo_ids = photos.iter().map(|photo| photo.photo_id.clone()).collect();
            queue.push((planned, photos));
        }
        let _ = index;
        queues.push(queue);
    }

    let mut step = 0;
    while queues.iter().any(|queue| !queue.is_empty()) {
        step += 1;
        let index = rng.random_range(0..cadres.len());
        if queues[index].is_empty() {
            continue;
        }
        let take = rng.random_range(1..=queues[index].len().min(6));
        let batch: Vec<(Visit, Vec<PhotoRecord>)> = queues[index].drain(..take).collect();
        let mut payloads = Vec::new();
        let mut visit_ids = Vec::new();
        let mut sha256s = Vec::new();
        for (planned, photos) in &batch {
            payloads.push(submit(planned));
            visit_ids.push(planned.visit_id.clone());
            for record in photos {
                payloads.push(add_photo(record));
                visit_ids.push(planned.visit_id.clone());
                sha256s.push(record.sha256.clone());
            }
        }
        let cadre = &mut cadres[index];
        cadre.next_seq = push_applied(
            &server,
            &cadre.token,
            &cadre.device,
            cadre.next_seq,
            payloads,
        )
        .await;
        for (planned, photos) in batch {
            oracle
                .visits
                .insert(planned.visit_id.clone(), (index, planned));
            oracle.photos.extend(photos);
        }
        oracle.pushed(&visit_ids, &sha256s);
        assert_flags_match(&server, &oracle, &format!("seed {seed} push {step}")).await;

        // Sometimes a revision: an earlier visit corrected, moved in time and place.
        if rng.random_range(0..4) == 0 {
            let mine: Vec<String> = oracle
                .visits
                .values()
                .filter(|(cadre_index, _)| *cadre_index == index)
                .map(|(_, visit)| visit.visit_id.clone())
                .collect();
            if !mine.is_empty() {
                let chosen = &mine[rng.random_range(0..mine.len())];
                let (_, previous) = oracle.visits[chosen].clone();
                let mut revised = previous.clone();
                revised.revision = previous.revision + 1;
                revised.supersedes_revision = previous.revision;
                revised.checkin_at =
                    previous.checkin_at + Duration::minutes(rng.random_range(-300..300));
                revised.checkout_at =
                    revised.checkin_at + Duration::minutes(rng.random_range(3..80));
                revised.gps = previous.gps.map(|gps| GpsFix {
                    lat: gps.lat + rng.random_range(-0.2..0.2),
                    ..gps
                });
                let cadre = &mut cadres[index];
                cadre.next_seq = push_applied(
                    &server,
                    &cadre.token,
                    &cadre.device,
                    cadre.next_seq,
                    vec![submit(&revised)],
                )
                .await;
                oracle
                    .visits
                    .insert(revised.visit_id.clone(), (index, revised.clone()));
                oracle.pushed(std::slice::from_ref(&revised.visit_id), &[]);
                assert_flags_match(&server, &oracle, &format!("seed {seed} revision {step}")).await;
            }
        }

        // Sometimes an upload completes after the push that named it.
        if rng.random_range(0..3) == 0 {
            let waiting: Vec<usize> = (0..pictures.len())
                .filter(|index| !uploaded[*index])
                .collect();
            if !waiting.is_empty() {
                let chosen = waiting[rng.random_range(0..waiting.len())];
                uploaded[chosen] = true;
                let bytes = &pictures[chosen];
                upload(&server, &cadres[index].token, bytes).await;
                let sha256 = sha256_hex(bytes);
                oracle.uploaded(&sha256, metas[&sha256].clone());
                assert_flags_match(&server, &oracle, &format!("seed {seed} upload {step}")).await;
            }
        }
    }
    assert!(
        oracle.expected.values().any(|flags| flags
            .iter()
            .any(|flag| matches!(flag, EvidenceFlag::ImpossibleTravel { .. }))),
        "seed {seed}: the scenario exercises the travel rule"
    );
    assert!(
        oracle
            .expected
            .values()
            .any(|flags| flags.iter().any(|flag| matches!(
                flag,
                EvidenceFlag::PhotoReused { .. } | EvidenceFlag::PhotoNearDuplicate { .. }
            ))),
        "seed {seed}: the scenario exercises shared and near-identical photos"
    );
    let late = |flags: &Vec<EvidenceFlag>| {
        flags
            .iter()
            .any(|flag| matches!(flag, EvidenceFlag::LateRecord { .. }))
    };
    assert!(
        oracle.expected.values().any(late) && !oracle.expected.values().all(late),
        "seed {seed}: the scenario has late records (补录) and timely ones"
    );
}

#[tokio::test]
async fn batched_flags_equal_the_pure_rules_on_seeded_random_scenarios() {
    for seed in [11, 12, 13] {
        run_scenario(seed).await;
    }
}

#[tokio::test]
async fn a_late_push_between_two_visits_flags_the_earlier_neighbours_travel() {
    let server = TestServer::start().await;
    let mut oracle = Oracle::default();
    let mut cadre = cadre(&server, "cadre01", &mut oracle).await;
    let (household, home) = cadre.households[0].clone();
    let home = home.expect("demo households have a location");
    // Morning at home, afternoon at home: nothing wrong.
    let morning = visit(
        &household,
        BASE,
        30,
        Some(point_near(&home, 0.0, 0.0, Crs::Wgs84)),
    );
    let evening = visit(
        &household,
        BASE + Duration::hours(6),
        30,
        Some(point_near(&home, 0.0, 0.0, Crs::Wgs84)),
    );
    cadre.next_seq = push_applied(
        &server,
        &cadre.token,
        &cadre.device,
        cadre.next_seq,
        vec![submit(&morning), submit(&evening)],
    )
    .await;
    let travel_of = |flags: &[EvidenceFlag]| {
        flags
            .iter()
            .any(|flag| matches!(flag, EvidenceFlag::ImpossibleTravel { .. }))
    };
    assert!(!travel_of(&stored_flags(&server, &morning.visit_id).await));
    // Synced late: 50 km away, 10 minutes after the morning visit ended.
    let far = visit(
        &household,
        BASE + Duration::minutes(40),
        20,
        Some(point_near(&home, 50_000.0, 0.0, Crs::Wgs84)),
    );
    push_applied(
        &server,
        &cadre.token,
        &cadre.device,
        cadre.next_seq,
        vec![submit(&far)],
    )
    .await;
    let morning_flags = stored_flags(&server, &morning.visit_id).await;
    assert!(
        morning_flags.iter().any(|flag| matches!(
            flag,
            EvidenceFlag::ImpossibleTravel { previous_visit_id, next_visit_id, .. }
                if *previous_visit_id == morning.visit_id && *next_visit_id == far.visit_id
        )),
        "the earlier neighbour now shows the impossible trip: {morning_flags:?}"
    );
    assert!(travel_of(&stored_flags(&server, &far.visit_id).await));
}

#[tokio::test]
async fn an_upload_completing_shows_the_reused_file_on_the_other_visit() {
    let server = TestServer::start().await;
    let mut oracle = Oracle::default();
    let mut cadre = cadre(&server, "cadre01", &mut oracle).await;
    let bytes = jpeg(7, "reused");
    let mut first = visit(&cadre.households[0].0, BASE, 30, None);
    let mut second = visit(&cadre.households[1].0, BASE + Duration::hours(2), 30, None);
    let first_photo = photo_record(&first.visit_id, &bytes);
    let second_photo = photo_record(&second.visit_id, &bytes);
    first.photo_ids = vec![first_photo.photo_id.clone()];
    second.photo_ids = vec![second_photo.photo_id.clone()];
    cadre.next_seq = push_applied(
        &server,
        &cadre.token,
        &cadre.device,
        cadre.next_seq,
        vec![
            submit(&first),
            add_photo(&first_photo),
            submit(&second),
            add_photo(&second_photo),
        ],
    )
    .await;
    let reused = |flags: &[EvidenceFlag], other: &str| {
        flags.iter().any(|flag| {
            matches!(
                flag,
                EvidenceFlag::PhotoReused { other_visit_id, .. } if other_visit_id == other
            )
        })
    };
    assert!(!reused(
        &stored_flags(&server, &second.visit_id).await,
        &first.visit_id
    ));
    upload(&server, &cadre.token, &bytes).await;
    let first_flags = stored_flags(&server, &first.visit_id).await;
    assert!(reused(&first_flags, &second.visit_id), "{first_flags:?}");
    assert!(reused(
        &stored_flags(&server, &second.visit_id).await,
        &first.visit_id
    ));
}

#[tokio::test]
async fn the_per_day_limit_reaches_the_days_earlier_visits() {
    let server = TestServer::start().await;
    let mut oracle = Oracle::default();
    let mut cadre = cadre(&server, "cadre01", &mut oracle).await;
    let limit = server.state.settings.evidence.max_in_person_visits_per_day;
    let household = cadre.households[0].0.clone();
    let day: Vec<Visit> = (0..limit)
        .map(|index| {
            visit(
                &household,
                BASE + Duration::minutes(40 * i64::from(index)),
                20,
                None,
            )
        })
        .collect();
    cadre.next_seq = push_applied(
        &server,
        &cadre.token,
        &cadre.device,
        cadre.next_seq,
        day.iter().map(submit).collect(),
    )
    .await;
    let too_many = |flags: &[EvidenceFlag]| {
        flags
            .iter()
            .any(|flag| matches!(flag, EvidenceFlag::TooManyVisitsInDay { .. }))
    };
    assert!(!too_many(&stored_flags(&server, &day[0].visit_id).await));
    // One more that evening, pushed later: the day crosses the limit, so the morning's
    // first visit (not a travel neighbour of the new one) is flagged too.
    let extra = visit(&household, BASE + Duration::hours(11), 20, None);
    push_applied(
        &server,
        &cadre.token,
        &cadre.device,
        cadre.next_seq,
        vec![submit(&extra)],
    )
    .await;
    assert!(too_many(&stored_flags(&server, &day[0].visit_id).await));
    assert!(too_many(&stored_flags(&server, &extra.visit_id).await));
}

#[tokio::test]
async fn a_push_of_many_visits_is_one_durable_write_transaction() {
    let server = TestServer::start().await;
    let mut oracle = Oracle::default();
    let mut cadre = cadre(&server, "cadre01", &mut oracle).await;
    let mut commits_of_push = Vec::new();
    for size in [1usize, 40] {
        let payloads: Vec<v1::mutation::Payload> = (0..size)
            .map(|index| {
                let (household, home) = &cadre.households[index % cadre.households.len()];
                let gps = home
                    .as_ref()
                    .map(|home| point_near(home, 30.0, 0.0, Crs::Gcj02));
                submit(&visit(
                    household,
                    BASE + Duration::minutes(50 * index as i64),
                    30,
                    gps,
                ))
            })
            .collect();
        let before = server.state.store.committed_writes();
        cadre.next_seq = push_applied(
            &server,
            &cadre.token,
            &cadre.device,
            cadre.next_seq,
            payloads,
        )
        .await;
        commits_of_push.push(server.state.store.committed_writes() - before);
    }
    // The Push RPC commits the batch (with its flags) once; the session and heartbeat
    // bookkeeping around it is the same for 1 visit and for 40.
    assert_eq!(
        commits_of_push[0], commits_of_push[1],
        "a push of 40 visits commits as often as a push of one: {commits_of_push:?}"
    );
    assert!(
        commits_of_push[0] <= 2,
        "one commit for the batch and its flags, at most one for the session: {commits_of_push:?}"
    );
}
