//! Decompression bombs are refused with little memory (issue 4, benchmark "Bombs"; security
//! plan S7). A counting global allocator (`peak_alloc`; the workspace forbids `unsafe`, so
//! the allocator comes from a crate) records the peak of live heap bytes while each bomb is
//! inspected and while the whole thumbnail path refuses it. Refusal times are measured in
//! `benches/thumbnails.rs`, not here.
//!
//! Everything runs in one `#[test]` so no other test thread allocates during a measurement.

use fieldsync_server::media::photo::{self, Limits, PhotoRejected, synthetic};
use peak_alloc::PeakAlloc;

#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

const BUDGET: usize = 16 * 1024 * 1024;

/// A bomb: its name, its bytes and the refusal it must get.
type Bomb = (&'static str, Vec<u8>, fn(&PhotoRejected) -> bool);

/// Peak heap bytes allocated beyond what was live before `work` ran.
fn peak_during<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATOR.current_usage();
    ALLOCATOR.reset_peak_usage();
    let result = work();
    (result, ALLOCATOR.peak_usage().saturating_sub(before))
}

#[test]
fn bombs_are_refused_within_16_mib() {
    let limits = Limits::default();
    let bombs: [Bomb; 3] = [
        (
            "JPEG header 65,500 x 65,500",
            synthetic::jpeg_header_bomb(65_500, 65_500),
            |error| matches!(error, PhotoRejected::DimensionsTooLarge { .. }),
        ),
        (
            "PNG 50,000 x 50,000",
            synthetic::png_bomb(50_000, 50_000),
            |error| matches!(error, PhotoRejected::DimensionsTooLarge { .. }),
        ),
        (
            "deeply progressive JPEG (5,000 scans)",
            synthetic::progressive_bomb(5_000),
            |error| matches!(error, PhotoRejected::TooManyScans { .. }),
        ),
    ];
    for (name, bytes, expected) in &bombs {
        let (result, peak) = peak_during(|| photo::inspect(bytes, &limits));
        let error = result.expect_err(name);
        assert!(expected(&error), "{name}: {error:?}");
        assert!(peak <= BUDGET, "{name}: inspect peaked at {peak} bytes");
        eprintln!("{name}: {} refused, inspect peak {peak} B", error.code());

        let (result, peak) = peak_during(|| photo::thumbnail(bytes));
        assert!(result.expect_err(name).is_limit(), "{name}");
        assert!(peak <= BUDGET, "{name}: thumbnail peaked at {peak} bytes");

        let (result, peak) = peak_during(|| photo::render_display(bytes, 2048));
        assert!(result.expect_err(name).is_limit(), "{name}");
        assert!(
            peak <= BUDGET,
            "{name}: display copy peaked at {peak} bytes"
        );
    }

    // The meter works: fully decoding the 8 MP control photo needs ~24 MB of pixels, while
    // the thumbnail path (1/8-scale DCT decode) stays far below that.
    let control = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/photos/mobile_jolla.jpg"
    ))
    .unwrap();
    let (decoded, full_peak) = peak_during(|| image::load_from_memory(&control).unwrap());
    drop(decoded);
    assert!(full_peak > 3264 * 2448 * 3, "full decode peak {full_peak}");
    let (thumbnail, thumbnail_peak) = peak_during(|| photo::thumbnail(&control).unwrap());
    assert!(!thumbnail.is_empty());
    assert!(
        thumbnail_peak < full_peak / 2,
        "thumbnail peak {thumbnail_peak} vs full decode {full_peak}"
    );
    eprintln!("control: full decode peak {full_peak} B, thumbnail path peak {thumbnail_peak} B");
}
