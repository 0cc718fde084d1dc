//! Distances on the earth, for "how far was the visit from the household" checks, and the
//! WGS-84 <-> GCJ-02 <-> BD-09 conversions that Chinese basemaps need.

use crate::codes::Crs;
use crate::household::GeoPoint;

/// Mean earth radius in metres (IUGG), the usual constant for haversine distances.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Great-circle distance in metres between two WGS-84 points (haversine formula). Accurate to
/// well under a metre at village scale, which is all an evidence check needs.
pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let delta_phi = (lat2 - lat1).to_radians();
    let delta_lambda = (lon2 - lon1).to_radians();
    let a = (delta_phi / 2.0).sin().powi(2)
        + phi1.cos() * phi2.cos() * (delta_lambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

/// A distance as the console writes it: whole metres below 1 km ("850 米"), kilometres with
/// one decimal from 1 km on ("8.4 公里"), so a photo taken in another city reads "8430.5
/// 公里", not "8430544 米". Flag texts and the location plot's labels both use it.
pub fn distance_zh(metres: f64) -> String {
    if !metres.is_finite() {
        return "未知距离".to_owned();
    }
    if metres.round() >= 1_000.0 {
        format!("{:.1} 公里", metres / 1_000.0)
    } else {
        format!("{:.0} 米", metres.max(0.0))
    }
}

/// Distance between two points; `None` unless both use the same coordinate system, because
/// mixing WGS-84 with GCJ-02 silently adds hundreds of metres of error.
pub fn distance_between(a: &GeoPoint, b: &GeoPoint) -> Option<f64> {
    (a.crs == b.crs).then(|| distance_m(a.lat, a.lon, b.lat, b.lon))
}

/// True when the coordinates are finite and inside the valid latitude/longitude ranges.
pub fn is_valid_coordinate(lat: f64, lon: f64) -> bool {
    lat.is_finite()
        && lon.is_finite()
        && (-90.0..=90.0).contains(&lat)
        && (-180.0..=180.0).contains(&lon)
}

// ---------------------------------------------------------------------------------------
// WGS-84 <-> GCJ-02 <-> BD-09, for display on Chinese basemaps only.
//
// Chinese web maps (AMap/Gaode, Tencent) must show GCJ-02, a deliberately distorted datum
// (国测局坐标, "Mars coordinates"); Baidu adds its own BD-09 layer on top. The official
// transform is unpublished; the formula below is the one republished since the late 2000s,
// which agrees with the map services to about a metre. Where the constants come from:
// - the Krasovsky 1940 ellipsoid (semi-major axis a = 6,378,245 m, first eccentricity
//   squared e^2 = 0.00669342162296594323), the ellipsoid of the Beijing 1954 datum, which
//   the transform uses to turn its metre offsets into degrees (via the meridional and
//   prime-vertical radii of curvature);
// - the polynomial-plus-sine offset functions of (lon - 105, lat - 35) and the coarse
//   rectangle lon 72.004..137.8347, lat 0.8293..55.8271 outside which points are left
//   alone, as republished for example in the R package geoChina (Jun Cai, Tsinghua
//   University, on CRAN), whose documentation also gives the Beijing railway station pair
//   used in the tests (Wikipedia, "Restrictions on geographic data in China", describes the
//   system and its history);
// - BD-09 = GCJ-02 rotated and scaled with Baidu's x_pi = pi * 3000 / 180 terms.
// This code was written from those formulas, not copied from an implementation.
// Stored coordinates stay as received (WGS-84, DESIGN §5); nothing here changes them.
// ---------------------------------------------------------------------------------------

/// Semi-major axis of the Krasovsky 1940 ellipsoid, in metres.
const KRASOVSKY_A: f64 = 6_378_245.0;
/// First eccentricity squared of the Krasovsky 1940 ellipsoid, published as
/// 0.00669342162296594323; the last two digits are beyond f64 precision.
const KRASOVSKY_EE: f64 = 0.006_693_421_622_965_943;
/// Baidu's angular constant for the GCJ-02 <-> BD-09 layer.
const BD_X_PI: f64 = std::f64::consts::PI * 3000.0 / 180.0;
/// Inverse transforms iterate until the forward image is this close (degrees). 1e-10 degree
/// is about 0.01 mm, far below the 0.01 m the evidence checks could ever care about.
const INVERSE_TOLERANCE_DEG: f64 = 1e-10;
/// The forward transforms are near-identity with a tiny Jacobian deviation, so fixed-point
/// iteration gains several digits per step; 30 steps is a generous bound.
const INVERSE_MAX_STEPS: usize = 30;

/// True inside the rectangle where GCJ-02 applies. It is the customary coarse box around
/// China (it also covers some neighbours); points outside it pass through unchanged.
pub fn in_gcj02_area(lat: f64, lon: f64) -> bool {
    (72.004..=137.8347).contains(&lon) && (0.8293..=55.8271).contains(&lat)
}

/// Latitude offset function (before scaling to degrees) of x = lon - 105, y = lat - 35.
fn gcj_offset_lat(x: f64, y: f64) -> f64 {
    use std::f64::consts::PI;
    let mut offset = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * x.abs().sqrt();
    offset += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    offset += (20.0 * (y * PI).sin() + 40.0 * (y / 3.0 * PI).sin()) * 2.0 / 3.0;
    offset += (160.0 * (y / 12.0 * PI).sin() + 320.0 * (y / 30.0 * PI).sin()) * 2.0 / 3.0;
    offset
}

/// Longitude offset function (before scaling to degrees) of x = lon - 105, y = lat - 35.
fn gcj_offset_lon(x: f64, y: f64) -> f64 {
    use std::f64::consts::PI;
    let mut offset = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * x.abs().sqrt();
    offset += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    offset += (20.0 * (x * PI).sin() + 40.0 * (x / 3.0 * PI).sin()) * 2.0 / 3.0;
    offset += (150.0 * (x / 12.0 * PI).sin() + 300.0 * (x / 30.0 * PI).sin()) * 2.0 / 3.0;
    offset
}

/// WGS-84 -> GCJ-02 for display on AMap/Tencent basemaps; `(lat, lon)` in, `(lat, lon)`
/// out. Points outside China (see [`in_gcj02_area`]) are returned unchanged.
pub fn wgs84_to_gcj02(lat: f64, lon: f64) -> (f64, f64) {
    if !in_gcj02_area(lat, lon) {
        return (lat, lon);
    }
    let (x, y) = (lon - 105.0, lat - 35.0);
    let rad_lat = lat.to_radians();
    let sin_lat = rad_lat.sin();
    // 1 - e^2 sin^2(phi): the ellipsoid's radii of curvature are expressed through it.
    let w2 = 1.0 - KRASOVSKY_EE * sin_lat * sin_lat;
    let w = w2.sqrt();
    // Meridional radius M = a(1 - e^2) / W^3; prime-vertical radius N = a / W.
    let meridional = KRASOVSKY_A * (1.0 - KRASOVSKY_EE) / (w2 * w);
    let prime_vertical = KRASOVSKY_A / w;
    let d_lat = (gcj_offset_lat(x, y) / meridional).to_degrees();
    let d_lon = (gcj_offset_lon(x, y) / (prime_vertical * rad_lat.cos())).to_degrees();
    (lat + d_lat, lon + d_lon)
}

/// Inverts a near-identity forward map by fixed-point iteration: guess, map forward, move
/// the guess by the miss, until the forward image lands within [`INVERSE_TOLERANCE_DEG`].
fn invert(target: (f64, f64), forward: impl Fn(f64, f64) -> (f64, f64)) -> (f64, f64) {
    let mut guess = target;
    for _ in 0..INVERSE_MAX_STEPS {
        let image = forward(guess.0, guess.1);
        let miss = (image.0 - target.0, image.1 - target.1);
        if miss.0.abs() < INVERSE_TOLERANCE_DEG && miss.1.abs() < INVERSE_TOLERANCE_DEG {
            break;
        }
        guess = (guess.0 - miss.0, guess.1 - miss.1);
    }
    guess
}

/// GCJ-02 -> WGS-84, by iterating [`wgs84_to_gcj02`] until the round trip is within about
/// 0.01 mm (the one-step "subtract the offset" shortcut is off by up to a few metres).
/// Points outside China are returned unchanged.
pub fn gcj02_to_wgs84(lat: f64, lon: f64) -> (f64, f64) {
    if !in_gcj02_area(lat, lon) || !lat.is_finite() || !lon.is_finite() {
        return (lat, lon);
    }
    invert((lat, lon), wgs84_to_gcj02)
}

/// GCJ-02 -> BD-09 (Baidu Maps), `(lat, lon)` in and out. Baidu applies its layer on top of
/// GCJ-02 everywhere, so there is no area check here.
pub fn gcj02_to_bd09(lat: f64, lon: f64) -> (f64, f64) {
    let z = lon.hypot(lat) + 0.00002 * (lat * BD_X_PI).sin();
    let theta = lat.atan2(lon) + 0.000003 * (lon * BD_X_PI).cos();
    (z * theta.sin() + 0.006, z * theta.cos() + 0.0065)
}

/// BD-09 -> GCJ-02, by iterating [`gcj02_to_bd09`] (exact to about 0.01 mm, unlike the
/// usual one-step approximation).
pub fn bd09_to_gcj02(lat: f64, lon: f64) -> (f64, f64) {
    if !lat.is_finite() || !lon.is_finite() {
        return (lat, lon);
    }
    invert((lat, lon), gcj02_to_bd09)
}

/// The same point in WGS-84, whatever system it was recorded in. Evidence distances are
/// computed between WGS-84 points, because a GCJ-02 household pin and a WGS-84 fix of the
/// same doorstep differ by hundreds of metres.
pub fn to_wgs84(point: &GeoPoint) -> GeoPoint {
    let (lat, lon) = match point.crs {
        Crs::Wgs84 => (point.lat, point.lon),
        Crs::Gcj02 => gcj02_to_wgs84(point.lat, point.lon),
        Crs::Bd09 => {
            let (lat, lon) = bd09_to_gcj02(point.lat, point.lon);
            gcj02_to_wgs84(lat, lon)
        }
    };
    GeoPoint {
        lat,
        lon,
        crs: Crs::Wgs84,
    }
}

/// The same point in GCJ-02, for drawing on an AMap/Tencent basemap.
pub fn to_gcj02(point: &GeoPoint) -> GeoPoint {
    let (lat, lon) = match point.crs {
        Crs::Wgs84 => wgs84_to_gcj02(point.lat, point.lon),
        Crs::Gcj02 => (point.lat, point.lon),
        Crs::Bd09 => bd09_to_gcj02(point.lat, point.lon),
    };
    GeoPoint {
        lat,
        lon,
        crs: Crs::Gcj02,
    }
}

/// Distance in metres between two points recorded in any coordinate systems, after
/// converting both to WGS-84. Use this for evidence; [`distance_between`] refuses mixed
/// systems instead.
pub fn distance_normalised(a: &GeoPoint, b: &GeoPoint) -> f64 {
    let (a, b) = (to_wgs84(a), to_wgs84(b));
    distance_m(a.lat, a.lon, b.lat, b.lon)
}

#[cfg(test)]
mod tests {
    #[test]
    fn distances_read_in_metres_below_a_kilometre_and_kilometres_with_one_decimal_above() {
        use super::distance_zh;
        assert_eq!(distance_zh(0.0), "0 米");
        assert_eq!(distance_zh(812.4), "812 米");
        assert_eq!(distance_zh(999.4), "999 米");
        assert_eq!(distance_zh(999.6), "1.0 公里");
        assert_eq!(distance_zh(1_000.0), "1.0 公里");
        assert_eq!(distance_zh(8_430.0), "8.4 公里");
        assert_eq!(distance_zh(8_430_544.0), "8430.5 公里");
        assert_eq!(distance_zh(f64::NAN), "未知距离");
    }

    use super::*;

    #[test]
    fn one_degree_of_latitude_is_about_111_km() {
        let metres = distance_m(30.0, 110.0, 31.0, 110.0);
        assert!((metres - 111_195.0).abs() < 50.0, "{metres}");
    }

    #[test]
    fn beijing_to_shanghai_matches_the_published_great_circle_distance() {
        // Tiananmen (39.9087, 116.3975) to the Bund (31.2400, 121.4900): about 1,067 km.
        let km = distance_m(39.9087, 116.3975, 31.2400, 121.4900) / 1000.0;
        assert!((km - 1067.0).abs() < 5.0, "{km}");
    }

    #[test]
    fn distance_needs_matching_coordinate_systems() {
        use crate::codes::Crs;
        let a = GeoPoint {
            lat: 30.0,
            lon: 110.0,
            crs: Crs::Wgs84,
        };
        let b = GeoPoint {
            lat: 30.0,
            lon: 110.001,
            crs: Crs::Gcj02,
        };
        assert_eq!(distance_between(&a, &b), None);
        assert!(
            distance_between(
                &a,
                &GeoPoint {
                    crs: Crs::Wgs84,
                    ..b
                }
            )
            .is_some()
        );
    }

    #[test]
    fn impossible_coordinates_are_invalid() {
        assert!(is_valid_coordinate(43.46, 11.88));
        assert!(!is_valid_coordinate(91.0, 0.0));
        assert!(!is_valid_coordinate(0.0, 180.5));
        assert!(!is_valid_coordinate(f64::NAN, 0.0));
    }

    /// Metres between two `(lat, lon)` pairs.
    fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
        distance_m(a.0, a.1, b.0, b.1)
    }

    #[test]
    fn beijing_railway_station_matches_the_published_gcj02_pair() {
        // geoChina (Jun Cai, CRAN) documents Beijing railway station as WGS-84
        // (39.90105, 116.42079) = GCJ-02 (39.90245, 116.42703) (R/cst.R examples), both rounded to 1e-5 degree
        // (about 1 m), so the tolerance is one unit in the last published digit.
        let (lat, lon) = wgs84_to_gcj02(39.90105, 116.42079);
        assert!((lat - 39.90245).abs() < 1e-5, "{lat}");
        assert!((lon - 116.42703).abs() < 1e-5, "{lon}");
        let back = gcj02_to_wgs84(39.90245, 116.42703);
        assert!(metres(back, (39.90105, 116.42079)) < 1.5, "{back:?}");
        // The same documentation gives the station in BD-09 as (39.90851, 116.43351).
        let (lat, lon) = gcj02_to_bd09(39.90245, 116.42703);
        assert!((lat - 39.90851).abs() < 1e-5, "{lat}");
        assert!((lon - 116.43351).abs() < 1e-5, "{lon}");
        let station = GeoPoint {
            lat: 39.90851,
            lon: 116.43351,
            crs: Crs::Bd09,
        };
        let wgs = to_wgs84(&station);
        assert!(
            metres((wgs.lat, wgs.lon), (39.90105, 116.42079)) < 2.0,
            "{wgs:?}"
        );
    }

    #[test]
    fn conversions_agree_with_an_independent_implementation() {
        // The unit tests of gcoord (hujiulong/gcoord, test/unit/crs/GCJ02.spec.js), written
        // lon-first there: GCJ-02 (45, 123) -> WGS-84 (44.99804071, 122.99395597) and
        // -> BD-09 (45.00636899, 123.00636499), checked to 5 decimals.
        let (lat, lon) = gcj02_to_wgs84(45.0, 123.0);
        assert!((lat - 44.998_040_71).abs() < 1e-6, "{lat}");
        assert!((lon - 122.993_955_97).abs() < 1e-6, "{lon}");
        let (lat, lon) = gcj02_to_bd09(45.0, 123.0);
        assert!((lat - 45.006_368_99).abs() < 1e-7, "{lat}");
        assert!((lon - 123.006_364_99).abs() < 1e-7, "{lon}");
    }

    #[test]
    fn mainland_offsets_are_hundreds_of_metres_and_round_trip_exactly() {
        // Provincial capitals from Harbin to Haikou and Urumqi to Shanghai, plus border
        // villages in Kashgar, Mohe and Xishuangbanna prefectures (WGS-84).
        let places = [
            (39.9042, 116.4074),
            (31.2304, 121.4737),
            (23.1291, 113.2644),
            (30.5728, 104.0668),
            (43.8256, 87.6168),
            (29.6520, 91.1721),
            (45.8038, 126.5350),
            (20.0440, 110.1999),
            (36.0611, 103.8343),
            (26.6470, 106.6302),
            (39.4700, 75.9900),
            (53.4000, 122.3000),
            (21.5000, 101.5000),
        ];
        for wgs in places {
            let gcj = wgs84_to_gcj02(wgs.0, wgs.1);
            let offset = metres(wgs, gcj);
            assert!((100.0..=700.0).contains(&offset), "{wgs:?}: {offset} m");
            let back = gcj02_to_wgs84(gcj.0, gcj.1);
            assert!(metres(wgs, back) < 0.01, "{wgs:?} -> {back:?}");
        }
    }

    #[test]
    fn points_outside_china_are_unchanged() {
        for (lat, lon) in [
            (51.5007, -0.1246),   // London
            (35.6586, 139.7454),  // Tokyo, east of the box
            (-33.8568, 151.2153), // Sydney
            (0.0, 0.0),
            (60.0, 100.0), // Siberia, north of the box
        ] {
            assert_eq!(wgs84_to_gcj02(lat, lon), (lat, lon));
            assert_eq!(gcj02_to_wgs84(lat, lon), (lat, lon));
        }
        let nan = gcj02_to_wgs84(f64::NAN, 116.0);
        assert!(nan.0.is_nan());
    }

    #[test]
    fn points_in_any_system_normalise_to_the_same_doorstep() {
        let wgs = GeoPoint {
            lat: 26.6470,
            lon: 106.6302,
            crs: Crs::Wgs84,
        };
        let gcj = to_gcj02(&wgs);
        assert_eq!(gcj.crs, Crs::Gcj02);
        let (bd_lat, bd_lon) = gcj02_to_bd09(gcj.lat, gcj.lon);
        let bd = GeoPoint {
            lat: bd_lat,
            lon: bd_lon,
            crs: Crs::Bd09,
        };
        assert!(distance_normalised(&wgs, &gcj) < 0.01);
        assert!(distance_normalised(&wgs, &bd) < 0.01);
        assert!(distance_normalised(&gcj, &bd) < 0.01);
        assert!(metres((bd.lat, bd.lon), (gcj.lat, gcj.lon)) > 100.0);
        assert!(distance_m(wgs.lat, wgs.lon, gcj.lat, gcj.lon) > 100.0);
    }

    proptest::proptest! {
        #[test]
        fn gcj02_and_bd09_round_trips_are_within_a_centimetre(
            lat in 18.0f64..53.5,
            lon in 73.5f64..135.0,
        ) {
            let gcj = wgs84_to_gcj02(lat, lon);
            let back = gcj02_to_wgs84(gcj.0, gcj.1);
            proptest::prop_assert!(metres((lat, lon), back) < 0.01);
            let bd = gcj02_to_bd09(gcj.0, gcj.1);
            let gcj_again = bd09_to_gcj02(bd.0, bd.1);
            proptest::prop_assert!(metres(gcj, gcj_again) < 0.01);
        }
    }
}
