//! The offline location plot of the submission page (定位核验图): the household's registered
//! pin with the check radius from the settings, the visit's GPS fix with its accuracy
//! circle, the EXIF GPS points of the visit's photos, a scale bar with a round distance and
//! a north arrow, drawn as inline SVG. No tiles and no network: the console works on a
//! township office's intranet without internet.
//!
//! Points are projected with a local equirectangular projection around the pin (or the fix
//! when the household has no pin): at village scale (metres to a few kilometres) its error
//! is far below GPS accuracy. The math is in pure functions, tested below. Distances
//! *written* on the plot are not read off the projection: they are the great-circle
//! distances of the evidence flags ([`fieldsync_model::geo::distance_m`] between WGS-84
//! points, written by [`fieldsync_model::geo::distance_zh`]), so the label and the flag
//! name the same number even for a photo taken in another city.

use fieldsync_model::geo::{distance_m, distance_zh, to_wgs84};
use fieldsync_model::household::GeoPoint;
use maud::{Markup, html};

/// Mean Earth radius in metres (the same sphere the distance checks use).
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Side of the square plot, in SVG user units (pixels at 100 %).
const PLOT_SIZE: f64 = 360.0;
/// Empty border inside the plot, so circles at the edge are not cut.
const PLOT_MARGIN: f64 = 18.0;
/// Smallest half-width shown, so a fix on the pin still shows a readable neighbourhood.
const MIN_HALF_EXTENT_M: f64 = 50.0;
/// Largest half-width shown. A point farther away (a photo whose camera kept an old GPS
/// position) is drawn at the edge with its distance, instead of shrinking the village away.
const MAX_HALF_EXTENT_M: f64 = 5_000.0;
/// Photo EXIF points farther than this from the centre do not widen the plot.
const MAX_PHOTO_REACH_M: f64 = 2_000.0;

/// A local equirectangular projection around an origin (WGS-84 degrees → metres east/north).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalProjection {
    origin_lat: f64,
    origin_lon: f64,
    cos_origin_lat: f64,
}

impl LocalProjection {
    pub fn around(lat: f64, lon: f64) -> Self {
        Self {
            origin_lat: lat,
            origin_lon: lon,
            cos_origin_lat: lat.to_radians().cos(),
        }
    }

    /// Metres east and north of the origin.
    pub fn to_metres(self, lat: f64, lon: f64) -> (f64, f64) {
        let east = (lon - self.origin_lon).to_radians() * self.cos_origin_lat * EARTH_RADIUS_M;
        let north = (lat - self.origin_lat).to_radians() * EARTH_RADIUS_M;
        (east, north)
    }
}

/// The longest "round" length (1, 2 or 5 × 10ⁿ metres) not longer than `at_most_m`; a scale
/// bar reads best with a round number. At least 1 m.
pub fn round_scale_length(at_most_m: f64) -> f64 {
    if at_most_m.is_nan() || at_most_m < 1.0 {
        return 1.0;
    }
    let power = 10f64.powf(at_most_m.log10().floor());
    [5.0, 2.0, 1.0]
        .into_iter()
        .map(|step| step * power)
        .find(|length| *length <= at_most_m)
        .unwrap_or(power)
}

/// "50 米", "2 公里": the scale bar's round length as officials write it (a round length
/// needs no decimal; measured distances use [`distance_zh`]).
pub fn scale_label(metres: f64) -> String {
    if metres >= 1_000.0 {
        let kilometres = metres / 1_000.0;
        if (kilometres - kilometres.round()).abs() < 0.05 {
            format!("{kilometres:.0} 公里")
        } else {
            format!("{kilometres:.1} 公里")
        }
    } else {
        format!("{metres:.0} 米")
    }
}

/// How far from the centre the plot reaches (metres): everything that must be seen, with
/// some room, between [`MIN_HALF_EXTENT_M`] and [`MAX_HALF_EXTENT_M`].
pub fn half_extent_m(reaches_m: &[f64]) -> f64 {
    let farthest = reaches_m
        .iter()
        .copied()
        .filter(|reach| reach.is_finite())
        .fold(0.0f64, f64::max);
    (farthest * 1.15).clamp(MIN_HALF_EXTENT_M, MAX_HALF_EXTENT_M)
}

/// Scale and placement of projected metres on the plot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlotFrame {
    /// SVG units per metre.
    pub scale: f64,
    pub half_extent_m: f64,
}

impl PlotFrame {
    pub fn for_half_extent(half_extent_m: f64) -> Self {
        Self {
            scale: (PLOT_SIZE / 2.0 - PLOT_MARGIN) / half_extent_m,
            half_extent_m,
        }
    }

    /// SVG coordinates (y grows downwards) of a point `east`/`north` metres from the centre.
    pub fn to_svg(self, (east, north): (f64, f64)) -> (f64, f64) {
        (
            PLOT_SIZE / 2.0 + east * self.scale,
            PLOT_SIZE / 2.0 - north * self.scale,
        )
    }

    /// The point pulled back onto the edge of the shown square when it lies outside, and
    /// whether it was.
    pub fn clamp(self, (east, north): (f64, f64)) -> ((f64, f64), bool) {
        let farthest = east.abs().max(north.abs());
        if farthest <= self.half_extent_m {
            ((east, north), false)
        } else {
            let shrink = self.half_extent_m / farthest;
            ((east * shrink, north * shrink), true)
        }
    }
}

/// What the plot shows. Points are in any coordinate system; they are converted to WGS-84.
#[derive(Debug, Clone, PartialEq)]
pub struct MapInput {
    /// The household's registered location.
    pub pin: Option<GeoPoint>,
    /// The check radius around the pin (settings `household_radius_m`).
    pub radius_m: f64,
    /// The visit's fix and its reported accuracy.
    pub fix: Option<(GeoPoint, f64)>,
    /// EXIF GPS positions of the visit's photos (WGS-84), numbered as on the page.
    pub photo_points: Vec<(usize, f64, f64)>,
}

/// The plot as inline SVG, or `None` when there is neither a pin nor a fix to draw.
pub fn location_map(input: &MapInput) -> Option<Markup> {
    let pin = input.pin.as_ref().map(to_wgs84);
    let fix = input
        .fix
        .as_ref()
        .map(|(point, accuracy)| (to_wgs84(point), accuracy.max(0.0)));
    let origin = pin.or(fix.map(|(point, _)| point))?;
    let projection = LocalProjection::around(origin.lat, origin.lon);
    let fix_metres =
        fix.map(|(point, accuracy)| (projection.to_metres(point.lat, point.lon), accuracy));
    let photo_metres: Vec<(usize, (f64, f64))> = input
        .photo_points
        .iter()
        .map(|(number, lat, lon)| (*number, projection.to_metres(*lat, *lon)))
        .collect();
    let length = |(east, north): (f64, f64)| east.hypot(north);
    // The labels' great-circle distances, measured as the flags measure them: the fix from
    // the pin (gps_far), a photo from the fix, or from the pin without a fix
    // (photo_exif_gps_far).
    let fix_from_pin = pin
        .zip(fix)
        .map(|(pin, (point, _))| distance_m(pin.lat, pin.lon, point.lat, point.lon));
    let photo_reference = fix
        .map(|(point, _)| (point, "定位点"))
        .or(pin.map(|pin| (pin, "农户")));
    let photo_label = |lat: f64, lon: f64| {
        photo_reference.map(|(from, name)| {
            format!(
                "距{name} {}",
                distance_zh(distance_m(from.lat, from.lon, lat, lon))
            )
        })
    };
    let photo_labels: Vec<Option<String>> = input
        .photo_points
        .iter()
        .map(|(_, lat, lon)| photo_label(*lat, *lon))
        .collect();
    let mut reaches = Vec::new();
    if pin.is_some() {
        reaches.push(input.radius_m);
    }
    if let Some((at, accuracy)) = fix_metres {
        reaches.push(length(at) + accuracy.min(MAX_HALF_EXTENT_M));
    }
    // A photo whose camera kept a position from elsewhere (another city) must not shrink
    // the village away; it is drawn at the edge with its distance instead.
    reaches.extend(
        photo_metres
            .iter()
            .map(|(_, at)| length(*at))
            .filter(|reach| *reach <= MAX_PHOTO_REACH_M),
    );
    let frame = PlotFrame::for_half_extent(half_extent_m(&reaches));
    let centre = frame.to_svg((0.0, 0.0));
    let bar_m = round_scale_length(frame.half_extent_m * 0.6);
    let bar_px = bar_m * frame.scale;
    let number = |value: f64| format!("{value:.1}");
    Some(html! {
        svg.location-map xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (PLOT_SIZE) " " (PLOT_SIZE) }
            width=(PLOT_SIZE) height=(PLOT_SIZE) role="img" aria-label="定位核验图：农户位置、定位点与照片拍摄位置" {
            rect x="0" y="0" width=(PLOT_SIZE) height=(PLOT_SIZE) fill="#f6f8fa" stroke="#d0d7de" {}
            @if pin.is_some() {
                circle #map-radius cx=(number(centre.0)) cy=(number(centre.1)) r=(number(input.radius_m * frame.scale))
                    fill="#dafbe1" fill-opacity="0.5" stroke="#1a7f37" stroke-dasharray="6 4" {}
            }
            @if let Some((at, accuracy)) = fix_metres {
                @let (clamped, outside) = frame.clamp(at);
                @let (x, y) = frame.to_svg(clamped);
                @if pin.is_some() {
                    line x1=(number(centre.0)) y1=(number(centre.1)) x2=(number(x)) y2=(number(y)) stroke="#656d76" stroke-dasharray="3 3" {}
                }
                @if !outside {
                    circle #map-accuracy cx=(number(x)) cy=(number(y)) r=(number(accuracy * frame.scale))
                        fill="#0969da" fill-opacity="0.15" stroke="#0969da" stroke-opacity="0.6" {}
                }
                circle #map-fix cx=(number(x)) cy=(number(y)) r="6" fill="#0969da" stroke="#fff" stroke-width="2" {}
                text x=(number(x + 9.0)) y=(number(y - 8.0)) font-size="12" fill="#0550ae" {
                    "定位点" @if let Some(metres) = fix_from_pin { " " (distance_zh(metres)) }
                }
            }
            @for ((index, at), label) in photo_metres.iter().zip(&photo_labels) {
                @let (clamped, outside) = frame.clamp(*at);
                @let (x, y) = frame.to_svg(clamped);
                rect.map-photo x=(number(x - 5.0)) y=(number(y - 5.0)) width="10" height="10" fill="#bf8700" stroke="#fff" {}
                text x=(number(x + 7.0)) y=(number(y + 14.0)) font-size="11" fill="#7d4e00" {
                    "照片" (index) @if outside && let Some(label) = label { " " (label) }
                }
            }
            @if pin.is_some() {
                path #map-pin d={ "M" (number(centre.0)) " " (number(centre.1)) " l-7 -14 a8 8 0 1 1 14 0 z" } fill="#cf222e" stroke="#fff" stroke-width="1.5" {}
                text x=(number(centre.0 + 10.0)) y=(number(centre.1 + 14.0)) font-size="12" fill="#8f1c13" { "农户" }
            }
            // North arrow, top right.
            g #map-north {
                path d={ "M" (PLOT_SIZE - 24.0) " 14 l7 20 l-7 -5 l-7 5 z" } fill="#1f2328" {}
                text x=(PLOT_SIZE - 24.0) y="48" font-size="12" text-anchor="middle" fill="#1f2328" { "北" }
            }
            // Scale bar, bottom left.
            g #map-scale {
                line x1="14" y1=(PLOT_SIZE - 16.0) x2=(number(14.0 + bar_px)) y2=(PLOT_SIZE - 16.0) stroke="#1f2328" stroke-width="3" {}
                line x1="14" y1=(PLOT_SIZE - 22.0) x2="14" y2=(PLOT_SIZE - 10.0) stroke="#1f2328" {}
                line x1=(number(14.0 + bar_px)) y1=(PLOT_SIZE - 22.0) x2=(number(14.0 + bar_px)) y2=(PLOT_SIZE - 10.0) stroke="#1f2328" {}
                text x="14" y=(PLOT_SIZE - 26.0) font-size="12" fill="#1f2328" { (scale_label(bar_m)) }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_model::codes::Crs;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn the_projection_matches_the_haversine_distance_at_village_scale() {
        let projection = LocalProjection::around(34.25, 108.95);
        assert_eq!(projection.to_metres(34.25, 108.95), (0.0, 0.0));
        // 0.001° of latitude is ~111 m north, nothing east.
        let (east, north) = projection.to_metres(34.251, 108.95);
        assert!(close(east, 0.0, 1e-9));
        assert!(close(north, 111.2, 0.1), "{north}");
        // East shrinks with the cosine of the latitude.
        let (east, north) = projection.to_metres(34.25, 108.951);
        assert!(close(north, 0.0, 1e-9));
        assert!(
            close(east, 111.2 * 34.25f64.to_radians().cos(), 0.1),
            "{east}"
        );
        // Against the model's great-circle distance, within a centimetre per 100 m.
        let (lat, lon) = (34.2531, 108.9542);
        let (east, north) = projection.to_metres(lat, lon);
        let haversine = fieldsync_model::geo::distance_m(34.25, 108.95, lat, lon);
        assert!(
            close(east.hypot(north), haversine, haversine * 1e-4),
            "{haversine}"
        );
        // South-west is negative on both axes.
        let (east, north) = projection.to_metres(34.24, 108.94);
        assert!(east < 0.0 && north < 0.0);
    }

    #[test]
    fn scale_bars_use_round_lengths() {
        assert_eq!(round_scale_length(0.3), 1.0);
        assert_eq!(round_scale_length(1.0), 1.0);
        assert_eq!(round_scale_length(7.0), 5.0);
        assert_eq!(round_scale_length(19.9), 10.0);
        assert_eq!(round_scale_length(20.0), 20.0);
        assert_eq!(round_scale_length(180.0), 100.0);
        assert_eq!(round_scale_length(260.0), 200.0);
        assert_eq!(round_scale_length(999.0), 500.0);
        assert_eq!(round_scale_length(3_100.0), 2_000.0);
        assert_eq!(scale_label(200.0), "200 米");
        assert_eq!(scale_label(2_000.0), "2 公里");
        assert_eq!(scale_label(1_540.0), "1.5 公里");
    }

    #[test]
    fn the_extent_covers_everything_within_bounds() {
        assert_eq!(half_extent_m(&[]), MIN_HALF_EXTENT_M);
        assert_eq!(half_extent_m(&[10.0]), MIN_HALF_EXTENT_M);
        assert!(close(half_extent_m(&[300.0, 120.0]), 345.0, 1e-9));
        assert_eq!(half_extent_m(&[300.0, 80_000.0]), MAX_HALF_EXTENT_M);
        assert!(close(half_extent_m(&[f64::NAN, 100.0]), 115.0, 1e-9));
    }

    /// The photo: a camera that kept a position from another country. The label is
    /// the flag's great-circle distance from the fix, not the flat projection's.
    #[test]
    fn far_labels_use_the_flags_great_circle_distance() {
        let pin = GeoPoint {
            lat: 26.6470,
            lon: 106.6302,
            crs: Crs::Wgs84,
        };
        let fix = GeoPoint {
            lat: 26.6472,
            lon: 106.6302,
            crs: Crs::Wgs84,
        };
        let (photo_lat, photo_lon) = (52.52, 13.40);
        let svg = location_map(&MapInput {
            pin: Some(pin),
            radius_m: 300.0,
            fix: Some((fix, 10.0)),
            photo_points: vec![(1, photo_lat, photo_lon)],
        })
        .expect("a plot")
        .into_string();
        let great_circle = distance_m(fix.lat, fix.lon, photo_lat, photo_lon);
        let flag = fieldsync_model::evidence::EvidenceFlag::PhotoExifGpsFar {
            photo_id: "p".to_owned(),
            distance_m: great_circle,
            limit_m: 500.0,
            from_household: false,
        }
        .detail();
        let label = distance_zh(great_circle);
        assert!(label.ends_with(" 公里"), "{label}");
        assert!(flag.contains(&label), "{flag}");
        assert!(svg.contains(&format!("照片1 距定位点 {label}")), "{svg}");
        let flat = {
            let projection = LocalProjection::around(pin.lat, pin.lon);
            let (east, north) = projection.to_metres(photo_lat, photo_lon);
            distance_zh(east.hypot(north))
        };
        assert_ne!(flat, label, "the flat projection disagrees this far away");
        assert!(!svg.contains(&flat));
    }

    #[test]
    fn the_frame_puts_north_up_and_clamps_far_points_to_the_edge() {
        let frame = PlotFrame::for_half_extent(100.0);
        let centre = frame.to_svg((0.0, 0.0));
        assert_eq!(centre, (PLOT_SIZE / 2.0, PLOT_SIZE / 2.0));
        let (x, y) = frame.to_svg((0.0, 100.0));
        assert_eq!(x, centre.0);
        assert!(
            close(y, PLOT_MARGIN, 1e-9),
            "100 m north is the top margin: {y}"
        );
        let (x, _) = frame.to_svg((100.0, 0.0));
        assert!(close(x, PLOT_SIZE - PLOT_MARGIN, 1e-9));
        assert_eq!(frame.clamp((30.0, -40.0)), ((30.0, -40.0), false));
        let ((east, north), outside) = frame.clamp((400.0, 200.0));
        assert!(outside);
        assert!(close(east, 100.0, 1e-9) && close(north, 50.0, 1e-9));
    }

    #[test]
    fn the_plot_draws_pin_radius_fix_photos_scale_and_north() {
        let pin = GeoPoint {
            lat: 34.25,
            lon: 108.95,
            crs: Crs::Wgs84,
        };
        let fix = GeoPoint {
            lat: 34.2520,
            lon: 108.95,
            crs: Crs::Wgs84,
        };
        let svg = location_map(&MapInput {
            pin: Some(pin),
            radius_m: 300.0,
            fix: Some((fix, 15.0)),
            photo_points: vec![(1, 34.2505, 108.9503)],
        })
        .expect("a plot")
        .into_string();
        for part in [
            "id=\"map-pin\"",
            "id=\"map-radius\"",
            "id=\"map-fix\"",
            "id=\"map-accuracy\"",
            "class=\"map-photo\"",
            "id=\"map-north\"",
            "id=\"map-scale\"",
            "定位点 222 米",
            "照片1",
            "200 米",
        ] {
            assert!(svg.contains(part), "{part} missing from {svg}");
        }
        assert!(
            !svg.contains("照片1 距"),
            "a photo inside the plot needs no distance"
        );
        assert!(!svg.contains("<script"), "the plot is inert markup");
        // Inside <svg> the HTML parser does not close void-looking tags: every element is
        // closed explicitly, or the rest of the plot would nest inside the first <rect>.
        for element in ["rect", "circle", "line", "path"] {
            assert_eq!(
                svg.matches(&format!("<{element} ")).count(),
                svg.matches(&format!("</{element}>")).count(),
                "<{element}> closed"
            );
        }
        assert!(
            location_map(&MapInput {
                pin: None,
                radius_m: 300.0,
                fix: None,
                photo_points: Vec::new(),
            })
            .is_none()
        );
    }
}
