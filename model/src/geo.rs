//! Distances on the earth, for "how far was the visit from the household" checks.

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

#[cfg(test)]
mod tests {
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
}
