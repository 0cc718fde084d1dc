//! Photo completion benchmark (issue 11 §5, "Thumbnails"): the work upload completion really
//! does, against libvips producing the same two outputs, in the same run, one core each.
//!
//! - fieldsync: `media::pipeline::vet_and_store_photo`, the one function `media::uploads::complete`
//!   runs in its blocking task (verify the staged upload's size and SHA-256,
//!   `photo::prepare_file(…, DISPLAY_LONGEST_SIDE)`: one decode gives the 1600 px display
//!   copy, the 320 px thumbnail and the pHash; publish the blob; write and fsync both derived
//!   copies). The image work alone (`photo::prepare_file`) is timed too.
//! - vips: `vipsthumbnail` making a 1600 px display JPEG (q85) and a 320 px thumbnail (q80),
//!   upright and stripped, in two ways: the thumbnail from the 1600 px copy (a chain, like
//!   fieldsync) or from the original (shrink-on-load twice). The faster one is the reference.
//!   vips computes no pHash and fsyncs nothing.
//! - Corpus: the real photos in `testdata/photos` (plus any folder in `THUMBS_PHOTO_DIRS`,
//!   colon-separated; byte-identical files are counted once) and eight generated 12 MP
//!   phone-like JPEGs. Files production refuses are listed with the refusal and skipped.
//! - Memory: anonymous memory at the peak (gdb, VmHWM − RssFile) and whole-process max RSS of
//!   one completion per process against the two vips processes.
//! - Bombs: refusal time of `photo::inspect` and of `photo::prepare_file` on a file.
//!
//! Prints a Markdown report for BENCHMARKS.md. Run (release, pinned to one core):
//!     cargo bench -p fieldsync-server --bench thumbnails --no-run
//!     taskset -c 0 cargo bench -p fieldsync-server --bench thumbnails
//!
//! `thumbnails --complete-one BLOB_DIR UPLOAD_ID SHA256 SIZE` completes one staged upload with
//! `vet_and_store_photo` and exits; the memory tables run the binary that way.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fieldsync_server::media::blobs::LocalBlobStore;
use fieldsync_server::media::photo::{
    self, Limits, THUMBNAIL_JPEG_QUALITY, THUMBNAIL_LONGEST_SIDE, synthetic,
};
use fieldsync_server::media::pipeline::{DISPLAY_LONGEST_SIDE, vet_and_store_photo};
use sha2::{Digest, Sha256};

const WIDTH: u16 = 4000;
const HEIGHT: u16 = 3000;
const SYNTHETIC_COUNT: usize = 8;
/// Timed runs per file and tool; the median is reported.
const ROUNDS: usize = 5;
/// Small files are over in a few milliseconds: more runs, so vips's start-up (subtracted)
/// does not drown them.
const ROUNDS_SMALL: usize = 20;
const SMALL_PIXELS: u64 = 4_000_000;
const BOMB_RUNS: usize = 200;
const MEMORY_RUNS: usize = 7;
/// The client core's upload chunk: the bench stages files the way PutChunk does.
const CHUNK: usize = 256 * 1024;
/// Must match `photo::DISPLAY_JPEG_QUALITY`, which is what production encodes with.
const DISPLAY_QUALITY: u8 = photo::DISPLAY_JPEG_QUALITY;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--complete-one") {
        let blobs = LocalBlobStore::open(Path::new(&args[at + 1])).expect("blob dir");
        let size: u64 = args[at + 4].parse().expect("size");
        vet_and_store_photo(&blobs, &args[at + 2], &args[at + 3], size)
            .expect("blob I/O")
            .expect("photo accepted");
        return;
    }

    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and a test run must not spend minutes on 12 MP photos.
    if !args.iter().any(|arg| arg == "--bench") {
        println!("thumbnails: benchmark skipped (run it with `cargo bench`)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    println!("## Photo completion vs vips — run of {}", today());
    println!();
    machine();
    let corpus = corpus(dir.path());
    if args.iter().any(|arg| arg == "--memory-only") {
        memory(dir.path(), &corpus);
        return;
    }
    throughput(dir.path(), &corpus);
    memory(dir.path(), &corpus);
    bombs(dir.path());
    println!("Load average at the end: `{}`.", loadavg());
    println!();
}

fn today() -> String {
    Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn machine() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let allowed = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .map(|list| list.trim().to_owned())
        .unwrap_or_default();
    let vips = Command::new("vipsthumbnail")
        .arg("--vips-version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|_| "not installed".to_owned());
    println!(
        "Machine: {} logical CPU(s) available to this process ({model}), CPUs `{allowed}` \
         (nproc of the box: {}); build: {}; vipsthumbnail: {vips}. Load average at the \
         start: `{}`.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        loadavg(),
    );
    println!();
}

#[derive(Clone, Copy, PartialEq)]
enum Group {
    Real,
    Synthetic,
}

struct Item {
    name: String,
    path: PathBuf,
    group: Group,
    bytes: u64,
    sha256: String,
    width: u32,
    height: u32,
    progressive: bool,
    orientation: Option<u16>,
    camera: String,
    /// Upright sizes of fieldsync's display copy and thumbnail.
    display: (u32, u32),
    thumbnail: (u32, u32),
}

impl Item {
    fn rounds(&self) -> usize {
        if u64::from(self.width) * u64::from(self.height) >= SMALL_PIXELS {
            ROUNDS
        } else {
            ROUNDS_SMALL
        }
    }
}

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(
        std::fs::read(path).expect("read corpus file"),
    ))
}

/// Real photos first (testdata/photos, then `THUMBS_PHOTO_DIRS`), then the generated set.
/// Each file goes through production's `prepare_file` once: that gives its facts, and a
/// refusal takes it out of the corpus (listed with the reason).
fn corpus(dir: &Path) -> Vec<Item> {
    let mut folders = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/photos")];
    if let Ok(extra) = std::env::var("THUMBS_PHOTO_DIRS") {
        folders.extend(
            extra
                .split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        );
    }
    let mut candidates: Vec<(PathBuf, Group)> = Vec::new();
    for folder in &folders {
        let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                    .filter(|path| {
                        path.extension().is_some_and(|ext| {
                            ext.eq_ignore_ascii_case("jpg") || ext.eq_ignore_ascii_case("jpeg")
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        candidates.extend(files.into_iter().map(|path| (path, Group::Real)));
    }
    let started = Instant::now();
    candidates.extend(
        generate_synthetic(dir)
            .into_iter()
            .map(|p| (p, Group::Synthetic)),
    );
    let generated_in = started.elapsed().as_secs_f64();

    let mut items: Vec<Item> = Vec::new();
    let mut refused = Vec::new();
    let mut duplicates = Vec::new();
    for (path, group) in candidates {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let sha256 = sha256_of(&path);
        if items.iter().any(|item| item.sha256 == sha256) {
            duplicates.push(path.display().to_string());
            continue;
        }
        let prepared = match photo::prepare_file(&path, &Limits::default(), DISPLAY_LONGEST_SIDE)
            .expect("read corpus file")
        {
            Ok(prepared) => prepared,
            Err(rejected) => {
                refused.push(format!("`{name}`: `{}` ({rejected})", rejected.code()));
                continue;
            }
        };
        let exif = prepared.exif.clone().unwrap_or_default();
        let camera = match (exif.make, exif.model) {
            (Some(make), Some(model)) => format!("{} {}", make.trim(), model.trim()),
            (Some(one), None) | (None, Some(one)) => one.trim().to_owned(),
            (None, None) if group == Group::Synthetic => "generated".to_owned(),
            (None, None) => "no EXIF make/model".to_owned(),
        };
        items.push(Item {
            name,
            bytes: std::fs::metadata(&path).unwrap().len(),
            sha256,
            width: prepared.inspected.width,
            height: prepared.inspected.height,
            progressive: prepared.inspected.progressive,
            orientation: exif.orientation,
            camera,
            display: jpeg_size(&prepared.display_jpeg),
            thumbnail: jpeg_size(&prepared.thumbnail_jpeg),
            path,
            group,
        });
    }

    println!(
        "Corpus: the real photos of `testdata/photos`{} and {SYNTHETIC_COUNT} generated \
         {WIDTH}×{HEIGHT} (12 MP) phone-like JPEGs (4:2:0, quality 90, seeded gradients + \
         texture + sensor noise, made in {generated_in:.1} s). Facts as production's \
         `prepare_file` read them:",
        if folders.len() > 1 {
            format!(
                " plus `{}`",
                folders[1..]
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join("`, `")
            )
        } else {
            String::new()
        }
    );
    println!();
    println!(
        "| file | camera (EXIF make, model) | pixels | coding | EXIF orientation | size | display copy | thumbnail |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for item in &items {
        println!(
            "| {} | {} | {}×{} | {} | {} | {:.2} MB | {}×{} | {}×{} |",
            item.name,
            item.camera,
            item.width,
            item.height,
            if item.progressive {
                "progressive"
            } else {
                "baseline"
            },
            item.orientation
                .map_or("none".to_owned(), |o| o.to_string()),
            item.bytes as f64 / 1e6,
            item.display.0,
            item.display.1,
            item.thumbnail.0,
            item.thumbnail.1,
        );
    }
    println!();
    if !refused.is_empty() {
        println!(
            "Refused by production (not benchmarked): {}.",
            refused.join("; ")
        );
        println!();
    }
    if !duplicates.is_empty() {
        println!(
            "Byte-identical to a file above, counted once: {}.",
            duplicates.join(", ")
        );
        println!();
    }
    items
}

fn jpeg_size(jpeg: &[u8]) -> (u32, u32) {
    let inspected = photo::inspect(jpeg, &Limits::default()).expect("own output is a JPEG");
    (inspected.width, inspected.height)
}

/// xorshift64*: deterministic, dependency-free noise.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A phone-like scene: a sky-to-ground gradient, a few walls and windows (edges), fine
/// texture and sensor noise. High enough entropy that the JPEG is 3–6 MB, like a phone's.
fn scene(seed: u64) -> Vec<u8> {
    let (w, h) = (usize::from(WIDTH), usize::from(HEIGHT));
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0x1000_0000_01B3));
    let tint = [
        (rng.next() % 80) as i32,
        (rng.next() % 80) as i32,
        (rng.next() % 80) as i32,
    ];
    let boxes: Vec<(usize, usize, usize, usize, [i32; 3])> = (0..24)
        .map(|_| {
            let x = (rng.next() as usize) % w;
            let y = (rng.next() as usize) % h;
            let bw = 100 + (rng.next() as usize) % 900;
            let bh = 100 + (rng.next() as usize) % 700;
            let colour = [
                (rng.next() % 256) as i32,
                (rng.next() % 256) as i32,
                (rng.next() % 256) as i32,
            ];
            (x, y, bw, bh, colour)
        })
        .collect();
    let mut pixels = vec![0u8; w * h * 3];
    for y in 0..h {
        let sky = (y * 255 / h) as i32;
        for x in 0..w {
            let mut rgb = [
                200 - sky / 2 + tint[0],
                180 - sky / 3 + tint[1],
                120 + sky / 2 - tint[2],
            ];
            for &(bx, by, bw, bh, colour) in &boxes {
                if x >= bx && x < bx + bw && y >= by && y < by + bh {
                    rgb = colour;
                }
            }
            // Texture: brick-like stripes plus per-pixel noise.
            let texture = if (x / 7 + y / 5) % 3 == 0 { 12 } else { 0 };
            let noise = rng.next();
            let base = (y * w + x) * 3;
            for (channel, value) in rgb.iter().enumerate() {
                let jitter = ((noise >> (channel * 8)) & 0x1F) as i32 - 16;
                pixels[base + channel] = (value + texture + jitter).clamp(0, 255) as u8;
            }
        }
    }
    pixels
}

/// Half baseline, half progressive; half of each with EXIF orientation 6.
fn generate_synthetic(dir: &Path) -> Vec<PathBuf> {
    (0..SYNTHETIC_COUNT)
        .map(|index| {
            let progressive = index % 2 == 1;
            let orientation = (index % 4 >= 2).then_some(6u16);
            let pixels = scene(index as u64);
            let mut jpeg = Vec::new();
            let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, 90);
            encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
            encoder.set_progressive(progressive);
            encoder
                .encode(&pixels, WIDTH, HEIGHT, jpeg_encoder::ColorType::Rgb)
                .expect("encode corpus image");
            if let Some(orientation) = orientation {
                jpeg = synthetic::with_app1(&jpeg, &synthetic::exif_orientation(orientation));
            }
            let path = dir.join(format!(
                "phone{index}_{}{}.jpg",
                if progressive { "prog" } else { "base" },
                if orientation.is_some() { "_o6" } else { "" }
            ));
            std::fs::write(&path, &jpeg).expect("write corpus");
            path
        })
        .collect()
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Stage `path` as an upload in a fresh blob folder under `root`, the way PutChunk does it
/// (256 KiB chunks, each fsynced), so completion finds what it finds in production.
fn stage(root: &Path, item: &Item) -> (LocalBlobStore, String) {
    let _ = std::fs::remove_dir_all(root);
    let blobs = LocalBlobStore::open(root).expect("blob dir");
    let upload_id = uuid::Uuid::now_v7().to_string();
    let bytes = std::fs::read(&item.path).expect("read corpus file");
    let mut offset = 0u64;
    for chunk in bytes.chunks(CHUNK) {
        offset = blobs
            .append_chunk(&upload_id, offset, chunk)
            .expect("stage chunk");
    }
    (blobs, upload_id)
}

fn vips_available() -> bool {
    Command::new("vipsthumbnail")
        .arg("--vips-version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// The vips commands. `%s` is the input's name without extension.
fn vips_display(out: &Path, inputs: &[PathBuf]) -> Command {
    let mut command = Command::new("vipsthumbnail");
    command
        .env("VIPS_CONCURRENCY", "1")
        .arg("--size")
        .arg(format!("{DISPLAY_LONGEST_SIDE}x{DISPLAY_LONGEST_SIDE}>"))
        .arg("-o")
        .arg(format!(
            "{}/d_%s.jpg[Q={DISPLAY_QUALITY},strip]",
            out.display()
        ))
        .args(inputs);
    command
}

fn vips_thumbnail(out: &Path, prefix: &str, inputs: &[PathBuf]) -> Command {
    let mut command = Command::new("vipsthumbnail");
    command
        .env("VIPS_CONCURRENCY", "1")
        .arg("--size")
        .arg(format!(
            "{THUMBNAIL_LONGEST_SIDE}x{THUMBNAIL_LONGEST_SIDE}>"
        ))
        .arg("-o")
        .arg(format!(
            "{}/{prefix}_%s.jpg[Q={THUMBNAIL_JPEG_QUALITY},strip]",
            out.display()
        ))
        .args(inputs);
    command
}

/// Wall time of one command, which must succeed.
fn wall_of(command: &mut Command) -> f64 {
    let started = Instant::now();
    let output = command.output().expect("run command");
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        output.status.success(),
        "{:?} failed: {}",
        command,
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

fn tiny_jpeg(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.jpg");
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, 80)
        .encode(&[128u8; 16 * 16 * 3], 16, 16, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    std::fs::write(&path, jpeg).unwrap();
    path
}

/// Which corpus files an aggregate row adds up.
type Membership = fn(&Item) -> bool;

struct Timing {
    prepare: f64,
    complete: f64,
    vips_chain: Option<f64>,
    vips_twice: Option<f64>,
    vips_display_bytes: u64,
    fieldsync_display_bytes: u64,
}

impl Timing {
    fn vips_best(&self) -> Option<f64> {
        match (self.vips_chain, self.vips_twice) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn throughput(dir: &Path, corpus: &[Item]) {
    let vips = vips_available();
    let scratch = dir.join("scratch");
    let vips_root = dir.join("vips");
    // vips's start-up, per process: the smallest of a few runs on a 16×16 JPEG.
    let tiny = tiny_jpeg(dir);
    let startup = if vips {
        std::fs::create_dir_all(vips_root.join("tiny")).unwrap();
        let out = vips_root.join("tiny");
        (0..5)
            .map(|_| wall_of(&mut vips_thumbnail(&out, "t", std::slice::from_ref(&tiny))))
            .fold(f64::MAX, f64::min)
    } else {
        0.0
    };

    let mut timings = Vec::new();
    for item in corpus {
        let rounds = item.rounds();
        let limits = Limits::default();
        // Warm-up (page cache, code) then the image work alone.
        let warm = photo::prepare_file(&item.path, &limits, DISPLAY_LONGEST_SIDE)
            .unwrap()
            .unwrap();
        let prepare = median(
            (0..rounds)
                .map(|_| {
                    let started = Instant::now();
                    std::hint::black_box(
                        photo::prepare_file(&item.path, &limits, DISPLAY_LONGEST_SIDE)
                            .unwrap()
                            .unwrap(),
                    );
                    started.elapsed().as_secs_f64()
                })
                .collect(),
        );
        // The whole blocking step of completion, on a freshly staged upload each time.
        let complete = median(
            (0..rounds)
                .map(|_| {
                    let (blobs, upload_id) = stage(&scratch, item);
                    let started = Instant::now();
                    let prepared =
                        vet_and_store_photo(&blobs, &upload_id, &item.sha256, item.bytes)
                            .expect("blob I/O")
                            .expect("accepted");
                    let elapsed = started.elapsed().as_secs_f64();
                    assert!(blobs.contains(&item.sha256));
                    std::hint::black_box(prepared);
                    elapsed
                })
                .collect(),
        );
        let _ = std::fs::remove_dir_all(&scratch);

        let mut timing = Timing {
            prepare,
            complete,
            vips_chain: None,
            vips_twice: None,
            vips_display_bytes: 0,
            fieldsync_display_bytes: warm.display_jpeg.len() as u64,
        };
        if vips {
            // `rounds` hard links with distinct names per process: libvips caches operations
            // by file name, and must decode every copy.
            let input = vips_root.join(format!("in_{}", item.sha256));
            let out = vips_root.join(format!("out_{}", item.sha256));
            std::fs::create_dir_all(&input).unwrap();
            std::fs::create_dir_all(&out).unwrap();
            let copies: Vec<PathBuf> = (0..rounds)
                .map(|k| {
                    let copy = input.join(format!("c{k}.jpg"));
                    // A copy where a link cannot cross file systems (a tmpfs /tmp).
                    if std::fs::hard_link(&item.path, &copy).is_err() {
                        std::fs::copy(&item.path, &copy).unwrap();
                    }
                    copy
                })
                .collect();
            let displays: Vec<PathBuf> = (0..rounds)
                .map(|k| out.join(format!("d_c{k}.jpg")))
                .collect();
            let per_image = |wall: f64| ((wall - startup) / rounds as f64).max(0.0);
            // Warm-up, and the outputs checked against fieldsync's.
            wall_of(&mut vips_display(&out, &copies));
            wall_of(&mut vips_thumbnail(&out, "t", &displays));
            wall_of(&mut vips_thumbnail(&out, "o", &copies));
            check_vips_outputs(item, &out);
            timing.vips_display_bytes = std::fs::metadata(&displays[0]).unwrap().len();
            let (mut display, mut from_display, mut from_original) =
                (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..3 {
                display.push(per_image(wall_of(&mut vips_display(&out, &copies))));
                from_display.push(per_image(wall_of(&mut vips_thumbnail(
                    &out, "t", &displays,
                ))));
                from_original.push(per_image(wall_of(&mut vips_thumbnail(&out, "o", &copies))));
            }
            let display = median(display);
            timing.vips_chain = Some(display + median(from_display));
            timing.vips_twice = Some(display + median(from_original));
            let _ = std::fs::remove_dir_all(&input);
            let _ = std::fs::remove_dir_all(&out);
        }
        timings.push(timing);
    }

    println!("### Completion time per photo (one core)");
    println!();
    println!(
        "Per file, the median of {ROUNDS} runs ({ROUNDS_SMALL} for files under 4 MP), page \
         cache warm for both tools.\n\n\
         - **`prepare_file`**: `photo::prepare_file(path, &Limits::default(), \
         DISPLAY_LONGEST_SIDE = {DISPLAY_LONGEST_SIDE})` in-process: header walk with the \
         limits, one scaled decode, the {DISPLAY_LONGEST_SIDE} px display copy (q{DISPLAY_QUALITY}), \
         the {THUMBNAIL_LONGEST_SIDE} px thumbnail (q{THUMBNAIL_JPEG_QUALITY}) resized from it, \
         the pHash from the thumbnail; both JPEGs in memory.\n\
         - **completion**: `media::pipeline::vet_and_store_photo`, the function `media::uploads::complete` runs \
         in its blocking task, on an upload staged before the clock starts (256 KiB chunks, \
         each fsynced, as PutChunk does): SHA-256 and size check of the staged file, \
         `prepare_file`, publish (fsync, rename, directory fsync), both derived copies written \
         and fsynced: 4 fsyncs.\n\
         - **vips chain**: `VIPS_CONCURRENCY=1 vipsthumbnail --size '{DISPLAY_LONGEST_SIDE}x{DISPLAY_LONGEST_SIDE}>' \
         -o d_%s.jpg[Q={DISPLAY_QUALITY},strip] <copies>`, then `vipsthumbnail --size \
         '{THUMBNAIL_LONGEST_SIDE}x{THUMBNAIL_LONGEST_SIDE}>' -o t_%s.jpg[Q={THUMBNAIL_JPEG_QUALITY},strip] \
         <the display files>`: the thumbnail from the display copy, as fieldsync does.\n\
         - **vips twice**: the same display command, then the thumbnail command on the \
         original copies (shrink-on-load both times).\n\n\
         Each vips process gets {ROUNDS} (or {ROUNDS_SMALL}) hard links of the file under \
         distinct names (libvips caches by file name), so its start-up is amortised; the \
         start-up of a process on a 16×16 JPEG ({:.1} ms, the fastest of 5) is subtracted \
         once per process. `>` means shrink only, like fieldsync, which never enlarges. \
         Both tools rotate per EXIF and write no metadata; vips computes no pHash and \
         fsyncs nothing. **Ratio = vips time / fieldsync time** against the faster vips \
         way for that file (≥ 1.0: fieldsync as fast or faster).",
        startup * 1e3
    );
    println!();
    if !vips {
        println!("**vipsthumbnail is not installed: no comparison in this run.**");
        println!();
    }
    println!(
        "| file | `prepare_file` | completion | vips chain | vips twice | ratio vips / `prepare_file` | ratio vips / completion | display bytes fieldsync / vips |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let ms = |value: Option<f64>| value.map_or("n/a".to_owned(), |v| format!("{:.1} ms", v * 1e3));
    let ratio = |theirs: Option<f64>, ours: f64| {
        theirs.map_or("n/a".to_owned(), |t| {
            let value = t / ours;
            if value < 1.0 {
                format!("**{value:.2}×**")
            } else {
                format!("{value:.2}×")
            }
        })
    };
    for (item, timing) in corpus.iter().zip(&timings) {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} KB |",
            item.name,
            ms(Some(timing.prepare)),
            ms(Some(timing.complete)),
            ms(timing.vips_chain),
            ms(timing.vips_twice),
            ratio(timing.vips_best(), timing.prepare),
            ratio(timing.vips_best(), timing.complete),
            timing.fieldsync_display_bytes / 1000,
            timing.vips_display_bytes / 1000,
        );
    }
    println!();
    println!(
        "Aggregate: sums of the per-file medians (one photo of each file); ratios in bold are \
         below 1.0."
    );
    println!();
    println!(
        "| set | files | `prepare_file` | completion | vips (faster way per file) | ratio vips / `prepare_file` | ratio vips / completion |"
    );
    println!("|---|---|---|---|---|---|---|");
    let groups: [(&str, Membership); 4] = [
        ("real photos", |item| item.group == Group::Real),
        ("real photos ≥ 4 MP", |item| {
            item.group == Group::Real
                && u64::from(item.width) * u64::from(item.height) >= SMALL_PIXELS
        }),
        ("generated 12 MP", |item| item.group == Group::Synthetic),
        ("all", |_| true),
    ];
    for (label, member) in groups {
        let chosen: Vec<&Timing> = corpus
            .iter()
            .zip(&timings)
            .filter(|(item, _)| member(item))
            .map(|(_, timing)| timing)
            .collect();
        if chosen.is_empty() {
            continue;
        }
        let prepare: f64 = chosen.iter().map(|t| t.prepare).sum();
        let complete: f64 = chosen.iter().map(|t| t.complete).sum();
        let vips_sum: Option<f64> = chosen.iter().map(|t| t.vips_best()).sum();
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} |",
            chosen.len(),
            ms(Some(prepare)),
            ms(Some(complete)),
            ms(vips_sum),
            ratio(vips_sum, prepare),
            ratio(vips_sum, complete),
        );
    }
    println!();
}

/// vips's outputs must be the same two pictures: same upright orientation, within a pixel of
/// fieldsync's sizes (the two round the shorter side differently).
fn check_vips_outputs(item: &Item, out: &Path) {
    let close = |a: (u32, u32), b: (u32, u32)| a.0.abs_diff(b.0) <= 1 && a.1.abs_diff(b.1) <= 1;
    let size = |path: PathBuf| {
        let bytes = std::fs::read(&path).unwrap();
        jpeg_size(&bytes)
    };
    let display = size(out.join("d_c0.jpg"));
    let chain = size(out.join("t_d_c0.jpg"));
    let twice = size(out.join("o_c0.jpg"));
    assert!(
        close(display, item.display),
        "{}: vips display {display:?}, fieldsync {:?}",
        item.name,
        item.display
    );
    assert!(
        close(chain, item.thumbnail) && close(twice, item.thumbnail),
        "{}: vips thumbnails {chain:?} / {twice:?}, fieldsync {:?}",
        item.name,
        item.thumbnail
    );
}

// ---------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------

/// Commands for one measured unit of work: fieldsync's completion is one process (its upload
/// staged first, outside the process), vips's two outputs are two processes run one after
/// the other (the chain: display, then the thumbnail from it).
fn unit_commands(fieldsync: bool, item: &Item, work: &Path) -> Vec<Command> {
    if fieldsync {
        let root = work.join("blobs");
        let (_, upload_id) = stage(&root, item);
        let mut command = Command::new(std::env::current_exe().expect("own path"));
        command
            .arg("--complete-one")
            .arg(&root)
            .arg(upload_id)
            .arg(&item.sha256)
            .arg(item.bytes.to_string());
        vec![command]
    } else {
        let out = work.join("vips");
        std::fs::create_dir_all(&out).unwrap();
        let input = [item.path.clone()];
        let stem = item
            .path
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let display = [out.join(format!("d_{stem}.jpg"))];
        vec![
            vips_display(&out, &input),
            vips_thumbnail(&out, "t", &display),
        ]
    }
}

/// (VmHWM, RssFile) in KiB, read from `/proc/PID/status` as the process calls `exit_group`,
/// with the process stopped there by gdb (gdb also turns address randomisation off, so the
/// reading repeats exactly). File-backed pages (the program's and libraries' code and
/// read-only data) only grow during a run, so VmHWM − RssFile-at-exit is the anonymous
/// memory (heap, stacks) at the peak, give or take the few code pages first touched after it.
fn peak_and_file_pages(command: &Command, script_path: &Path) -> Option<(u64, u64)> {
    let script = "python\n\
        pid = gdb.selected_inferior().pid\n\
        fields = dict((l.split()[0], l.split()[1]) for l in open('/proc/%d/status' % pid) if len(l.split()) > 1)\n\
        print('PEAK', fields['VmHWM:'], fields['RssFile:'])\n\
        end\n";
    std::fs::write(script_path, script).ok()?;
    let result = Command::new("gdb")
        .args([
            "-q",
            "-batch",
            "-ex",
            "catch syscall exit_group",
            "-ex",
            "run",
            "-x",
        ])
        .arg(script_path)
        .arg("--args")
        .arg(command.get_program())
        .args(command.get_args())
        .envs(
            command
                .get_envs()
                .filter_map(|(key, value)| Some((key.to_owned(), value?.to_owned()))),
        )
        .output()
        .ok()?;
    let stdout = String::from_utf8_lossy(&result.stdout);
    let line = stdout.lines().find(|line| line.starts_with("PEAK "))?;
    let mut numbers = line[5..].split_whitespace().filter_map(|n| n.parse().ok());
    Some((numbers.next()?, numbers.next()?))
}

/// Max RSS in KiB of one command, from `/usr/bin/time -f %M`.
fn max_rss(command: &Command) -> Option<u64> {
    let output = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("MAXRSS %M")
        .arg(command.get_program())
        .args(command.get_args())
        .envs(
            command
                .get_envs()
                .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
        )
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("MAXRSS "))
        .and_then(|value| value.trim().parse().ok())
}

fn tool_available(program: &str, flag: &str) -> bool {
    Command::new(program)
        .arg(flag)
        .output()
        .is_ok_and(|out| out.status.success())
}

/// The largest reading over a unit's processes (they run one after the other, so the unit's
/// peak is the largest process peak).
fn unit_anon_peak(fieldsync: bool, item: &Item, work: &Path) -> Option<(u64, u64)> {
    let script = work.join("peak.gdb");
    unit_commands(fieldsync, item, work)
        .iter()
        .map(|command| {
            peak_and_file_pages(command, &script)
                .map(|(peak, file)| (peak.saturating_sub(file), file))
        })
        .try_fold((0u64, 0u64), |(anon, file), reading| {
            let (a, f) = reading?;
            Some((anon.max(a), file.max(f)))
        })
}

fn unit_max_rss(fieldsync: bool, item: &Item, work: &Path) -> u64 {
    let mut readings: Vec<u64> = (0..MEMORY_RUNS)
        .filter_map(|_| {
            unit_commands(fieldsync, item, work)
                .iter()
                .map(max_rss)
                .try_fold(0u64, |most, rss| Some(most.max(rss?)))
        })
        .collect();
    readings.sort_unstable();
    readings.get(readings.len() / 2).copied().unwrap_or(0)
}

fn memory(dir: &Path, corpus: &[Item]) {
    println!("### Peak memory per photo completion");
    println!();
    let vips = vips_available();
    let gdb = tool_available("gdb", "--version");
    let work = dir.join("memory");
    std::fs::create_dir_all(&work).unwrap();
    // The 16×16 reference, run through the same two paths.
    let tiny_path = tiny_jpeg(dir);
    let tiny = Item {
        name: "16×16".to_owned(),
        bytes: std::fs::metadata(&tiny_path).unwrap().len(),
        sha256: sha256_of(&tiny_path),
        path: tiny_path,
        group: Group::Synthetic,
        width: 16,
        height: 16,
        progressive: false,
        orientation: None,
        camera: String::new(),
        display: (16, 16),
        thumbnail: (16, 16),
    };
    // Real photos and the first four generated files (baseline, progressive, each with and
    // without orientation 6).
    let chosen: Vec<&Item> = corpus
        .iter()
        .filter(|item| item.group == Group::Real)
        .chain(
            corpus
                .iter()
                .filter(|item| item.group == Group::Synthetic)
                .take(4),
        )
        .collect();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let ratio = |ours: f64, theirs: f64| {
        if vips && theirs > 0.0 {
            format!("{:.2}", ours / theirs)
        } else {
            "n/a".to_owned()
        }
    };
    println!(
        "fieldsync: `thumbnails --complete-one BLOB_DIR UPLOAD_ID SHA256 SIZE` (this benchmark \
         binary; `media::pipeline::vet_and_store_photo` on an upload staged before the process \
         starts). vips: the chain above as two processes, `VIPS_CONCURRENCY=1 vipsthumbnail \
         IN --size '{DISPLAY_LONGEST_SIDE}x{DISPLAY_LONGEST_SIDE}>' -o d_%s.jpg[Q={DISPLAY_QUALITY},strip]` \
         then the {THUMBNAIL_LONGEST_SIDE} px thumbnail from that output; they run one after \
         the other, so the pair's peak is the larger process's. Each delta is against the \
         same commands on a 16×16 JPEG, so it is what the photo adds."
    );
    println!();
    if gdb {
        println!(
            "**Anonymous memory at the peak** (heap and stacks: what each further photo in \
             flight costs; code pages are shared). VmHWM − RssFile from `/proc/PID/status` as \
             the process exits, stopped there by gdb (no address randomisation):"
        );
        println!();
        println!(
            "| file | pixels | fieldsync anon delta | vips anon delta | ratio fieldsync / vips |"
        );
        println!("|---|---|---|---|---|");
        let reading = |fieldsync: bool, item: &Item| {
            if !fieldsync && !vips {
                return 0;
            }
            unit_anon_peak(fieldsync, item, &work).map_or(0, |(anon, _)| anon)
        };
        let fs_base = reading(true, &tiny);
        let vips_base = reading(false, &tiny);
        for item in &chosen {
            let fs = mib(reading(true, item).saturating_sub(fs_base));
            let vp = mib(reading(false, item).saturating_sub(vips_base));
            println!(
                "| {} | {}×{} | {fs:.2} MB | {vp:.2} MB | {} |",
                item.name,
                item.width,
                item.height,
                ratio(fs, vp)
            );
        }
        println!();
    } else {
        println!("**gdb is not installed: no anonymous-memory reading in this run.**");
        println!();
    }
    println!(
        "**Whole-process max RSS** from `/usr/bin/time -f %M`, median of {MEMORY_RUNS} runs \
         (includes the code pages touched for the first time by a large photo):"
    );
    println!();
    println!(
        "| file | fieldsync max RSS | vips max RSS (larger process) | fieldsync delta | vips delta | ratio fieldsync / vips |"
    );
    println!("|---|---|---|---|---|---|");
    let fs_base = unit_max_rss(true, &tiny, &work);
    let vips_base = if vips {
        unit_max_rss(false, &tiny, &work)
    } else {
        0
    };
    println!(
        "| 16×16 reference | {:.1} MB | {:.1} MB | | | |",
        mib(fs_base),
        mib(vips_base)
    );
    for item in &chosen {
        let fs = unit_max_rss(true, item, &work);
        let vp = if vips {
            unit_max_rss(false, item, &work)
        } else {
            0
        };
        let fs_delta = mib(fs.saturating_sub(fs_base));
        let vp_delta = mib(vp.saturating_sub(vips_base));
        println!(
            "| {} | {:.1} MB | {:.1} MB | {fs_delta:.2} MB | {vp_delta:.2} MB | {} |",
            item.name,
            mib(fs),
            mib(vp),
            ratio(fs_delta, vp_delta),
        );
    }
    println!();
    println!("(MB here = MiB: both readings are in KiB.)");
    println!();
}

// ---------------------------------------------------------------------------------------
// Bombs
// ---------------------------------------------------------------------------------------

fn bombs(dir: &Path) {
    println!("### Bombs: refusal time (target ≤ 10 ms each)");
    println!();
    println!(
        "Synthetic files (`media::photo::synthetic`), {BOMB_RUNS} runs each: `photo::inspect` \
         on the bytes, and `photo::prepare_file` on the file, which is what completion runs \
         (`vet_and_store_photo` adds only the SHA-256 check before it). Allocation is \
         asserted separately (≤ 16 MiB) by `server/tests/image_bombs.rs`."
    );
    println!();
    println!(
        "| bomb | size | refusal | inspect median | inspect max | prepare_file median | prepare_file max | ≤ 10 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let limits = Limits::default();
    let bombs = [
        (
            "JPEG header 65,500×65,500",
            synthetic::jpeg_header_bomb(65_500, 65_500),
        ),
        (
            "PNG 50,000×50,000 (1-bit)",
            synthetic::png_bomb(50_000, 50_000),
        ),
        (
            "deeply progressive JPEG, 5,000 scans",
            synthetic::progressive_bomb(5_000),
        ),
    ];
    for (index, (name, bytes)) in bombs.into_iter().enumerate() {
        let path = dir.join(format!("bomb{index}"));
        std::fs::write(&path, &bytes).unwrap();
        let measure = |work: &dyn Fn() -> bool| {
            let mut times: Vec<Duration> = (0..BOMB_RUNS)
                .map(|_| {
                    let started = Instant::now();
                    assert!(work(), "{name} must be refused");
                    started.elapsed()
                })
                .collect();
            times.sort();
            (times[times.len() / 2], times[times.len() - 1])
        };
        let code = photo::inspect(&bytes, &limits).unwrap_err().code();
        let (inspect_median, inspect_max) =
            measure(&|| std::hint::black_box(photo::inspect(&bytes, &limits)).is_err());
        let (prepare_median, prepare_max) = measure(&|| {
            matches!(
                std::hint::black_box(photo::prepare_file(&path, &limits, DISPLAY_LONGEST_SIDE)),
                Ok(Err(_))
            )
        });
        let pass =
            inspect_max <= Duration::from_millis(10) && prepare_max <= Duration::from_millis(10);
        println!(
            "| {name} | {} B | `{code}` | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs | {} |",
            bytes.len(),
            inspect_median.as_secs_f64() * 1e6,
            inspect_max.as_secs_f64() * 1e6,
            prepare_median.as_secs_f64() * 1e6,
            prepare_max.as_secs_f64() * 1e6,
            if pass { "yes" } else { "**NO**" }
        );
    }
    println!();
}
