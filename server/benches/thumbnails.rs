//! Thumbnail and bomb benchmark (issue 4, "Benchmarks"): fieldsync's thumbnail path against
//! `vipsthumbnail` on the same generated 12 MP phone-like JPEGs, in the same run, one worker
//! each; peak memory per thumbnail from `/usr/bin/time`; refusal times of the synthetic
//! decompression bombs. Prints a Markdown report for BENCHMARKS.md.
//!
//! Run (release, pinned to one core so both tools get exactly one):
//!     cargo bench -p fieldsync-server --bench thumbnails --no-run
//!     taskset -c 0 cargo bench -p fieldsync-server --bench thumbnails
//!
//! `thumbnails --thumbnail-one IN OUT` makes a single thumbnail and exits; the benchmark runs
//! itself that way under `/usr/bin/time` to measure the peak RSS of one thumbnail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fieldsync_server::media::photo::{self, Limits, synthetic};

const WIDTH: u16 = 4000;
const HEIGHT: u16 = 3000;
const CORPUS: usize = 8;
const ROUNDS: usize = 3;
const BOMB_RUNS: usize = 200;
const MEMORY_RUNS: usize = 7;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--thumbnail-one") {
        // The file path, streamed: what upload completion runs (`photo::prepare_file`
        // shares this decode), so the file is never held in memory.
        let output = photo::thumbnail_file(std::path::Path::new(&args[at + 1]))
            .expect("read input")
            .expect("thumbnail");
        std::fs::write(&args[at + 2], output).expect("write output");
        return;
    }

    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and a test run must not spend a minute generating 12 MP photos.
    if !args.iter().any(|arg| arg == "--bench") {
        println!("thumbnails: benchmark skipped (run it with `cargo bench`)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    println!("## Thumbnails and bombs — run of {}", today());
    println!();
    machine();
    let started = Instant::now();
    let corpus = generate_corpus(dir.path());
    println!(
        "Corpus: {CORPUS} JPEGs of {WIDTH}×{HEIGHT} (12 MP), 4:2:0, quality 90, generated in {:.1} s \
         (seeded gradients + texture + noise):",
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("| file | coding | EXIF orientation | size |");
    println!("|---|---|---|---|");
    for item in &corpus {
        println!(
            "| {} | {} | {} | {:.2} MB |",
            item.path.file_name().unwrap().to_string_lossy(),
            if item.progressive {
                "progressive"
            } else {
                "baseline"
            },
            item.orientation
                .map_or("none".to_owned(), |o| o.to_string()),
            item.bytes as f64 / 1e6
        );
    }
    println!();

    // `-- --memory-only`: the peak-memory table alone (it is not disturbed by other load on
    // the machine, unlike the timings).
    if args.iter().any(|arg| arg == "--memory-only") {
        memory(dir.path(), &corpus);
        return;
    }
    throughput(dir.path(), &corpus);
    memory(dir.path(), &corpus);
    bombs();
}

fn today() -> String {
    Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default()
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
        "Machine: {} logical CPU(s) available to this process ({model}); it may run on CPUs \
         `{allowed}`; \
         build: {}; vipsthumbnail: {vips}.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    );
    println!();
}

struct Item {
    path: PathBuf,
    progressive: bool,
    orientation: Option<u16>,
    bytes: u64,
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

fn generate_corpus(dir: &Path) -> Vec<Item> {
    (0..CORPUS)
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
            let inspected = photo::inspect(&jpeg, &Limits::default()).expect("corpus is valid");
            assert_eq!(inspected.progressive, progressive);
            let path = dir.join(format!(
                "phone{index}_{}{}.jpg",
                if progressive { "prog" } else { "base" },
                if orientation.is_some() { "_o6" } else { "" }
            ));
            std::fs::write(&path, &jpeg).expect("write corpus");
            Item {
                path,
                progressive,
                orientation,
                bytes: jpeg.len() as u64,
            }
        })
        .collect()
}

/// CPU time (user + system) of this process, all threads, from /proc/self/stat.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, utime 14 and stime 15 (1-based, whole line).
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    Duration::from_millis(ticks * 1000 / clock_ticks())
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// `/usr/bin/time -f "%e %U %S %M"` around a command: (wall s, cpu s, max RSS KiB).
fn timed(command: &mut Command) -> Option<(f64, f64, u64)> {
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
    let envs: Vec<_> = command
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    let output = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("TIME %e %U %S %M")
        .arg(program)
        .args(args)
        .envs(envs)
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().rev().find(|l| l.starts_with("TIME "))?;
    let v: Vec<f64> = line[5..]
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    Some((v[0], v[1] + v[2], v[3] as u64))
}

fn vips_available() -> bool {
    Command::new("vipsthumbnail")
        .arg("--vips-version")
        .output()
        .is_ok_and(|out| out.status.success())
}

fn throughput(dir: &Path, corpus: &[Item]) {
    // From the file, as vipsthumbnail reads it and as upload completion runs it: the streaming
    // path (`photo::thumbnail_file`), page cache warm for both tools after the warm-up.
    let thumbnail_of = |item: &Item| {
        photo::thumbnail_file(&item.path)
            .expect("read corpus file")
            .expect("thumbnail")
    };
    // Warm-up and correctness: every thumbnail fits 320 and is upright.
    for item in corpus {
        let decoded = image::load_from_memory(&thumbnail_of(item)).unwrap();
        let expected = if item.orientation == Some(6) {
            (240, 320)
        } else {
            (320, 240)
        };
        assert_eq!((decoded.width(), decoded.height()), expected);
    }

    let mut per_image = Vec::new();
    let cpu_before = process_cpu();
    let wall = Instant::now();
    for _ in 0..ROUNDS {
        for item in corpus {
            let started = Instant::now();
            std::hint::black_box(thumbnail_of(item));
            per_image.push(started.elapsed());
        }
    }
    let fs_wall = wall.elapsed().as_secs_f64() / (ROUNDS * CORPUS) as f64;
    let fs_cpu = (process_cpu() - cpu_before).as_secs_f64() / (ROUNDS * CORPUS) as f64;
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2].as_secs_f64()
    };
    let mut baseline: Vec<Duration> = per_image
        .iter()
        .enumerate()
        .filter(|(i, _)| !corpus[i % CORPUS].progressive)
        .map(|(_, d)| *d)
        .collect();
    let mut progressive: Vec<Duration> = per_image
        .iter()
        .enumerate()
        .filter(|(i, _)| corpus[i % CORPUS].progressive)
        .map(|(_, d)| *d)
        .collect();
    let fs_base = median(&mut baseline);
    let fs_prog = median(&mut progressive);

    println!("### Thumbnail throughput (12 MP → 320 px JPEG q80, EXIF-rotated)");
    println!();
    println!(
        "fieldsync: `media::photo::thumbnail_file` in-process (streams the file, as upload \
         completion does), one thread, {ROUNDS} rounds over the corpus. vipsthumbnail: `VIPS_CONCURRENCY=1 vipsthumbnail --size 320x320 -o \
         out/tn_%s.jpg[Q=80,strip] <all {CORPUS} files>` as one process per round (start-up \
         amortised over {CORPUS} files), timed by `/usr/bin/time`; its start-up alone is \
         measured on a 16×16 JPEG and also reported subtracted."
    );
    println!();
    if !vips_available() {
        println!("**vipsthumbnail is not installed: no comparison in this run.**");
        println!();
        println!(
            "| fieldsync | {:.1} ms/image wall, {:.1} ms CPU |",
            fs_wall * 1e3,
            fs_cpu * 1e3
        );
        return;
    }
    let out = dir.join("vips-out");
    std::fs::create_dir_all(&out).unwrap();
    let tiny = tiny_jpeg(dir);
    let vips = |inputs: &[&Path]| {
        let mut command = Command::new("vipsthumbnail");
        command
            .env("VIPS_CONCURRENCY", "1")
            .arg("--size")
            .arg("320x320")
            .arg("-o")
            .arg(format!("{}/tn_%s.jpg[Q=80,strip]", out.display()))
            .args(inputs);
        timed(&mut command).expect("vipsthumbnail ran")
    };
    let all: Vec<&Path> = corpus.iter().map(|item| item.path.as_path()).collect();
    vips(&all); // warm the page cache and the shared libraries
    let (mut vips_wall, mut vips_cpu) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let (wall, cpu, _) = vips(&all);
        vips_wall.push(wall / CORPUS as f64);
        vips_cpu.push(cpu / CORPUS as f64);
    }
    let startup: Vec<f64> = (0..5).map(|_| vips(&[tiny.as_path()]).0).collect();
    let startup = startup.iter().cloned().fold(f64::MAX, f64::min);
    let vips_wall = vips_wall.iter().sum::<f64>() / ROUNDS as f64;
    let vips_cpu = vips_cpu.iter().sum::<f64>() / ROUNDS as f64;
    let vips_net = vips_wall - startup / CORPUS as f64;
    // Split vips by coding too: one process per subset.
    let subset = |progressive: bool| {
        let files: Vec<&Path> = corpus
            .iter()
            .filter(|item| item.progressive == progressive)
            .map(|item| item.path.as_path())
            .collect();
        let runs: Vec<f64> = (0..ROUNDS)
            .map(|_| (vips(&files).0 - startup) / files.len() as f64)
            .collect();
        runs.iter().sum::<f64>() / ROUNDS as f64
    };
    let vips_base = subset(false);
    let vips_prog = subset(true);
    // Upright check of vips's output for an orientation-6 file.
    if let Some(item) = corpus.iter().find(|item| item.orientation.is_some()) {
        let name = item.path.file_stem().unwrap().to_string_lossy();
        let tn = image::open(out.join(format!("tn_{name}.jpg"))).unwrap();
        assert_eq!((tn.width(), tn.height()), (240, 320), "vips rotates too");
    }

    println!(
        "| measure | fieldsync | vipsthumbnail | ratio (vips time / fieldsync time; ≥ 1.0 = fieldsync as fast or faster) |"
    );
    println!("|---|---|---|---|");
    println!(
        "| wall per image, all {CORPUS} files (vips incl. start-up) | {:.1} ms | {:.1} ms | {:.2}× |",
        fs_wall * 1e3,
        vips_wall * 1e3,
        vips_wall / fs_wall
    );
    println!(
        "| wall per image, vips start-up ({:.1} ms) subtracted | {:.1} ms | {:.1} ms | {:.2}× |",
        startup * 1e3,
        fs_wall * 1e3,
        vips_net * 1e3,
        vips_net / fs_wall
    );
    println!(
        "| CPU per image (user+sys, all threads) | {:.1} ms | {:.1} ms | {:.2}× |",
        fs_cpu * 1e3,
        vips_cpu * 1e3,
        vips_cpu / fs_cpu
    );
    println!(
        "| baseline JPEGs, median / net per image | {:.1} ms | {:.1} ms | {:.2}× |",
        fs_base * 1e3,
        vips_base * 1e3,
        vips_base / fs_base
    );
    println!(
        "| progressive JPEGs, median / net per image | {:.1} ms | {:.1} ms | {:.2}× |",
        fs_prog * 1e3,
        vips_prog * 1e3,
        vips_prog / fs_prog
    );
    println!(
        "| images/s on one core | {:.0} | {:.0} (net of start-up) | |",
        1.0 / fs_wall,
        1.0 / vips_net
    );
    println!();
    // Reference floor: libjpeg-turbo's own decoder at 1/8 scale, no resize, no encode.
    let djpeg: Vec<f64> = corpus
        .iter()
        .filter_map(|item| {
            timed(
                Command::new("djpeg")
                    .arg("-scale")
                    .arg("1/8")
                    .arg("-outfile")
                    .arg("/dev/null")
                    .arg(&item.path),
            )
        })
        .map(|(wall, _, _)| wall)
        .collect();
    if djpeg.len() == CORPUS {
        println!(
            "Reference: `djpeg -scale 1/8 -outfile /dev/null` (libjpeg-turbo decode only, \
             one process per file) takes {:.1} ms per image on average, process start \
             included.",
            djpeg.iter().sum::<f64>() / CORPUS as f64 * 1e3
        );
        println!();
    }
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

/// One thumbnail command of either tool, for the memory table.
fn thumbnail_command(tool: Tool, input: &Path, output: &Path) -> Command {
    match tool {
        Tool::Fieldsync => {
            let mut command = Command::new(std::env::current_exe().expect("own path"));
            command.arg("--thumbnail-one").arg(input).arg(output);
            command
        }
        Tool::Vips => {
            let mut command = Command::new("vipsthumbnail");
            command
                .env("VIPS_CONCURRENCY", "1")
                .arg(input)
                .arg("-s")
                .arg("320")
                .arg("-o")
                .arg(output);
            command
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Fieldsync,
    Vips,
}

/// Median max RSS (KiB) of `MEMORY_RUNS` runs: address-space randomisation moves it by a few
/// hundred KiB from run to run, so one run (or the minimum of a few) is not a stable reading.
fn median_max_rss(tool: Tool, input: &Path, output: &Path) -> u64 {
    let mut rss: Vec<u64> = (0..MEMORY_RUNS)
        .filter_map(|_| timed(&mut thumbnail_command(tool, input, output)))
        .map(|(_, _, rss)| rss)
        .collect();
    rss.sort_unstable();
    rss.get(rss.len() / 2).copied().unwrap_or(0)
}

/// (VmHWM, RssFile) in KiB, read from `/proc/PID/status` as the process calls `exit_group`,
/// with the process stopped there by gdb (gdb also turns address randomisation off, so the
/// reading repeats exactly). File-backed pages (the program's and libraries' code and
/// read-only data) only grow during a run, so VmHWM − RssFile-at-exit is the anonymous
/// memory (heap, stacks) at the peak, give or take the few code pages first touched after it.
fn peak_and_file_pages(tool: Tool, input: &Path, output: &Path) -> Option<(u64, u64)> {
    let command = thumbnail_command(tool, input, output);
    let script = "python\n\
        pid = gdb.selected_inferior().pid\n\
        fields = dict((l.split()[0], l.split()[1]) for l in open('/proc/%d/status' % pid) if len(l.split()) > 1)\n\
        print('PEAK', fields['VmHWM:'], fields['RssFile:'])\n\
        end\n";
    let script_path = output.with_extension("gdb");
    std::fs::write(&script_path, script).ok()?;
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
        .arg(&script_path)
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

fn gdb_available() -> bool {
    Command::new("gdb")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

fn memory(dir: &Path, corpus: &[Item]) {
    println!("### Peak memory per thumbnail");
    println!();
    let tiny = tiny_jpeg(dir);
    let out = dir.join("one.jpg");
    let vips = vips_available();
    let kib = |value: u64| value as f64 / 1024.0;
    let ratio = |ours: f64, theirs: f64| {
        if vips && theirs > 0.0 {
            format!("{:.2}", ours / theirs)
        } else {
            "n/a".to_owned()
        }
    };
    println!(
        "Both tools run one file per process: `thumbnails --thumbnail-one IN OUT` (this \
         benchmark binary; `photo::thumbnail_file`, the streaming path upload completion uses) \
         and `VIPS_CONCURRENCY=1 vipsthumbnail IN -s 320 -o OUT`. Each delta is against the \
         same command on a 16×16 JPEG, so it is what the 12 MP photo adds."
    );
    println!();
    println!(
        "**Anonymous memory at the peak** (heap and stacks: what each further in-flight \
         thumbnail costs; code pages are shared by all of them). VmHWM − RssFile, read from \
         `/proc/PID/status` when the process exits, stopped there by gdb (no address \
         randomisation, so the reading repeats exactly):"
    );
    println!();
    if gdb_available() {
        println!(
            "| file | fieldsync anon delta | vips anon delta | ratio (fieldsync / vips; target ≤ 1.2) | fieldsync code-page delta | vips code-page delta |"
        );
        println!("|---|---|---|---|---|---|");
        let reading = |tool: Tool, input: &Path| {
            if tool == Tool::Vips && !vips {
                return (0, 0);
            }
            peak_and_file_pages(tool, input, &out).unwrap_or((0, 0))
        };
        let (fs_base_peak, fs_base_file) = reading(Tool::Fieldsync, &tiny);
        let (vips_base_peak, vips_base_file) = reading(Tool::Vips, &tiny);
        for item in corpus.iter().take(4) {
            let (fs_peak, fs_file) = reading(Tool::Fieldsync, &item.path);
            let (vips_peak, vips_file) = reading(Tool::Vips, &item.path);
            let anon_delta = |peak: u64, file: u64, base_peak: u64, base_file: u64| {
                kib((peak.saturating_sub(file)).saturating_sub(base_peak.saturating_sub(base_file)))
            };
            let fs_anon = anon_delta(fs_peak, fs_file, fs_base_peak, fs_base_file);
            let vips_anon = anon_delta(vips_peak, vips_file, vips_base_peak, vips_base_file);
            println!(
                "| {} | {fs_anon:.2} MB | {vips_anon:.2} MB | {} | {:.2} MB | {:.2} MB |",
                item.path.file_name().unwrap().to_string_lossy(),
                ratio(fs_anon, vips_anon),
                kib(fs_file.saturating_sub(fs_base_file)),
                kib(vips_file.saturating_sub(vips_base_file)),
            );
        }
    } else {
        println!("**gdb is not installed: no anonymous-memory reading in this run.**");
    }
    println!();
    println!(
        "**Whole-process max RSS** from `/usr/bin/time -f %M`, median of {MEMORY_RUNS} runs \
         (includes the code pages the large-image path touches for the first time: the \
         resizer, the scaled IDCT, libm's tables, each read in 64 KiB fault-around blocks):"
    );
    println!();
    println!(
        "| file | fieldsync max RSS | vipsthumbnail max RSS | fieldsync delta | vips delta | ratio (fieldsync / vips) |"
    );
    println!("|---|---|---|---|---|---|");
    let fs_base = median_max_rss(Tool::Fieldsync, &tiny, &out);
    let vips_base = if vips {
        median_max_rss(Tool::Vips, &tiny, &out)
    } else {
        0
    };
    println!(
        "| 16×16 baseline | {:.1} MB | {:.1} MB | | | |",
        kib(fs_base),
        kib(vips_base)
    );
    for item in corpus.iter().take(4) {
        let fs = median_max_rss(Tool::Fieldsync, &item.path, &out);
        let vp = if vips {
            median_max_rss(Tool::Vips, &item.path, &out)
        } else {
            0
        };
        let fs_delta = kib(fs.saturating_sub(fs_base));
        let vp_delta = kib(vp.saturating_sub(vips_base));
        println!(
            "| {} | {:.1} MB | {:.1} MB | {fs_delta:.2} MB | {vp_delta:.2} MB | {} |",
            item.path.file_name().unwrap().to_string_lossy(),
            kib(fs),
            kib(vp),
            ratio(fs_delta, vp_delta),
        );
    }
    println!();
    println!("(MB here = MiB: both readings are in KiB.)");
    println!();
}

fn bombs() {
    println!("### Bombs: refusal time (target ≤ 10 ms each)");
    println!();
    println!(
        "Synthetic files made in memory (`media::photo::synthetic`); {BOMB_RUNS} runs each; \
         allocation is asserted separately (≤ 16 MiB) by `server/tests/image_bombs.rs`."
    );
    println!();
    println!(
        "| bomb | size | refusal | inspect median | inspect max | thumbnail() median | thumbnail() max | ≤ 10 ms |"
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
    for (name, bytes) in bombs {
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
        let (thumb_median, thumb_max) =
            measure(&|| std::hint::black_box(photo::thumbnail(&bytes)).is_err());
        let pass =
            inspect_max <= Duration::from_millis(10) && thumb_max <= Duration::from_millis(10);
        println!(
            "| {name} | {} B | `{code}` | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs | {} |",
            bytes.len(),
            inspect_median.as_secs_f64() * 1e6,
            inspect_max.as_secs_f64() * 1e6,
            thumb_median.as_secs_f64() * 1e6,
            thumb_max.as_secs_f64() * 1e6,
            if pass { "yes" } else { "**NO**" }
        );
    }
    println!();
}
