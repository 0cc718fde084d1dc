//! Evidence flags (DESIGN §5; domain.md §4 rules R1–R6 and R8): pure judgements about
//! whether a visit's GPS fix, photos and timing look like a real home visit.
//!
//! Flags **never reject** anything. They are computed when a visit is submitted and again
//! when its photos arrive, stored with the visit, and shown to reviewers beside the record.
//! Every threshold is a setting ([`EvidenceSettings`]). The caller (the server) gathers the
//! inputs from storage — the household's registered location, this visit's photo metadata,
//! photos of *other* visits with their hashes, and the same cadre's other visits — and
//! [`evaluate`] turns them into flags in a deterministic order, with no I/O.
//!
//! Distances are always measured between WGS-84 points: a GCJ-02 or BD-09 household pin is
//! converted first ([`crate::geo::to_wgs84`]), because a basemap pin and a GPS fix of the
//! same doorstep differ by hundreds of metres. Days are business days in Beijing time.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::codes::{CodeList, LocationProvider, VisitMode};
use crate::geo;
use crate::household::GeoPoint;
use crate::time_util;
use crate::visit::Visit;

/// Thresholds of the evidence checks. Every field has a default (see [`Default`]), so a
/// settings file only names the ones it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvidenceSettings {
    /// R1: a fix farther than this from the household's registered location, after widening
    /// by the fix's reported accuracy, is far. Default 300 m (domain.md R1; configurable
    /// 100–2,000 m there; the huatang app used 2,000 m).
    pub household_radius_m: f64,
    /// R1: a fix whose reported accuracy is worse than this cannot show presence at one
    /// household and is flagged as inaccurate. Default 100 m (domain.md R1 "fixes with
    /// accuracy_m > 100").
    pub max_fix_accuracy_m: f64,
    /// R3: a photo's EXIF capture time must fall within check-in − this .. check-out + this.
    /// Default 60 min (DESIGN §5 "± 1 h"; domain.md R3 proposes a stricter 10 min).
    pub exif_time_tolerance_minutes: u32,
    /// R3: a photo's EXIF GPS farther than this from the visit's fix (or, without a fix,
    /// from the household) is inconsistent. Default 500 m: the household radius plus room
    /// for two independent phone fixes and photos of fields or projects near the house.
    pub photo_fix_max_distance_m: f64,
    /// R4: two different files whose 64-bit perceptual hashes differ in at most this many
    /// bits are near-duplicates. Default 6 (domain.md R4).
    pub near_duplicate_max_bits: u32,
    /// R2/R6: one cadre's consecutive visits needing a faster average speed than this are
    /// impossible travel. Default 120 km/h (DESIGN §5), well above rural road speeds.
    pub max_travel_kmh: f64,
    /// R2/R6: moves shorter than this are never called impossible travel: over a few hundred
    /// metres, fix error and rounded check-in times dominate the speed. Default 1 km; this
    /// is also the jump that counts as impossible when no time passed at all.
    pub min_travel_km: f64,
    /// R6: more in-person visits than this by one cadre on one Beijing calendar day is
    /// flagged. Default 8 (domain.md R6): a real 入户 visit with its record takes 30–60 min,
    /// and households in a village lie minutes to an hour apart, so eight is already a full
    /// working day; more suggests visits recorded without being made.
    pub max_in_person_visits_per_day: u32,
    /// R5: an in-person visit shorter than this is flagged. Default 10 min, a floor for
    /// looking around the house and talking with the family; 烟台's ≥ 1 h rule is local
    /// policy and can be set here (domain.md R5 proposes 15).
    pub min_visit_minutes: u32,
    /// R3: the phone's clock differing from the server's by more than this when it sent
    /// the visit is flagged, because then its check-in and EXIF times cannot be trusted.
    /// The same tolerance applies to the phone's clock against the satellite times the
    /// visit carries (the fix's GNSS time, a photo's EXIF GPS time). Default 10 min
    /// (domain.md R3).
    pub max_clock_skew_minutes: u32,
    /// 补录: a visit the server first received more than this many days after its check-in
    /// is a late record. Default 7 (DESIGN §5): a week covers a phone left without signal in
    /// the villages; a record made weeks later is written from memory, not at the household.
    pub late_record_max_days: u32,
    /// 补录: a visit claiming to have lasted longer than this many hours is flagged too,
    /// because a real 入户 visit takes well under an hour and a check-out that long after the
    /// check-in usually means the record was completed afterwards. Default 8.
    pub late_record_max_hours: u32,
}

impl Default for EvidenceSettings {
    fn default() -> Self {
        Self {
            household_radius_m: 300.0,
            max_fix_accuracy_m: 100.0,
            exif_time_tolerance_minutes: 60,
            photo_fix_max_distance_m: 500.0,
            near_duplicate_max_bits: 6,
            max_travel_kmh: 120.0,
            min_travel_km: 1.0,
            max_in_person_visits_per_day: 8,
            min_visit_minutes: 10,
            max_clock_skew_minutes: 10,
            late_record_max_days: 7,
            late_record_max_hours: 8,
        }
    }
}

/// One evidence flag shown to reviewers. Serialised with its [`EvidenceFlag::code`] as the
/// `code` tag, e.g. `{"code":"gps_far","distance_m":812.0,"allowed_m":310.0}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum EvidenceFlag {
    /// R8: the visit was not made in person; informational, it does not count toward the
    /// monthly 入户率.
    NotInPerson { mode: VisitMode },
    /// R1: an in-person visit without a GPS fix (allowed: indoors, mountains).
    GpsMissing,
    /// R2: the phone reported the fix as coming from a mock-location provider.
    MockLocation,
    /// R1: the fix's reported accuracy is too coarse to place the cadre at one household.
    GpsInaccurate { accuracy_m: f64, limit_m: f64 },
    /// R1: the fix is farther from the household than the radius widened by its accuracy.
    GpsFar { distance_m: f64, allowed_m: f64 },
    /// R2/R6: the cadre could not have travelled between two consecutive visits in the time
    /// between them. One of the two ids is this visit. `kmh` is `None` when no time passed.
    ImpossibleTravel {
        previous_visit_id: String,
        next_visit_id: String,
        km: f64,
        hours: f64,
        kmh: Option<f64>,
    },
    /// DESIGN §5: an in-person visit without any in-app-camera photo (`gallery_photos` is
    /// how many gallery photos it has instead).
    PhotoMissing { gallery_photos: u32 },
    /// R3: an in-app-camera photo without an EXIF capture time.
    PhotoExifMissing { photo_id: String },
    /// R3: an in-app-camera photo whose EXIF block could be read only in part (a malformed
    /// entry, typically left by an editor's re-save). The tags that parsed are still
    /// checked; `time_read` says whether the capture time was among them. Shown instead
    /// of [`EvidenceFlag::PhotoExifMissing`]: damaged is not missing.
    PhotoExifDamaged { photo_id: String, time_read: bool },
    /// R3: a photo's EXIF capture time is outside the visit's window.
    PhotoExifTimeOutside {
        photo_id: String,
        #[serde(with = "time::serde::rfc3339")]
        exif_time: OffsetDateTime,
    },
    /// R3: a photo's EXIF GPS is far from the visit's fix (or from the household when the
    /// visit has no fix: `from_household`).
    PhotoExifGpsFar {
        photo_id: String,
        distance_m: f64,
        limit_m: f64,
        from_household: bool,
    },
    /// R4: the same file (SHA-256) is attached to a visit of another household, or of the
    /// same household in another month.
    PhotoReused {
        photo_id: String,
        other_visit_id: String,
        other_household_id: String,
        same_household_other_month: bool,
    },
    /// R4: a different file that looks the same (perceptual hash) is attached to a visit of
    /// another household or another month.
    PhotoNearDuplicate {
        photo_id: String,
        other_photo_id: String,
        other_visit_id: String,
        other_household_id: String,
        distance_bits: u32,
    },
    /// R5: an in-person visit shorter than the minimum (whole minutes, rounded down).
    TooShort { minutes: i64, min_minutes: u32 },
    /// R6: the cadre recorded more in-person visits on this Beijing day (`YYYY-MM-DD`) than
    /// the limit; `count` includes this visit.
    TooManyVisitsInDay {
        count: u32,
        date: String,
        limit: u32,
    },
    /// R3: the phone's clock was off by more than the tolerance (positive: phone ahead),
    /// in minutes rounded away from zero.
    ClockSkew { skew_minutes: i64 },
    /// R3: the phone's clock disagreed with satellite time by more than the clock-skew
    /// tolerance when the visit was recorded, whatever its heartbeat says now: a clock set
    /// back to record a visit and restored before syncing is caught here. `photo_id` is
    /// `None` when the satellite time is the visit fix's (compared with the check-in ..
    /// check-out window) and names the photo when it is that photo's EXIF GPS time
    /// (compared with when the phone says it took the photo). `skew_minutes` is phone
    /// minus satellite (positive: phone ahead), rounded away from zero; the largest
    /// disagreement of the visit is reported.
    SatelliteTimeMismatch {
        photo_id: Option<String>,
        #[serde(with = "time::serde::rfc3339")]
        satellite_time: OffsetDateTime,
        skew_minutes: i64,
    },
    /// 补录 (late record, DESIGN §5): the server first received the visit more than
    /// `max_days` after its check-in (`submitted_late`; `submitted_at` is the server's
    /// receipt, never the phone's clock), or the visit claims to have lasted longer than
    /// `max_hours` (`too_long`, `duration_minutes` rounded down). At least one is true.
    LateRecord {
        #[serde(with = "time::serde::rfc3339")]
        checkin_at: OffsetDateTime,
        #[serde(with = "time::serde::rfc3339")]
        submitted_at: OffsetDateTime,
        submitted_late: bool,
        max_days: u32,
        duration_minutes: i64,
        too_long: bool,
        max_hours: u32,
    },
}

impl EvidenceFlag {
    /// Stable snake_case code, also the serde tag. Stored and sent over the wire; never
    /// rename one.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotInPerson { .. } => "not_in_person",
            Self::GpsMissing => "gps_missing",
            Self::MockLocation => "mock_location",
            Self::GpsInaccurate { .. } => "gps_inaccurate",
            Self::GpsFar { .. } => "gps_far",
            Self::ImpossibleTravel { .. } => "impossible_travel",
            Self::PhotoMissing { .. } => "photo_missing",
            Self::PhotoExifMissing { .. } => "photo_exif_missing",
            Self::PhotoExifDamaged { .. } => "photo_exif_damaged",
            Self::PhotoExifTimeOutside { .. } => "photo_exif_time_outside",
            Self::PhotoExifGpsFar { .. } => "photo_exif_gps_far",
            Self::PhotoReused { .. } => "photo_reused",
            Self::PhotoNearDuplicate { .. } => "photo_near_duplicate",
            Self::TooShort { .. } => "too_short",
            Self::TooManyVisitsInDay { .. } => "too_many_visits_in_day",
            Self::ClockSkew { .. } => "clock_skew",
            Self::SatelliteTimeMismatch { .. } => "satellite_time_mismatch",
            Self::LateRecord { .. } => "late_record",
        }
    }

    /// Short Simplified Chinese label for the console.
    pub fn label_zh(&self) -> &'static str {
        match self {
            Self::NotInPerson { .. } => "非入户走访",
            Self::GpsMissing => "缺少定位",
            Self::MockLocation => "模拟定位",
            Self::GpsInaccurate { .. } => "定位精度差",
            Self::GpsFar { .. } => "定位距农户过远",
            Self::ImpossibleTravel { .. } => "行程速度异常",
            Self::PhotoMissing { .. } => "入户无现场照片",
            Self::PhotoExifMissing { .. } => "照片缺少拍摄时间",
            Self::PhotoExifDamaged { .. } => "照片EXIF信息损坏",
            Self::PhotoExifTimeOutside { .. } => "照片拍摄时间不符",
            Self::PhotoExifGpsFar { .. } => "照片拍摄地点不符",
            Self::PhotoReused { .. } => "照片重复使用",
            Self::PhotoNearDuplicate { .. } => "照片高度相似",
            Self::TooShort { .. } => "走访时间过短",
            Self::TooManyVisitsInDay { .. } => "单日入户过多",
            Self::ClockSkew { .. } => "设备时间偏差",
            Self::SatelliteTimeMismatch { .. } => "设备时间与卫星时间不符",
            Self::LateRecord { .. } => "补录",
        }
    }

    /// One sentence for the reviewer, in Simplified Chinese (the console's language), with
    /// the numbers behind the flag, naming photos, visits and households generically (照片,
    /// 另一次走访, 其他农户); [`EvidenceFlag::detail_named`] names them.
    pub fn detail(&self) -> String {
        self.detail_named(&FlagNames::default())
    }

    /// [`EvidenceFlag::detail`] with the names a reviewer reads instead of ids: photos by
    /// their position in their visit (照片1…), visits and households by the household's
    /// name. Raw ids never appear: what `names` does not know gets a generic name.
    pub fn detail_named(&self, names: &FlagNames) -> String {
        let distance = geo::distance_zh;
        match self {
            Self::NotInPerson { mode } => {
                format!("走访方式为“{}”，不计入本月入户走访率。", mode.label_zh())
            }
            Self::GpsMissing => {
                "入户走访没有定位（室内或山区可能无信号），请结合照片核实。".to_owned()
            }
            Self::MockLocation => "手机报告该定位来自模拟位置软件，不能作为到户依据。".to_owned(),
            Self::GpsInaccurate {
                accuracy_m,
                limit_m,
            } => format!(
                "定位精度 {}，粗于 {}，无法证明到户。",
                distance(*accuracy_m),
                distance(*limit_m)
            ),
            Self::GpsFar {
                distance_m,
                allowed_m,
            } => format!(
                "定位距农户登记位置 {}，超过核验范围 {}（半径加定位精度）。",
                distance(*distance_m),
                distance(*allowed_m)
            ),
            Self::ImpossibleTravel {
                previous_visit_id,
                next_visit_id,
                km,
                hours,
                kmh,
            } => {
                let (from, to) = (names.visit(previous_visit_id), names.visit(next_visit_id));
                let far = distance(km * 1000.0);
                match kmh {
                    Some(kmh) => format!(
                        "{from}签退到{to}签到相距 {far}、间隔 {:.0} 分钟，需时速 {kmh:.0} 公里。",
                        hours * 60.0
                    ),
                    None => format!("{from}与{to}相距 {far}，时间却无间隔或重叠。"),
                }
            }
            Self::PhotoMissing { gallery_photos: 0 } => "入户走访没有照片。".to_owned(),
            Self::PhotoMissing { gallery_photos } => {
                format!("入户走访没有应用内拍摄的照片（只有 {gallery_photos} 张相册照片）。")
            }
            Self::PhotoExifMissing { photo_id } => {
                format!(
                    "{}标为应用内拍摄，却没有 EXIF 拍摄时间。",
                    names.photo(photo_id)
                )
            }
            Self::PhotoExifDamaged {
                photo_id,
                time_read,
            } => format!(
                "{}的 EXIF 信息部分损坏，可能经编辑软件改存过；{}",
                names.photo(photo_id),
                if *time_read {
                    "能读出的拍摄时间和地点已照常核验。"
                } else {
                    "读不出拍摄时间。"
                }
            ),
            Self::PhotoExifTimeOutside {
                photo_id,
                exif_time,
            } => format!(
                "{}的拍摄时间 {} 不在签到签退时间前后范围内。",
                names.photo(photo_id),
                time_util::beijing_minutes(*exif_time)
            ),
            Self::PhotoExifGpsFar {
                photo_id,
                distance_m,
                limit_m,
                from_household,
            } => format!(
                "{}的拍摄地点距{} {}，超过 {}。",
                names.photo(photo_id),
                if *from_household {
                    "农户登记位置"
                } else {
                    "走访定位"
                },
                distance(*distance_m),
                distance(*limit_m)
            ),
            Self::PhotoReused {
                photo_id,
                other_visit_id,
                other_household_id: _,
                same_household_other_month,
            } => {
                let place = if *same_household_other_month {
                    "本户其他月份"
                } else {
                    ""
                };
                format!(
                    "{}与{place}{}的照片是同一文件。",
                    names.photo(photo_id),
                    names.visit(other_visit_id)
                )
            }
            Self::PhotoNearDuplicate {
                photo_id,
                other_photo_id,
                other_visit_id,
                other_household_id: _,
                distance_bits,
            } => format!(
                "{}与{}的{}高度相似（感知哈希相差 {distance_bits} 位）。",
                names.photo(photo_id),
                names.visit(other_visit_id),
                names.photo(other_photo_id)
            ),
            Self::TooShort {
                minutes,
                min_minutes,
            } => format!("入户走访仅 {minutes} 分钟，少于 {min_minutes} 分钟。"),
            Self::TooManyVisitsInDay { count, date, limit } => {
                format!("{date} 当天入户走访 {count} 户，超过 {limit} 户。")
            }
            Self::ClockSkew { skew_minutes } => {
                if *skew_minutes >= 0 {
                    format!("手机时间比服务器快 {skew_minutes} 分钟，签到和拍摄时间可能不准。")
                } else {
                    format!(
                        "手机时间比服务器慢 {} 分钟，签到和拍摄时间可能不准。",
                        skew_minutes.unsigned_abs()
                    )
                }
            }
            Self::SatelliteTimeMismatch {
                photo_id,
                satellite_time,
                skew_minutes,
            } => {
                let (source, device) = match photo_id {
                    None => ("定位".to_owned(), "签到签退时间"),
                    Some(photo_id) => (format!("{}的 GPS ", names.photo(photo_id)), "拍摄时间"),
                };
                format!(
                    "{source}卫星时间为 {}，手机记录的{device}比它{} {}，手机时间可能被调过。",
                    time_util::beijing_minutes(*satellite_time),
                    if *skew_minutes >= 0 { "快" } else { "慢" },
                    span_zh(skew_minutes.unsigned_abs())
                )
            }
            Self::LateRecord {
                checkin_at,
                submitted_at,
                submitted_late,
                max_days,
                duration_minutes,
                too_long,
                max_hours,
            } => {
                let mut parts = Vec::new();
                if *submitted_late {
                    let gap = (*submitted_at - *checkin_at).max(Duration::ZERO);
                    parts.push(format!(
                        "签到于 {}，服务器 {} 才收到，相隔 {} 天 {} 小时，超过 {max_days} 天",
                        time_util::beijing_minutes(*checkin_at),
                        time_util::beijing_minutes(*submitted_at),
                        gap.whole_days(),
                        gap.whole_hours() % 24,
                    ));
                }
                if *too_long {
                    parts.push(format!(
                        "走访时长 {} 小时 {} 分钟，超过 {max_hours} 小时",
                        duration_minutes / 60,
                        duration_minutes % 60,
                    ));
                }
                format!("{}，可能是事后补录。", parts.join("；"))
            }
        }
    }

    /// True for flags that inform rather than warn (a non-in-person visit is allowed with an
    /// exception reason; it just does not count toward the in-person rate).
    pub fn is_informational(&self) -> bool {
        matches!(self, Self::NotInPerson { .. })
    }
}

impl std::fmt::Display for EvidenceFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}：{}", self.label_zh(), self.detail())
    }
}

/// What the server knows about one photo of the visit being evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoEvidence {
    pub photo_id: String,
    /// Hex SHA-256 of the original bytes.
    pub sha256: String,
    /// 64-bit perceptual hash, when the image could be decoded.
    pub phash: Option<u64>,
    /// EXIF DateTimeOriginal with OffsetTimeOriginal. When the photo has no offset tag, the
    /// caller reads the local time as Beijing time (phones in China are set to it).
    #[serde(with = "time::serde::rfc3339::option")]
    pub exif_time: Option<OffsetDateTime>,
    /// EXIF GPS `(lat, lon)`, WGS-84 as the EXIF standard defines it.
    pub exif_gps: Option<(f64, f64)>,
    /// The app says the photo came from its own camera (not the gallery).
    pub in_app_camera: bool,
    /// The photo has an EXIF block that could be read only in part; `exif_time` and
    /// `exif_gps` are what parsed.
    #[serde(default)]
    pub exif_damaged: bool,
    /// EXIF GPSDateStamp + GPSTimeStamp: the satellite (UTC) time of the fix the camera
    /// wrote into the photo, independent of the phone's clock.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub gps_time: Option<OffsetDateTime>,
    /// When the phone says it took the photo (`PhotoRecord::captured_at_device`, the
    /// phone's clock). Without it the EXIF capture time stands in: an in-app camera writes
    /// it from the same clock.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub device_time: Option<OffsetDateTime>,
}

/// A photo attached to some *other* visit, to compare hashes against. The caller picks the
/// candidates (domain.md R4 suggests the same cadre's or household's last 12 months and the
/// county's last 90 days); [`evaluate`] decides which matches matter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherPhotoUse {
    pub photo_id: String,
    pub visit_id: String,
    pub household_id: String,
    /// Business month (`YYYY-MM`, Beijing time) of that visit.
    pub month: String,
    pub sha256: String,
    pub phash: Option<u64>,
}

/// Another visit by the same cadre, for travel speed and per-day counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CadreVisitSummary {
    pub visit_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub checkin_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub checkout_at: OffsetDateTime,
    /// The visit's fix `(lat, lon)` in WGS-84 (convert with [`geo::to_wgs84`] first).
    pub gps: Option<(f64, f64)>,
    /// Mode was 入户.
    pub in_person: bool,
}

/// What the reader of a flag text calls the photos and visits it mentions
/// ([`EvidenceFlag::detail_named`]). The caller fills it from what the reader may see: a
/// visit outside the reader's area keeps its generic name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagNames {
    /// Photo id → its name, by position in its own visit: `照片1`, `照片2`, …
    pub photos: std::collections::BTreeMap<String, String>,
    /// Visit id → how the text names it: `本次走访`, or e.g. `张大山户 11月2日的走访`.
    pub visits: std::collections::BTreeMap<String, String>,
}

impl FlagNames {
    /// `照片{n}` for a photo at 1-based `position` in its visit.
    pub fn photo_name(position: usize) -> String {
        format!("照片{position}")
    }

    /// How a flag text names another visit: the household's head and the check-in's Beijing
    /// date, with the cadre when it is not the reader's visit's cadre.
    pub fn visit_name(head_name: &str, checkin_at: OffsetDateTime, cadre: Option<&str>) -> String {
        let local = time_util::in_beijing(checkin_at);
        let date = format!("{}月{}日", u8::from(local.month()), local.day());
        match cadre {
            Some(cadre) => format!("{head_name}户 {date}的走访（帮扶干部 {cadre}）"),
            None => format!("{head_name}户 {date}的走访"),
        }
    }

    fn photo(&self, photo_id: &str) -> &str {
        self.photos.get(photo_id).map_or("照片", String::as_str)
    }

    fn visit(&self, visit_id: &str) -> &str {
        self.visits
            .get(visit_id)
            .map_or("另一次走访", String::as_str)
    }
}

/// When and how the server received the visit being evaluated: the facts about a visit that
/// come from the server's clock rather than from the record itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Receipt {
    /// When the server first received the visit (its first revision). A correction after a
    /// return (退回) arrives later by design, so the 补录 check measures from the first
    /// submission, not from the latest revision.
    pub first_submitted_at: OffsetDateTime,
    /// Phone clock minus server clock when the visit was pushed ([`clock_skew`]); `None`
    /// when unknown.
    pub device_skew: Option<Duration>,
}

/// A span of whole minutes as a reviewer reads it: minutes under an hour, hours and minutes
/// under a day, days and hours beyond.
fn span_zh(minutes: u64) -> String {
    match minutes {
        0..60 => format!("{minutes} 分钟"),
        60..1440 => format!("{} 小时 {} 分钟", minutes / 60, minutes % 60),
        _ => format!("{} 天 {} 小时", minutes / 1440, minutes % 1440 / 60),
    }
}

/// Hamming distance between two 64-bit perceptual hashes: how many bits differ.
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// Device clock minus server clock for the skew check: `device_time` is the clock the phone
/// put in its request, `server_received` when the server received it. Positive means the
/// phone is ahead.
pub fn clock_skew(device_time: OffsetDateTime, server_received: OffsetDateTime) -> Duration {
    device_time - server_received
}

/// `YYYY-MM-DD` of an instant in Beijing time: the business day a visit belongs to.
pub fn business_date(instant: OffsetDateTime) -> String {
    let local = time_util::in_beijing(instant);
    format!(
        "{:04}-{:02}-{:02}",
        local.year(),
        u8::from(local.month()),
        local.day()
    )
}

/// Computes the evidence flags of one visit revision. Pure and deterministic: the same
/// inputs give the same flags in the same order — visit mode, location (missing, mock,
/// inaccurate, far), travel (previous then next visit), photos (missing, then for each
/// photo in the visit's order: EXIF damaged or missing, EXIF time, EXIF GPS, reuse, near
/// duplicates), duration, visits that day, late record (补录), clock skew (heartbeat), then
/// the phone's clock against satellite time.
///
/// - `household_location`: the household's registered point in any CRS; `None` skips the
///   distance check (there is nothing to compare with).
/// - `photos`: metadata of this visit's photos that have arrived; photos not listed in
///   `visit.photo_ids` are ignored, and photos still uploading are judged when they arrive.
/// - `other_photos`: photos of other visits to compare hashes against.
/// - `cadre_visits`: the same cadre's other visits (this visit's id, if present, is
///   skipped).
/// - `receipt`: when the server first received the visit and the phone's clock skew then.
///
/// Checks that only make sense at the household (missing or far fix, missing photos,
/// duration, visits per day) apply to in-person visits only; the others apply to every
/// visit.
pub fn evaluate(
    visit: &Visit,
    household_location: Option<GeoPoint>,
    photos: &[PhotoEvidence],
    other_photos: &[OtherPhotoUse],
    cadre_visits: &[CadreVisitSummary],
    receipt: &Receipt,
    settings: &EvidenceSettings,
) -> Vec<EvidenceFlag> {
    let mut flags = Vec::new();
    let in_person = visit.mode == VisitMode::InPerson;
    if !in_person {
        flags.push(EvidenceFlag::NotInPerson { mode: visit.mode });
    }

    let fix = visit
        .gps
        .filter(|fix| geo::is_valid_coordinate(fix.lat, fix.lon));
    let fix_wgs = fix.map(|fix| {
        let point = geo::to_wgs84(&GeoPoint {
            lat: fix.lat,
            lon: fix.lon,
            crs: fix.crs,
        });
        (point.lat, point.lon)
    });
    let home_wgs = household_location
        .filter(|home| geo::is_valid_coordinate(home.lat, home.lon))
        .map(|home| {
            let point = geo::to_wgs84(&home);
            (point.lat, point.lon)
        });

    // Location (R1, R2).
    match (fix, fix_wgs) {
        (Some(fix), Some(here)) => {
            if fix.is_mock {
                flags.push(EvidenceFlag::MockLocation);
            }
            if in_person {
                // `Visit::validate` rejects non-finite accuracy; stay total (and
                // JSON-representable) anyway.
                let accuracy = if fix.accuracy_m.is_finite() {
                    fix.accuracy_m.max(0.0)
                } else {
                    f64::MAX
                };
                if accuracy > settings.max_fix_accuracy_m {
                    flags.push(EvidenceFlag::GpsInaccurate {
                        accuracy_m: accuracy,
                        limit_m: settings.max_fix_accuracy_m,
                    });
                }
                if let Some(home) = home_wgs {
                    let distance_m = metres(here, home);
                    let allowed_m = settings.household_radius_m + accuracy;
                    if distance_m > allowed_m {
                        flags.push(EvidenceFlag::GpsFar {
                            distance_m,
                            allowed_m,
                        });
                    }
                }
            }
        }
        _ => {
            if in_person {
                flags.push(EvidenceFlag::GpsMissing);
            }
        }
    }

    // Travel (R2, R6).
    if let Some(here) = fix_wgs {
        travel_flags(visit, here, cadre_visits, settings, &mut flags);
    }

    // Photos (R3, R4).
    photo_flags(
        visit,
        in_person,
        fix_wgs,
        home_wgs,
        photos,
        other_photos,
        settings,
        &mut flags,
    );

    // Duration (R5) and visits that day (R6).
    if in_person {
        let duration = visit.checkout_at - visit.checkin_at;
        if duration < Duration::minutes(i64::from(settings.min_visit_minutes)) {
            flags.push(EvidenceFlag::TooShort {
                minutes: duration.whole_minutes(),
                min_minutes: settings.min_visit_minutes,
            });
        }
        let date = business_date(visit.checkin_at);
        let mut same_day: Vec<&str> = cadre_visits
            .iter()
            .filter(|other| {
                other.in_person
                    && other.visit_id != visit.visit_id
                    && business_date(other.checkin_at) == date
            })
            .map(|other| other.visit_id.as_str())
            .collect();
        same_day.sort_unstable();
        same_day.dedup();
        let count = u32::try_from(same_day.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        if count > settings.max_in_person_visits_per_day {
            flags.push(EvidenceFlag::TooManyVisitsInDay {
                count,
                date,
                limit: settings.max_in_person_visits_per_day,
            });
        }
    }

    // Late record (补录), for every mode: a phone visit entered weeks later is as suspect.
    if let Some(flag) = late_record(visit, receipt.first_submitted_at, settings) {
        flags.push(flag);
    }

    // Clock skew (R3).
    if let Some(skew) = receipt.device_skew {
        let tolerance = Duration::minutes(i64::from(settings.max_clock_skew_minutes));
        if skew.abs() > tolerance {
            flags.push(EvidenceFlag::ClockSkew {
                skew_minutes: whole_minutes_away_from_zero(skew),
            });
        }
    }

    // The phone's clock against satellite time (R3), from what the visit itself carries.
    if let Some(flag) = satellite_time_mismatch(visit, photos, settings) {
        flags.push(flag);
    }

    flags
}

/// Minutes of a skew rounded away from zero, so a skew just over the tolerance never shows
/// as equal to it.
fn whole_minutes_away_from_zero(skew: Duration) -> i64 {
    let magnitude = (skew.abs().as_seconds_f64() / 60.0).ceil() as i64;
    if skew.is_negative() {
        -magnitude
    } else {
        magnitude
    }
}

/// The phone's clock against the satellite times the visit carries, independent of any
/// heartbeat: the fix's GNSS time must fall within the check-in .. check-out window the
/// phone's clock wrote, and each in-app photo's EXIF GPS time must agree with when the phone
/// says it took the photo, both within the clock-skew tolerance (strictly more is flagged).
/// The largest disagreement is reported; on a tie the fix, then photos in the visit's order.
///
/// Left out, because their times say nothing about this phone's clock: a network fix (its
/// time comes from the phone's own clock), a mock fix (the mock app sets its time), and
/// gallery photos (another camera's clock).
fn satellite_time_mismatch(
    visit: &Visit,
    photos: &[PhotoEvidence],
    settings: &EvidenceSettings,
) -> Option<EvidenceFlag> {
    // (phone minus satellite, the photo or None for the fix, the satellite time)
    let mut readings: Vec<(Duration, Option<&str>, OffsetDateTime)> = Vec::new();
    let fix = visit
        .gps
        .filter(|fix| !fix.is_mock && fix.provider != Some(LocationProvider::Network));
    if let Some(satellite) = fix.and_then(|fix| fix.fix_time) {
        // Phone minus satellite: how far the window the phone wrote misses the fix.
        let skew = if satellite < visit.checkin_at {
            visit.checkin_at - satellite
        } else if satellite > visit.checkout_at {
            visit.checkout_at - satellite
        } else {
            Duration::ZERO
        };
        readings.push((skew, None, satellite));
    }
    let mut seen: Vec<&str> = Vec::new();
    for id in &visit.photo_ids {
        if seen.contains(&id.as_str()) {
            continue;
        }
        seen.push(id);
        let Some(photo) = photos.iter().find(|photo| &photo.photo_id == id) else {
            continue;
        };
        if !photo.in_app_camera {
            continue;
        }
        if let (Some(satellite), Some(device)) =
            (photo.gps_time, photo.device_time.or(photo.exif_time))
        {
            readings.push((device - satellite, Some(&photo.photo_id), satellite));
        }
    }
    let tolerance = Duration::minutes(i64::from(settings.max_clock_skew_minutes));
    let mut worst: Option<(Duration, Option<&str>, OffsetDateTime)> = None;
    for reading in readings {
        let larger = worst.is_none_or(|(current, _, _)| reading.0.abs() > current.abs());
        if reading.0.abs() > tolerance && larger {
            worst = Some(reading);
        }
    }
    worst.map(
        |(skew, photo_id, satellite)| EvidenceFlag::SatelliteTimeMismatch {
            photo_id: photo_id.map(str::to_owned),
            // In UTC, so the stored flag is the same JSON whichever offset the phone wrote.
            satellite_time: satellite.to_offset(time::UtcOffset::UTC),
            skew_minutes: whole_minutes_away_from_zero(skew),
        },
    )
}

/// 补录: strictly more than `late_record_max_days` from check-in to the server's first
/// receipt, or strictly more than `late_record_max_hours` from check-in to check-out; exactly
/// at a limit is not late.
fn late_record(
    visit: &Visit,
    first_submitted_at: OffsetDateTime,
    settings: &EvidenceSettings,
) -> Option<EvidenceFlag> {
    let submitted_late = first_submitted_at - visit.checkin_at
        > Duration::days(i64::from(settings.late_record_max_days));
    let duration = visit.checkout_at - visit.checkin_at;
    let too_long = duration > Duration::hours(i64::from(settings.late_record_max_hours));
    // In UTC, so the stored flag is the same JSON whichever offset the phone wrote.
    (submitted_late || too_long).then(|| EvidenceFlag::LateRecord {
        checkin_at: visit.checkin_at.to_offset(time::UtcOffset::UTC),
        submitted_at: first_submitted_at.to_offset(time::UtcOffset::UTC),
        submitted_late,
        max_days: settings.late_record_max_days,
        duration_minutes: duration.whole_minutes(),
        too_long,
        max_hours: settings.late_record_max_hours,
    })
}

/// Metres between two WGS-84 `(lat, lon)` pairs.
fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
    geo::distance_m(a.0, a.1, b.0, b.1)
}

/// Impossible travel against the nearest earlier and the nearest later visit *with a fix*.
/// Skipping fix-less visits in between is sound: if the direct move between two fixes is
/// already too fast, any route through a third place is slower still.
fn travel_flags(
    visit: &Visit,
    here: (f64, f64),
    cadre_visits: &[CadreVisitSummary],
    settings: &EvidenceSettings,
    flags: &mut Vec<EvidenceFlag>,
) {
    // Borrowed keys: this runs for every neighbour of every visit of a push.
    fn key(checkin: OffsetDateTime, id: &str) -> (OffsetDateTime, &str) {
        (checkin, id)
    }
    let own = key(visit.checkin_at, &visit.visit_id);
    let located = cadre_visits.iter().filter_map(|other| {
        let gps = other.gps?;
        (other.visit_id != visit.visit_id && geo::is_valid_coordinate(gps.0, gps.1))
            .then_some((other, gps))
    });
    let previous = located
        .clone()
        .filter(|(other, _)| key(other.checkin_at, &other.visit_id) < own)
        .max_by_key(|(other, _)| key(other.checkin_at, &other.visit_id));
    let next = located
        .filter(|(other, _)| key(other.checkin_at, &other.visit_id) > own)
        .min_by_key(|(other, _)| key(other.checkin_at, &other.visit_id));

    let mut check =
        |from_id: &str, to_id: &str, from: (f64, f64), to: (f64, f64), gap: Duration| {
            let km = metres(from, to) / 1000.0;
            if km <= settings.min_travel_km {
                return;
            }
            let hours = gap.as_seconds_f64().max(0.0) / 3600.0;
            let kmh = (hours > 0.0).then(|| km / hours);
            if kmh.is_none_or(|kmh| kmh > settings.max_travel_kmh) {
                flags.push(EvidenceFlag::ImpossibleTravel {
                    previous_visit_id: from_id.to_owned(),
                    next_visit_id: to_id.to_owned(),
                    km,
                    hours,
                    kmh,
                });
            }
        };
    if let Some((previous, there)) = previous {
        check(
            &previous.visit_id,
            &visit.visit_id,
            there,
            here,
            visit.checkin_at - previous.checkout_at,
        );
    }
    if let Some((next, there)) = next {
        check(
            &visit.visit_id,
            &next.visit_id,
            here,
            there,
            next.checkin_at - visit.checkout_at,
        );
    }
}

/// Photo presence, EXIF consistency and reuse.
#[allow(clippy::too_many_arguments)]
fn photo_flags(
    visit: &Visit,
    in_person: bool,
    fix_wgs: Option<(f64, f64)>,
    home_wgs: Option<(f64, f64)>,
    photos: &[PhotoEvidence],
    other_photos: &[OtherPhotoUse],
    settings: &EvidenceSettings,
    flags: &mut Vec<EvidenceFlag>,
) {
    let mut listed_ids: Vec<&str> = Vec::new();
    for id in &visit.photo_ids {
        if !listed_ids.contains(&id.as_str()) {
            listed_ids.push(id);
        }
    }
    let arrived: Vec<&PhotoEvidence> = listed_ids
        .iter()
        .filter_map(|id| photos.iter().find(|photo| photo.photo_id == *id))
        .collect();

    if in_person {
        let all_arrived = arrived.len() == listed_ids.len();
        let any_in_app = arrived.iter().any(|photo| photo.in_app_camera);
        // Judge "only gallery photos" once every listed photo has arrived; until then a
        // missing in-app photo may still be uploading.
        if listed_ids.is_empty() || (all_arrived && !any_in_app) {
            flags.push(EvidenceFlag::PhotoMissing {
                gallery_photos: u32::try_from(arrived.len()).unwrap_or(u32::MAX),
            });
        }
    }

    let tolerance = Duration::minutes(i64::from(settings.exif_time_tolerance_minutes));
    // Checked: a visit's times come from a phone, and an instant near the end of the
    // calendar must not panic here (validation refuses such visits, but this stays total).
    let window = visit
        .checkin_at
        .checked_sub(tolerance)
        .unwrap_or(visit.checkin_at)
        ..=visit
            .checkout_at
            .checked_add(tolerance)
            .unwrap_or(visit.checkout_at);
    let month = visit.business_month();
    let elsewhere = |other: &OtherPhotoUse| {
        other.visit_id != visit.visit_id
            && (other.household_id != visit.household_id || other.month != month)
    };

    for photo in arrived {
        if photo.exif_damaged && photo.in_app_camera {
            flags.push(EvidenceFlag::PhotoExifDamaged {
                photo_id: photo.photo_id.clone(),
                time_read: photo.exif_time.is_some(),
            });
        }
        match photo.exif_time {
            None if photo.in_app_camera && !photo.exif_damaged => {
                flags.push(EvidenceFlag::PhotoExifMissing {
                    photo_id: photo.photo_id.clone(),
                })
            }
            Some(exif_time) if !window.contains(&exif_time) => {
                flags.push(EvidenceFlag::PhotoExifTimeOutside {
                    photo_id: photo.photo_id.clone(),
                    exif_time,
                });
            }
            _ => {}
        }

        if let Some(taken) = photo
            .exif_gps
            .filter(|gps| geo::is_valid_coordinate(gps.0, gps.1))
        {
            let reference = fix_wgs
                .map(|fix| (fix, false))
                .or_else(|| home_wgs.map(|home| (home, true)));
            if let Some((reference, from_household)) = reference {
                let distance_m = metres(taken, reference);
                if distance_m > settings.photo_fix_max_distance_m {
                    flags.push(EvidenceFlag::PhotoExifGpsFar {
                        photo_id: photo.photo_id.clone(),
                        distance_m,
                        limit_m: settings.photo_fix_max_distance_m,
                        from_household,
                    });
                }
            }
        }

        // The same file elsewhere: one flag per other visit, oldest month first.
        let mut reused: Vec<&OtherPhotoUse> = other_photos
            .iter()
            .filter(|other| elsewhere(other) && other.sha256.eq_ignore_ascii_case(&photo.sha256))
            .collect();
        reused.sort_by(|a, b| {
            (&a.month, &a.visit_id, &a.photo_id).cmp(&(&b.month, &b.visit_id, &b.photo_id))
        });
        reused.dedup_by(|a, b| a.visit_id == b.visit_id);
        for other in reused {
            flags.push(EvidenceFlag::PhotoReused {
                photo_id: photo.photo_id.clone(),
                other_visit_id: other.visit_id.clone(),
                other_household_id: other.household_id.clone(),
                same_household_other_month: other.household_id == visit.household_id,
            });
        }

        // Different files that look the same: closest first. Exact copies are reported
        // above and not again here.
        if let Some(hash) = photo.phash {
            let mut similar: Vec<(u32, &OtherPhotoUse)> = other_photos
                .iter()
                .filter(|other| {
                    elsewhere(other) && !other.sha256.eq_ignore_ascii_case(&photo.sha256)
                })
                .filter_map(|other| {
                    let bits = hamming(hash, other.phash?);
                    (bits <= settings.near_duplicate_max_bits).then_some((bits, other))
                })
                .collect();
            similar.sort_by(|(bits_a, a), (bits_b, b)| {
                (bits_a, &a.month, &a.visit_id, &a.photo_id).cmp(&(
                    bits_b,
                    &b.month,
                    &b.visit_id,
                    &b.photo_id,
                ))
            });
            similar.dedup_by(|(_, a), (_, b)| a.photo_id == b.photo_id);
            for (distance_bits, other) in similar {
                flags.push(EvidenceFlag::PhotoNearDuplicate {
                    photo_id: photo.photo_id.clone(),
                    other_photo_id: other.photo_id.clone(),
                    other_visit_id: other.visit_id.clone(),
                    other_household_id: other.household_id.clone(),
                    distance_bits,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::{Crs, VisitExceptionReason, VisitType};
    use crate::visit::{GpsFix, WellbeingCheck};
    use time::macros::datetime;

    const VISIT: &str = "00000000-0000-4000-8000-0000000000a1";
    const PHOTO: &str = "00000000-0000-4000-8000-0000000000b1";
    const HOUSEHOLD: &str = "hh-522301-0001";
    /// A household in a Guizhou village, WGS-84.
    const HOME: (f64, f64) = (26.6470, 106.6302);

    /// `metres` north and `east` metres east of `from` (small offsets only).
    fn moved(from: (f64, f64), north: f64, east: f64) -> (f64, f64) {
        let lat = from.0 + north / 111_195.0;
        let lon = from.1 + east / (111_195.0 * from.0.to_radians().cos());
        (lat, lon)
    }

    fn fix_at(point: (f64, f64), accuracy_m: f64) -> GpsFix {
        GpsFix {
            lat: point.0,
            lon: point.1,
            crs: Crs::Wgs84,
            accuracy_m,
            provider: Some(LocationProvider::Gps),
            is_mock: false,
            fix_time: Some(datetime!(2026-10-12 09:01 +8)),
        }
    }

    fn summary(
        id: &str,
        checkin_at: OffsetDateTime,
        checkout_at: OffsetDateTime,
        gps: Option<(f64, f64)>,
    ) -> CadreVisitSummary {
        CadreVisitSummary {
            visit_id: id.to_owned(),
            checkin_at,
            checkout_at,
            gps,
            in_person: true,
        }
    }

    /// Everything [`evaluate`] takes, starting from an honest visit.
    struct Scenario {
        visit: Visit,
        home: Option<GeoPoint>,
        photos: Vec<PhotoEvidence>,
        others: Vec<OtherPhotoUse>,
        cadre: Vec<CadreVisitSummary>,
        skew: Option<Duration>,
        submitted_at: OffsetDateTime,
        settings: EvidenceSettings,
    }

    impl Scenario {
        /// An honest in-person visit: fix 50 m from the household with 10 m accuracy taken
        /// a minute after check-in, one in-app photo taken during the visit 10 m from the
        /// fix (its satellite time agreeing with the phone's), unique hashes, an earlier
        /// visit that morning 3 km away (2 visits that day), 40 minutes, 2 minutes of skew.
        fn honest() -> Self {
            let fix = moved(HOME, 50.0, 0.0);
            let visit = Visit {
                visit_id: VISIT.to_owned(),
                revision: 1,
                supersedes_revision: 0,
                household_id: HOUSEHOLD.to_owned(),
                mode: VisitMode::InPerson,
                exception_reason: None,
                visit_type: VisitType::Routine,
                checkin_at: datetime!(2026-10-12 09:00 +8),
                checkout_at: datetime!(2026-10-12 09:40 +8),
                observed_situation: "家中两人务工，收入稳定".to_owned(),
                plan_progress: "产业补贴已到位".to_owned(),
                problems: String::new(),
                actions: String::new(),
                needs: String::new(),
                policies_explained: Vec::new(),
                wellbeing: WellbeingCheck::default(),
                proposed_changes: Vec::new(),
                photo_ids: vec![PHOTO.to_owned()],
                gps: Some(fix_at(fix, 10.0)),
                recorded_at_device: datetime!(2026-10-12 09:40 +8),
            };
            let photo = PhotoEvidence {
                photo_id: PHOTO.to_owned(),
                sha256: "a".repeat(64),
                phash: Some(0x0123_4567_89ab_cdef),
                exif_time: Some(datetime!(2026-10-12 09:10 +8)),
                exif_gps: Some(moved(fix, 10.0, 0.0)),
                in_app_camera: true,
                exif_damaged: false,
                // The camera's satellite fix a few seconds before the shutter.
                gps_time: Some(datetime!(2026-10-12 09:09:56 +8)),
                device_time: Some(datetime!(2026-10-12 09:10 +8)),
            };
            let others = vec![
                // Another household's photo: different file, very different look.
                OtherPhotoUse {
                    photo_id: "other-photo-1".to_owned(),
                    visit_id: "other-visit-1".to_owned(),
                    household_id: "hh-522301-0002".to_owned(),
                    month: "2026-10".to_owned(),
                    sha256: "b".repeat(64),
                    phash: Some(!0x0123_4567_89ab_cdef),
                },
                // This household last month: the same house, 20 bits apart.
                OtherPhotoUse {
                    photo_id: "other-photo-2".to_owned(),
                    visit_id: "other-visit-2".to_owned(),
                    household_id: HOUSEHOLD.to_owned(),
                    month: "2026-09".to_owned(),
                    sha256: "c".repeat(64),
                    phash: Some(0x0123_4567_89ab_cdef ^ 0x000f_0f0f_0f0f_0000),
                },
            ];
            let cadre = vec![
                summary(
                    "morning",
                    datetime!(2026-10-12 07:30 +8),
                    datetime!(2026-10-12 08:20 +8),
                    Some(moved(HOME, 0.0, 3000.0)),
                ),
                summary(
                    "yesterday",
                    datetime!(2026-10-11 15:00 +8),
                    datetime!(2026-10-11 16:00 +8),
                    Some(moved(HOME, 90_000.0, 0.0)),
                ),
                summary(
                    "tomorrow",
                    datetime!(2026-10-13 09:00 +8),
                    datetime!(2026-10-13 10:00 +8),
                    Some(moved(HOME, -20_000.0, 0.0)),
                ),
            ];
            Self {
                visit,
                home: Some(GeoPoint {
                    lat: HOME.0,
                    lon: HOME.1,
                    crs: Crs::Wgs84,
                }),
                photos: vec![photo],
                others,
                cadre,
                skew: Some(Duration::minutes(2)),
                // Received an hour after check-in: an honest sync from the village.
                submitted_at: datetime!(2026-10-12 10:00 +8),
                settings: EvidenceSettings::default(),
            }
        }

        fn run(&self) -> Vec<EvidenceFlag> {
            evaluate(
                &self.visit,
                self.home,
                &self.photos,
                &self.others,
                &self.cadre,
                &Receipt {
                    first_submitted_at: self.submitted_at,
                    device_skew: self.skew,
                },
                &self.settings,
            )
        }

        fn codes(&self) -> Vec<&'static str> {
            self.run().iter().map(EvidenceFlag::code).collect()
        }

        /// Moves the fix (and the photo's EXIF GPS with it) to `point`.
        fn fix_moved_to(&mut self, point: (f64, f64), accuracy_m: f64) {
            self.visit.gps = Some(fix_at(point, accuracy_m));
            self.photos[0].exif_gps = Some(point);
        }

        fn photo(&mut self) -> &mut PhotoEvidence {
            &mut self.photos[0]
        }
    }

    // --- the honest visit -----------------------------------------------------------------

    #[test]
    fn an_honest_in_person_visit_has_no_flags() {
        assert_eq!(Scenario::honest().run(), Vec::<EvidenceFlag>::new());
    }

    // --- R8 mode ----------------------------------------------------------------------------

    #[test]
    fn a_phone_visit_is_marked_not_in_person_and_needs_no_fix_or_photo() {
        let mut scenario = Scenario::honest();
        scenario.visit.mode = VisitMode::Phone;
        scenario.visit.exception_reason = Some(VisitExceptionReason::WorkingAway);
        scenario.visit.gps = None;
        scenario.visit.photo_ids.clear();
        scenario.visit.checkout_at = scenario.visit.checkin_at + Duration::minutes(4);
        assert_eq!(
            scenario.run(),
            vec![EvidenceFlag::NotInPerson {
                mode: VisitMode::Phone
            }]
        );
        assert!(scenario.run()[0].is_informational());
    }

    // --- R1 / R2 location -------------------------------------------------------------------

    #[test]
    fn an_in_person_visit_without_a_fix_is_flagged() {
        let mut scenario = Scenario::honest();
        scenario.visit.gps = None;
        // The photo's EXIF GPS is then compared with the household: 60 m, fine.
        assert_eq!(scenario.run(), vec![EvidenceFlag::GpsMissing]);
    }

    #[test]
    fn a_mock_location_is_flagged() {
        let mut scenario = Scenario::honest();
        if let Some(fix) = scenario.visit.gps.as_mut() {
            fix.is_mock = true;
        }
        assert_eq!(scenario.run(), vec![EvidenceFlag::MockLocation]);
    }

    #[test]
    fn a_coarse_fix_is_flagged_as_inaccurate() {
        let mut scenario = Scenario::honest();
        scenario.fix_moved_to(moved(HOME, 50.0, 0.0), 150.0);
        assert_eq!(
            scenario.run(),
            vec![EvidenceFlag::GpsInaccurate {
                accuracy_m: 150.0,
                limit_m: 100.0
            }]
        );
        scenario.fix_moved_to(moved(HOME, 50.0, 0.0), 100.0);
        assert!(scenario.run().is_empty(), "exactly at the limit is fine");
    }

    #[test]
    fn a_fix_far_from_the_household_is_flagged() {
        let mut scenario = Scenario::honest();
        scenario.fix_moved_to(moved(HOME, 800.0, 0.0), 10.0);
        let flags = scenario.run();
        let [
            EvidenceFlag::GpsFar {
                distance_m,
                allowed_m,
            },
        ] = flags.as_slice()
        else {
            panic!("{flags:?}");
        };
        assert!((distance_m - 800.0).abs() < 1.0, "{distance_m}");
        assert_eq!(*allowed_m, 310.0);
    }

    #[test]
    fn the_radius_is_widened_by_the_reported_accuracy() {
        let mut scenario = Scenario::honest();
        // 350 m away with 80 m accuracy: within 300 + 80.
        scenario.fix_moved_to(moved(HOME, 350.0, 0.0), 80.0);
        assert!(scenario.run().is_empty(), "{:?}", scenario.run());
        // The same place with a 10 m fix is outside 300 + 10.
        scenario.fix_moved_to(moved(HOME, 350.0, 0.0), 10.0);
        assert_eq!(scenario.codes(), ["gps_far"]);
        // And the radius is a setting.
        scenario.settings.household_radius_m = 500.0;
        assert!(scenario.run().is_empty());
    }

    #[test]
    fn a_gcj02_household_pin_is_converted_before_comparing_with_a_wgs84_fix() {
        let mut scenario = Scenario::honest();
        let pin = geo::to_gcj02(&GeoPoint {
            lat: HOME.0,
            lon: HOME.1,
            crs: Crs::Wgs84,
        });
        let fix = scenario.visit.gps.unwrap_or_else(|| fix_at(HOME, 10.0));
        // Compared naively, the pin would look hundreds of metres away.
        assert!(geo::distance_m(pin.lat, pin.lon, fix.lat, fix.lon) > 300.0);
        scenario.home = Some(pin);
        assert!(scenario.run().is_empty(), "{:?}", scenario.run());

        // A BD-09 (Baidu) pin of the same doorstep, too.
        let (bd_lat, bd_lon) = geo::gcj02_to_bd09(pin.lat, pin.lon);
        scenario.home = Some(GeoPoint {
            lat: bd_lat,
            lon: bd_lon,
            crs: Crs::Bd09,
        });
        assert!(scenario.run().is_empty(), "{:?}", scenario.run());

        // And a far fix is still far against a GCJ-02 pin.
        scenario.home = Some(pin);
        scenario.fix_moved_to(moved(HOME, 800.0, 0.0), 10.0);
        assert_eq!(scenario.codes(), ["gps_far"]);
    }

    #[test]
    fn a_gcj02_fix_from_a_chinese_location_sdk_is_converted_too() {
        let mut scenario = Scenario::honest();
        let (lat, lon) = geo::wgs84_to_gcj02(HOME.0, HOME.1);
        scenario.visit.gps = Some(GpsFix {
            lat,
            lon,
            crs: Crs::Gcj02,
            ..fix_at(HOME, 10.0)
        });
        scenario.photo().exif_gps = Some(HOME);
        assert!(scenario.run().is_empty(), "{:?}", scenario.run());
    }

    #[test]
    fn a_missing_household_location_skips_the_distance_check() {
        let mut scenario = Scenario::honest();
        scenario.home = None;
        assert!(scenario.run().is_empty());
        scenario.fix_moved_to(moved(HOME, 5000.0, 0.0), 10.0);
        assert!(scenario.run().is_empty(), "{:?}", scenario.run());
        // An unusable pin is treated like a missing one, without a panic.
        scenario.home = Some(GeoPoint {
            lat: f64::NAN,
            lon: 500.0,
            crs: Crs::Gcj02,
        });
        assert!(scenario.run().is_empty());
    }

    // --- R2 / R6 travel ---------------------------------------------------------------------

    #[test]
    fn impossible_travel_from_the_previous_visit_is_flagged() {
        let mut scenario = Scenario::honest();
        // 100 km away, checked out 30 minutes before this check-in: 200 km/h.
        scenario.cadre.push(summary(
            "far-before",
            datetime!(2026-10-12 08:00 +8),
            datetime!(2026-10-12 08:30 +8),
            Some(moved(HOME, 100_000.0, 0.0)),
        ));
        let flags = scenario.run();
        let [
            EvidenceFlag::ImpossibleTravel {
                previous_visit_id,
                next_visit_id,
                km,
                hours,
                kmh: Some(kmh),
            },
        ] = flags.as_slice()
        else {
            panic!("{flags:?}");
        };
        assert_eq!(previous_visit_id, "far-before");
        assert_eq!(next_visit_id, VISIT);
        assert!((km - 100.0).abs() < 0.5, "{km}");
        assert!((hours - 0.5).abs() < 1e-9, "{hours}");
        assert!((kmh - 200.0).abs() < 1.0, "{kmh}");

        // The same trip with 2 hours to spare is plausible.
        if let Some(far) = scenario.cadre.last_mut() {
            far.checkin_at = datetime!(2026-10-12 06:00 +8);
            far.checkout_at = datetime!(2026-10-12 06:30 +8);
        }
        assert!(scenario.run().is_empty(), "{:?}", scenario.run());
    }

    #[test]
    fn impossible_travel_to_the_next_visit_is_flagged() {
        let mut scenario = Scenario::honest();
        scenario.cadre.push(summary(
            "far-after",
            datetime!(2026-10-12 10:10 +8),
            datetime!(2026-10-12 10:40 +8),
            Some(moved(HOME, -150_000.0, 0.0)),
        ));
        let flags = scenario.run();
        assert!(
            matches!(
                flags.as_slice(),
                [EvidenceFlag::ImpossibleTravel { previous_visit_id, next_visit_id, kmh: Some(kmh), .. }]
                    if previous_visit_id == VISIT && next_visit_id == "far-after" && *kmh > 290.0
            ),
            "{flags:?}"
        );
    }

    #[test]
    fn travel_with_no_time_between_visits_is_impossible_beyond_a_kilometre() {
        let mut scenario = Scenario::honest();
        scenario.cadre.push(summary(
            "overlapping",
            datetime!(2026-10-12 08:40 +8),
            datetime!(2026-10-12 09:05 +8),
            Some(moved(HOME, 5000.0, 0.0)),
        ));
        let flags = scenario.run();
        assert!(
            matches!(
                flags.as_slice(),
                [EvidenceFlag::ImpossibleTravel { kmh: None, hours, .. }] if *hours == 0.0
            ),
            "{flags:?}"
        );
        // Next door, with check-out and check-in in the same minute: not a flag.
        if let Some(next_door) = scenario.cadre.last_mut() {
            next_door.checkout_at = datetime!(2026-10-12 09:00 +8);
            next_door.gps = Some(moved(HOME, 300.0, 0.0));
        }
        assert!(scenario.run().is_empty(), "{:?}", scenario.run());
    }

    #[test]
    fn travel_is_skipped_without_fixes_but_a_fixless_visit_does_not_hide_a_jump() {
        let mut scenario = Scenario::honest();
        scenario.cadre.push(summary(
            "far-before",
            datetime!(2026-10-12 08:00 +8),
            datetime!(2026-10-12 08:30 +8),
            None,
        ));
        assert!(
            scenario.run().is_empty(),
            "no fix there, nothing to compare"
        );

        let mut scenario = Scenario::honest();
        scenario.visit.gps = None;
        scenario.cadre.push(summary(
            "far-before",
            datetime!(2026-10-12 08:00 +8),
            datetime!(2026-10-12 08:30 +8),
            Some(moved(HOME, 100_000.0, 0.0)),
        ));
        assert_eq!(scenario.codes(), ["gps_missing"], "no fix here");

        // far (fix) 08:00–08:20, then a fix-less visit 08:25–08:35, then this one at 09:00:
        // 100 km in 40 minutes is still impossible.
        let mut scenario = Scenario::honest();
        scenario.cadre.retain(|other| other.visit_id != "morning");
        scenario.cadre.push(summary(
            "far-before",
            datetime!(2026-10-12 08:00 +8),
            datetime!(2026-10-12 08:20 +8),
            Some(moved(HOME, 100_000.0, 0.0)),
        ));
        scenario.cadre.push(summary(
            "between",
            datetime!(2026-10-12 08:25 +8),
            datetime!(2026-10-12 08:35 +8),
            None,
        ));
        let flags = scenario.run();
        assert!(
            matches!(
                flags.as_slice(),
                [EvidenceFlag::ImpossibleTravel { previous_visit_id, .. }] if previous_visit_id == "far-before"
            ),
            "{flags:?}"
        );
    }

    // --- R6 visits per day ------------------------------------------------------------------

    /// `n` extra in-person visits on 2026-10-12 without fixes (so travel stays silent).
    fn busy_day(n: u32) -> Vec<CadreVisitSummary> {
        (0..n)
            .map(|i| {
                let start = datetime!(2026-10-12 10:00 +8) + Duration::minutes(40 * i64::from(i));
                summary(
                    &format!("busy-{i}"),
                    start,
                    start + Duration::minutes(30),
                    None,
                )
            })
            .collect()
    }

    #[test]
    fn more_than_eight_in_person_visits_in_a_beijing_day_are_flagged() {
        let mut scenario = Scenario::honest();
        // The morning visit + 7 more + this one = 9.
        scenario.cadre.extend(busy_day(7));
        assert_eq!(
            scenario.run(),
            vec![EvidenceFlag::TooManyVisitsInDay {
                count: 9,
                date: "2026-10-12".to_owned(),
                limit: 8
            }]
        );
    }

    #[test]
    fn the_day_count_ignores_other_days_other_modes_and_repeated_rows() {
        let mut scenario = Scenario::honest();
        scenario.cadre.extend(busy_day(6)); // 8 with the morning visit and this one
        assert!(scenario.run().is_empty(), "8 is the limit, not over it");
        // A revision of one of them listed twice, a phone call, and a visit at 23:30 Beijing
        // time the day before (15:30 UTC on the 11th) do not count.
        scenario.cadre.push(summary(
            "busy-0",
            datetime!(2026-10-12 10:00 +8),
            datetime!(2026-10-12 10:30 +8),
            None,
        ));
        let mut call = summary(
            "call",
            datetime!(2026-10-12 20:00 +8),
            datetime!(2026-10-12 20:10 +8),
            None,
        );
        call.in_person = false;
        scenario.cadre.push(call);
        scenario.cadre.push(summary(
            "late-yesterday",
            datetime!(2026-10-11 15:30 UTC),
            datetime!(2026-10-11 15:50 UTC),
            None,
        ));
        assert!(scenario.run().is_empty(), "{:?}", scenario.run());
        // While 16:30 UTC on the 11th is already the 12th in Beijing.
        scenario.cadre.push(summary(
            "early-today",
            datetime!(2026-10-11 16:30 UTC),
            datetime!(2026-10-11 16:50 UTC),
            None,
        ));
        assert_eq!(scenario.codes(), ["too_many_visits_in_day"]);
    }

    // --- R5 duration ------------------------------------------------------------------------

    #[test]
    fn a_visit_shorter_than_the_minimum_is_flagged() {
        let mut scenario = Scenario::honest();
        scenario.visit.checkout_at = datetime!(2026-10-12 09:08 +8);
        assert_eq!(
            scenario.run(),
            vec![EvidenceFlag::TooShort {
                minutes: 8,
                min_minutes: 10
            }]
        );
        scenario.visit.checkout_at = datetime!(2026-10-12 09:10 +8);
        assert!(scenario.run().is_empty(), "exactly the minimum is fine");
    }

    #[test]
    fn the_minimum_duration_is_a_setting_for_local_rules() {
        // 烟台 requires at least an hour per visit.
        let mut scenario = Scenario::honest();
        scenario.settings.min_visit_minutes = 60;
        assert_eq!(
            scenario.run(),
            vec![EvidenceFlag::TooShort {
                minutes: 40,
                min_minutes: 60
            }]
        );
    }

    // --- R3 clock skew ----------------------------------------------------------------------

    #[test]
    fn device_clock_skew_beyond_tolerance_is_flagged() {
        let mut scenario = Scenario::honest();
        scenario.skew = Some(Duration::minutes(10));
        assert!(scenario.run().is_empty(), "exactly the tolerance is fine");
        scenario.skew = Some(Duration::seconds(10 * 60 + 30));
        assert_eq!(
            scenario.run(),
            vec![EvidenceFlag::ClockSkew { skew_minutes: 11 }]
        );
        scenario.skew = Some(-Duration::minutes(15));
        assert_eq!(
            scenario.run(),
            vec![EvidenceFlag::ClockSkew { skew_minutes: -15 }]
        );
        scenario.skew = None;
        assert!(scenario.run().is_empty(), "unknown skew is not a flag");
        assert_eq!(
            clock_skew(
                datetime!(2026-10-12 09:20 +8),
                datetime!(2026-10-12 01:00 UTC)
            ),
            Duration::minutes(20)
        );
    }

    // --- DESIGN §5 late record (补录) ------------------------------------------------------

    fn late_record_of(scenario: &Scenario) -> Option<EvidenceFlag> {
        scenario
            .run()
            .into_iter()
            .find(|flag| flag.code() == "late_record")
    }

    #[test]
    fn a_record_received_more_than_seven_days_after_check_in_is_late() {
        let mut scenario = Scenario::honest();
        let checkin = scenario.visit.checkin_at;
        scenario.submitted_at = checkin + Duration::days(7);
        assert_eq!(
            late_record_of(&scenario),
            None,
            "exactly 7 days is not late"
        );
        scenario.submitted_at = checkin + Duration::days(7) + Duration::milliseconds(1);
        assert_eq!(
            late_record_of(&scenario),
            Some(EvidenceFlag::LateRecord {
                checkin_at: checkin,
                submitted_at: checkin + Duration::days(7) + Duration::milliseconds(1),
                submitted_late: true,
                max_days: 7,
                duration_minutes: 40,
                too_long: false,
                max_hours: 8,
            })
        );
        // A receipt before the claimed check-in (a phone clock set ahead) is not late.
        scenario.submitted_at = checkin - Duration::days(30);
        assert_eq!(late_record_of(&scenario), None);
    }

    #[test]
    fn a_visit_longer_than_eight_hours_is_late_at_any_mode() {
        let mut scenario = Scenario::honest();
        let checkin = scenario.visit.checkin_at;
        scenario.visit.checkout_at = checkin + Duration::hours(8);
        assert_eq!(
            late_record_of(&scenario),
            None,
            "exactly 8 hours is not late"
        );
        scenario.visit.checkout_at = checkin + Duration::hours(8) + Duration::milliseconds(1);
        let flag = late_record_of(&scenario);
        assert!(
            matches!(
                flag,
                Some(EvidenceFlag::LateRecord {
                    submitted_late: false,
                    too_long: true,
                    duration_minutes: 480,
                    ..
                })
            ),
            "{flag:?}"
        );
        // The issue's 100,000-minute visit, made by phone.
        scenario.visit.mode = VisitMode::Phone;
        scenario.visit.exception_reason = Some(VisitExceptionReason::WorkingAway);
        scenario.visit.checkout_at = checkin + Duration::minutes(100_000);
        assert!(late_record_of(&scenario).is_some());
    }

    #[test]
    fn both_late_limits_are_settings_and_one_flag_names_both_reasons() {
        let mut scenario = Scenario::honest();
        let checkin = scenario.visit.checkin_at;
        scenario.settings.late_record_max_days = 2;
        scenario.settings.late_record_max_hours = 1;
        scenario.submitted_at = checkin + Duration::days(2) + Duration::minutes(1);
        scenario.visit.checkout_at = checkin + Duration::minutes(61);
        let flags: Vec<EvidenceFlag> = scenario
            .run()
            .into_iter()
            .filter(|flag| flag.code() == "late_record")
            .collect();
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert_eq!(
            flags[0].detail(),
            "签到于 2026-10-12 09:00，服务器 2026-10-14 09:01 才收到，相隔 2 天 0 小时，超过 2 天；\
             走访时长 1 小时 1 分钟，超过 1 小时，可能是事后补录。"
        );
        assert!(!flags[0].is_informational());
        scenario.settings.late_record_max_days = 3;
        scenario.settings.late_record_max_hours = 2;
        assert_eq!(late_record_of(&scenario), None);
    }

    // --- DESIGN §5 / R3 photos --------------------------------------------------------------

    #[test]
    fn an_in_person_visit_without_photos_is_flagged() {
        let mut scenario = Scenario::honest();
        scenario.visit.photo_ids.clear();
        assert_eq!(
            scenario.run(),
            vec![EvidenceFlag::PhotoMissing { gallery_photos: 0 }]
        );
    }

    #[test]
    fn gallery_photos_alone_count_as_missing_but_uploads_in_flight_do_not() {
        let mut scenario = Scenario::honest();
        scenario.photo().in_app_camera = false;
        assert_eq!(
            scenario.run(),
            vec![EvidenceFlag::PhotoMissing { gallery_photos: 1 }]
        );
        // The photo is listed but its metadata has not arrived: judge it later.
        let mut scenario = Scenario::honest();
        scenario.photos.clear();
        assert!(scenario.run().is_empty());
    }

    #[test]
    fn an_in_app_photo_without_exif_time_is_flagged() {
        let mut scenario = Scenario::honest();
        scenario.photo().exif_time = None;
        assert_eq!(
            scenario.run(),
            vec![EvidenceFlag::PhotoExifMissing {
                photo_id: PHOTO.to_owned()
            }]
        );
    }

    #[test]
    fn damaged_exif_is_flagged_as_damaged_not_missing_and_what_parsed_is_still_checked() {
        // The capture time survived the damage: the photo is damaged, and its time and GPS
        // are checked as usual.
        let mut scenario = Scenario::honest();
        scenario.photo().exif_damaged = true;
        assert_eq!(
            scenario.run(),
            vec![EvidenceFlag::PhotoExifDamaged {
                photo_id: PHOTO.to_owned(),
                time_read: true,
            }]
        );
        scenario.photo().exif_gps = Some(moved(HOME, 50.0, 2000.0));
        assert_eq!(
            scenario.codes(),
            ["photo_exif_damaged", "photo_exif_gps_far"]
        );
        // The damage took the capture time: damaged, never also missing.
        let mut scenario = Scenario::honest();
        scenario.photo().exif_damaged = true;
        scenario.photo().exif_time = None;
        assert_eq!(
            scenario.run(),
            vec![EvidenceFlag::PhotoExifDamaged {
                photo_id: PHOTO.to_owned(),
                time_read: false,
            }]
        );
        // A gallery photo's EXIF is not the app's evidence, damaged or missing.
        scenario.photos.push(PhotoEvidence {
            photo_id: "gallery".to_owned(),
            in_app_camera: false,
            ..scenario.photos[0].clone()
        });
        scenario.visit.photo_ids.push("gallery".to_owned());
        assert_eq!(scenario.codes(), ["photo_exif_damaged"]);
    }

    #[test]
    fn exif_time_outside_the_visit_window_is_flagged() {
        let mut scenario = Scenario::honest();
        scenario.photo().exif_time = Some(datetime!(2026-10-12 07:50 +8));
        assert_eq!(
            scenario.run(),
            vec![EvidenceFlag::PhotoExifTimeOutside {
                photo_id: PHOTO.to_owned(),
                exif_time: datetime!(2026-10-12 07:50 +8)
            }]
        );
        // An hour before check-in and an hour after check-out are still inside.
        scenario.photo().exif_time = Some(datetime!(2026-10-12 08:00 +8));
        assert!(scenario.run().is_empty());
        scenario.photo().exif_time = Some(datetime!(2026-10-12 10:40 +8));
        assert!(scenario.run().is_empty());
        // Offsets are honoured: 02:30 UTC is 10:30 in Beijing.
        scenario.photo().exif_time = Some(datetime!(2026-10-12 02:30 UTC));
        assert!(scenario.run().is_empty());
        scenario.photo().exif_time = Some(datetime!(2026-10-12 10:41 +8));
        assert_eq!(scenario.codes(), ["photo_exif_time_outside"]);
    }

    #[test]
    fn exif_gps_far_from_the_fix_is_flagged() {
        let mut scenario = Scenario::honest();
        scenario.photo().exif_gps = Some(moved(HOME, 50.0, 2000.0));
        let flags = scenario.run();
        assert!(
            matches!(
                flags.as_slice(),
                [EvidenceFlag::PhotoExifGpsFar { distance_m, limit_m, from_household: false, .. }]
                    if (distance_m - 2000.0).abs() < 2.0 && *limit_m == 500.0
            ),
            "{flags:?}"
        );
        // Without a fix the photo is compared with the household.
        scenario.visit.gps = None;
        let flags = scenario.run();
        assert!(
            matches!(
                flags.as_slice(),
                [
                    EvidenceFlag::GpsMissing,
                    EvidenceFlag::PhotoExifGpsFar {
                        from_household: true,
                        ..
                    }
                ]
            ),
            "{flags:?}"
        );
    }

    // --- R4 reuse ---------------------------------------------------------------------------

    fn other_use(visit: &str, household: &str, month: &str, sha: &str) -> OtherPhotoUse {
        OtherPhotoUse {
            photo_id: format!("{visit}-photo"),
            visit_id: visit.to_owned(),
            household_id: household.to_owned(),
            month: month.to_owned(),
            sha256: sha.to_owned(),
            phash: Some(0x0123_4567_89ab_cdef),
        }
    }

    #[test]
    fn the_same_file_on_another_household_or_month_is_flagged() {
        let mut scenario = Scenario::honest();
        let sha = "a".repeat(64);
        scenario.others.push(other_use(
            "v-other-house",
            "hh-522301-0099",
            "2026-10",
            &sha,
        ));
        // Upper-case hex is the same hash.
        scenario.others.push(other_use(
            "v-last-month",
            HOUSEHOLD,
            "2026-09",
            &sha.to_uppercase(),
        ));
        assert_eq!(
            scenario.run(),
            vec![
                EvidenceFlag::PhotoReused {
                    photo_id: PHOTO.to_owned(),
                    other_visit_id: "v-last-month".to_owned(),
                    other_household_id: HOUSEHOLD.to_owned(),
                    same_household_other_month: true,
                },
                EvidenceFlag::PhotoReused {
                    photo_id: PHOTO.to_owned(),
                    other_visit_id: "v-other-house".to_owned(),
                    other_household_id: "hh-522301-0099".to_owned(),
                    same_household_other_month: false,
                },
            ]
        );
    }

    #[test]
    fn the_same_file_in_the_same_household_and_month_or_revision_is_not_reuse() {
        let mut scenario = Scenario::honest();
        let sha = "a".repeat(64);
        scenario
            .others
            .push(other_use("v-income-check", HOUSEHOLD, "2026-10", &sha));
        scenario
            .others
            .push(other_use(VISIT, "hh-522301-0099", "2026-08", &sha));
        assert!(scenario.run().is_empty(), "{:?}", scenario.run());
    }

    #[test]
    fn a_near_duplicate_on_another_household_is_flagged() {
        let mut scenario = Scenario::honest();
        let mut similar = other_use(
            "v-other-house",
            "hh-522301-0099",
            "2026-10",
            &"d".repeat(64),
        );
        similar.phash = Some(0x0123_4567_89ab_cdef ^ 0b11_1111); // 6 bits apart
        scenario.others.push(similar.clone());
        assert_eq!(
            scenario.run(),
            vec![EvidenceFlag::PhotoNearDuplicate {
                photo_id: PHOTO.to_owned(),
                other_photo_id: "v-other-house-photo".to_owned(),
                other_visit_id: "v-other-house".to_owned(),
                other_household_id: "hh-522301-0099".to_owned(),
                distance_bits: 6,
            }]
        );
        // 7 bits apart is a different picture.
        similar.phash = Some(0x0123_4567_89ab_cdef ^ 0b111_1111);
        scenario.others.pop();
        scenario.others.push(similar);
        assert!(scenario.run().is_empty());
    }

    #[test]
    fn an_exact_copy_is_reported_as_reuse_not_also_as_a_near_duplicate() {
        let mut scenario = Scenario::honest();
        scenario.others.push(other_use(
            "v-other-house",
            "hh-522301-0099",
            "2026-10",
            &"a".repeat(64),
        ));
        assert_eq!(scenario.codes(), ["photo_reused"]);
    }

    #[test]
    fn hamming_counts_differing_bits() {
        assert_eq!(hamming(0, 0), 0);
        assert_eq!(hamming(0, u64::MAX), 64);
        assert_eq!(hamming(0b1011, 0b0001), 2);
        assert_eq!(hamming(1 << 63, 1), 2);
    }

    // --- R3 the phone's clock against satellite time ------------------------------------------

    /// The scenario of issue 14: the cadre sets the phone's clock back five days, records the
    /// visit, and restores the clock before syncing. Every time the phone wrote is five days
    /// early; the satellite times are not, and the heartbeat sees a correct clock.
    #[test]
    fn a_clock_set_back_and_restored_before_syncing_is_caught_by_satellite_time() {
        let mut scenario = Scenario::honest();
        let back = Duration::days(5);
        scenario.visit.checkin_at -= back;
        scenario.visit.checkout_at -= back;
        scenario.visit.recorded_at_device -= back;
        scenario.photo().device_time = Some(datetime!(2026-10-12 09:10 +8) - back);
        scenario.photo().exif_time = Some(datetime!(2026-10-12 09:10 +8) - back);
        scenario.skew = Some(Duration::seconds(20));
        assert!(!scenario.codes().contains(&"clock_skew"));
        // The photo disagrees most (the fix is a minute into the visit, so 39 minutes less).
        assert_eq!(
            scenario.run(),
            vec![EvidenceFlag::SatelliteTimeMismatch {
                photo_id: Some(PHOTO.to_owned()),
                satellite_time: datetime!(2026-10-12 01:09:56 UTC),
                skew_minutes: -(5 * 1440),
            }]
        );
        // Without the photo, the fix alone catches it.
        scenario.photos.clear();
        assert_eq!(
            scenario.run(),
            vec![EvidenceFlag::SatelliteTimeMismatch {
                photo_id: None,
                satellite_time: datetime!(2026-10-12 01:01 UTC),
                skew_minutes: -(5 * 1440 - 39),
            }]
        );
    }

    #[test]
    fn the_fix_must_fall_within_the_visit_window_give_or_take_the_skew_tolerance() {
        let mut scenario = Scenario::honest();
        scenario.photos.clear();
        let set_fix_time = |scenario: &mut Scenario, at: OffsetDateTime| {
            if let Some(fix) = scenario.visit.gps.as_mut() {
                fix.fix_time = Some(at);
            }
        };
        // Ten minutes after check-out or before check-in is within the tolerance.
        set_fix_time(&mut scenario, datetime!(2026-10-12 09:50 +8));
        assert!(scenario.run().is_empty());
        set_fix_time(&mut scenario, datetime!(2026-10-12 08:50 +8));
        assert!(scenario.run().is_empty());
        // A second more is flagged, rounded away from zero: the phone's window ended 11
        // minutes before the satellites' time (phone slow), or began 11 minutes after it.
        set_fix_time(&mut scenario, datetime!(2026-10-12 09:50:01 +8));
        assert!(matches!(
            scenario.run().as_slice(),
            [EvidenceFlag::SatelliteTimeMismatch {
                photo_id: None,
                skew_minutes: -11,
                ..
            }]
        ));
        set_fix_time(&mut scenario, datetime!(2026-10-12 08:49:59 +8));
        assert!(matches!(
            scenario.run().as_slice(),
            [EvidenceFlag::SatelliteTimeMismatch {
                photo_id: None,
                skew_minutes: 11,
                ..
            }]
        ));
        // A network fix's time is the phone's own clock, and a mock fix's is made up:
        // neither is a satellite time.
        if let Some(fix) = scenario.visit.gps.as_mut() {
            fix.provider = Some(LocationProvider::Network);
        }
        assert!(scenario.run().is_empty());
        if let Some(fix) = scenario.visit.gps.as_mut() {
            fix.provider = None;
            fix.is_mock = true;
        }
        assert_eq!(scenario.codes(), ["mock_location"]);
        // A fix without a time says nothing.
        if let Some(fix) = scenario.visit.gps.as_mut() {
            fix.is_mock = false;
            fix.fix_time = None;
        }
        assert!(scenario.run().is_empty());
    }

    #[test]
    fn a_photos_satellite_time_is_compared_with_when_the_phone_says_it_took_it() {
        let mut scenario = Scenario::honest();
        // Exactly the tolerance apart: fine; a phone ahead by more is flagged too.
        scenario.photo().gps_time = Some(datetime!(2026-10-12 09:00 +8));
        assert!(scenario.run().is_empty());
        scenario.photo().gps_time = Some(datetime!(2026-10-12 08:59:30 +8));
        assert_eq!(
            scenario.run(),
            vec![EvidenceFlag::SatelliteTimeMismatch {
                photo_id: Some(PHOTO.to_owned()),
                satellite_time: datetime!(2026-10-12 00:59:30 UTC),
                skew_minutes: 11,
            }]
        );
        // Without the phone's capture time, the EXIF capture time (same clock) stands in.
        scenario.photo().device_time = None;
        scenario.photo().exif_time = Some(datetime!(2026-10-12 09:05 +8));
        assert!(scenario.run().is_empty());
        scenario.photo().exif_time = None;
        assert_eq!(scenario.codes(), ["photo_exif_missing"]);
        // A gallery photo was taken by some other camera's clock.
        let mut scenario = Scenario::honest();
        scenario.photo().gps_time = Some(datetime!(2026-10-01 09:00 +8));
        assert_eq!(scenario.codes(), ["satellite_time_mismatch"]);
        scenario.photo().in_app_camera = false;
        assert_eq!(scenario.codes(), ["photo_missing"]);
    }

    // --- order, vocabulary, settings ----------------------------------------------------------

    #[test]
    fn many_problems_come_out_in_a_fixed_order() {
        let mut scenario = Scenario::honest();
        if let Some(fix) = scenario.visit.gps.as_mut() {
            fix.is_mock = true;
            fix.accuracy_m = 150.0;
            let far = moved(HOME, 3000.0, 0.0);
            fix.lat = far.0;
            fix.lon = far.1;
        }
        scenario.visit.checkout_at = datetime!(2026-10-12 09:05 +8);
        scenario.photo().exif_time = Some(datetime!(2026-10-01 12:00 +8));
        scenario.photo().exif_gps = Some(moved(HOME, -5000.0, 0.0));
        scenario.others.push(other_use(
            "v-other-house",
            "hh-522301-0099",
            "2026-10",
            &"a".repeat(64),
        ));
        scenario.cadre.extend(busy_day(7));
        scenario.cadre.push(summary(
            "far-before",
            datetime!(2026-10-12 08:30 +8),
            datetime!(2026-10-12 08:50 +8),
            Some(moved(HOME, 100_000.0, 0.0)),
        ));
        scenario.skew = Some(Duration::hours(-3));
        scenario.photo().gps_time = Some(datetime!(2026-10-13 09:10 +8));
        scenario.submitted_at = datetime!(2026-11-20 10:00 +8);
        let expected = [
            "mock_location",
            "gps_inaccurate",
            "gps_far",
            "impossible_travel",
            "photo_exif_time_outside",
            "photo_exif_gps_far",
            "photo_reused",
            "too_short",
            "too_many_visits_in_day",
            "late_record",
            "clock_skew",
            "satellite_time_mismatch",
        ];
        assert_eq!(scenario.codes(), expected);
        assert_eq!(scenario.run(), scenario.run());
        // Shuffled inputs give the same answer.
        scenario.cadre.reverse();
        scenario.others.reverse();
        assert_eq!(scenario.codes(), expected);
    }

    fn one_of_each() -> Vec<EvidenceFlag> {
        vec![
            EvidenceFlag::NotInPerson {
                mode: VisitMode::WechatVideo,
            },
            EvidenceFlag::GpsMissing,
            EvidenceFlag::MockLocation,
            EvidenceFlag::GpsInaccurate {
                accuracy_m: 150.0,
                limit_m: 100.0,
            },
            EvidenceFlag::GpsFar {
                distance_m: 812.4,
                allowed_m: 310.0,
            },
            EvidenceFlag::ImpossibleTravel {
                previous_visit_id: "a".to_owned(),
                next_visit_id: "b".to_owned(),
                km: 100.0,
                hours: 0.5,
                kmh: Some(200.0),
            },
            EvidenceFlag::ImpossibleTravel {
                previous_visit_id: "a".to_owned(),
                next_visit_id: "b".to_owned(),
                km: 5.0,
                hours: 0.0,
                kmh: None,
            },
            EvidenceFlag::PhotoMissing { gallery_photos: 0 },
            EvidenceFlag::PhotoMissing { gallery_photos: 2 },
            EvidenceFlag::PhotoExifMissing {
                photo_id: "p".to_owned(),
            },
            EvidenceFlag::PhotoExifDamaged {
                photo_id: "p".to_owned(),
                time_read: true,
            },
            EvidenceFlag::PhotoExifDamaged {
                photo_id: "q".to_owned(),
                time_read: false,
            },
            EvidenceFlag::PhotoExifTimeOutside {
                photo_id: "p".to_owned(),
                exif_time: datetime!(2026-10-01 12:00 +8),
            },
            EvidenceFlag::PhotoExifGpsFar {
                photo_id: "p".to_owned(),
                distance_m: 2000.0,
                limit_m: 500.0,
                from_household: true,
            },
            EvidenceFlag::PhotoReused {
                photo_id: "p".to_owned(),
                other_visit_id: "v".to_owned(),
                other_household_id: "h".to_owned(),
                same_household_other_month: false,
            },
            EvidenceFlag::PhotoNearDuplicate {
                photo_id: "p".to_owned(),
                other_photo_id: "q".to_owned(),
                other_visit_id: "v".to_owned(),
                other_household_id: "h".to_owned(),
                distance_bits: 3,
            },
            EvidenceFlag::TooShort {
                minutes: 4,
                min_minutes: 10,
            },
            EvidenceFlag::TooManyVisitsInDay {
                count: 9,
                date: "2026-10-12".to_owned(),
                limit: 8,
            },
            EvidenceFlag::ClockSkew { skew_minutes: -15 },
            EvidenceFlag::SatelliteTimeMismatch {
                photo_id: None,
                satellite_time: datetime!(2026-11-09 09:30 +8),
                skew_minutes: -(69 * 1440 + 3 * 60 + 20),
            },
            EvidenceFlag::SatelliteTimeMismatch {
                photo_id: Some("p".to_owned()),
                satellite_time: datetime!(2026-10-12 01:10 UTC),
                skew_minutes: 25,
            },
            EvidenceFlag::SatelliteTimeMismatch {
                photo_id: Some("p".to_owned()),
                satellite_time: datetime!(2026-10-12 01:10 UTC),
                skew_minutes: -130,
            },
            EvidenceFlag::LateRecord {
                checkin_at: datetime!(2026-09-01 10:00 +8),
                submitted_at: datetime!(2026-11-09 09:30 +8),
                submitted_late: true,
                max_days: 7,
                duration_minutes: 100_000,
                too_long: true,
                max_hours: 8,
            },
        ]
    }

    #[test]
    fn codes_are_the_serde_tags_and_flags_round_trip_through_json() {
        for flag in one_of_each() {
            let json = serde_json::to_value(&flag).unwrap_or_default();
            assert_eq!(json["code"], flag.code(), "{json}");
            let back: EvidenceFlag =
                serde_json::from_value(json.clone()).unwrap_or(EvidenceFlag::GpsMissing);
            assert_eq!(back, flag, "{json}");
        }
        assert_eq!(
            serde_json::to_string(&EvidenceFlag::GpsFar {
                distance_m: 812.0,
                allowed_m: 310.0
            })
            .unwrap_or_default(),
            r#"{"code":"gps_far","distance_m":812.0,"allowed_m":310.0}"#
        );
    }

    #[test]
    fn every_flag_has_a_distinct_code_and_label_and_a_chinese_detail() {
        let flags = one_of_each();
        let mut codes: Vec<_> = flags.iter().map(EvidenceFlag::code).collect();
        let mut labels: Vec<_> = flags.iter().map(EvidenceFlag::label_zh).collect();
        codes.dedup();
        labels.dedup();
        assert_eq!(codes.len(), 18);
        assert_eq!(labels.len(), 18);
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), 18, "codes are unique");
        for flag in &flags {
            assert!(
                flag.code()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                flag.code()
            );
            let detail = flag.detail();
            assert!(detail.ends_with('。'), "{detail}");
            assert!(flag.to_string().starts_with(flag.label_zh()));
        }
    }

    /// The text of every flag kind, as a reviewer reads it, with names and without.
    #[test]
    fn the_text_of_every_flag_kind_is_pinned() {
        let mut names = FlagNames::default();
        names
            .photos
            .insert("p".to_owned(), FlagNames::photo_name(1));
        names
            .photos
            .insert("q".to_owned(), FlagNames::photo_name(2));
        names.visits.insert("a".to_owned(), "本次走访".to_owned());
        names.visits.insert(
            "b".to_owned(),
            FlagNames::visit_name("李小红", datetime!(2026-10-13 00:30 +8), None),
        );
        names.visits.insert(
            "v".to_owned(),
            FlagNames::visit_name("王大山", datetime!(2026-09-11 17:00 UTC), Some("赵强")),
        );
        let named: Vec<String> = one_of_each()
            .iter()
            .map(|flag| flag.detail_named(&names))
            .collect();
        let expected = [
            "走访方式为“微信视频”，不计入本月入户走访率。",
            "入户走访没有定位（室内或山区可能无信号），请结合照片核实。",
            "手机报告该定位来自模拟位置软件，不能作为到户依据。",
            "定位精度 150 米，粗于 100 米，无法证明到户。",
            "定位距农户登记位置 812 米，超过核验范围 310 米（半径加定位精度）。",
            "本次走访签退到李小红户 10月13日的走访签到相距 100.0 公里、间隔 30 分钟，需时速 200 公里。",
            "本次走访与李小红户 10月13日的走访相距 5.0 公里，时间却无间隔或重叠。",
            "入户走访没有照片。",
            "入户走访没有应用内拍摄的照片（只有 2 张相册照片）。",
            "照片1标为应用内拍摄，却没有 EXIF 拍摄时间。",
            "照片1的 EXIF 信息部分损坏，可能经编辑软件改存过；能读出的拍摄时间和地点已照常核验。",
            "照片2的 EXIF 信息部分损坏，可能经编辑软件改存过；读不出拍摄时间。",
            "照片1的拍摄时间 2026-10-01 12:00 不在签到签退时间前后范围内。",
            "照片1的拍摄地点距农户登记位置 2.0 公里，超过 500 米。",
            "照片1与王大山户 9月12日的走访（帮扶干部 赵强）的照片是同一文件。",
            "照片1与王大山户 9月12日的走访（帮扶干部 赵强）的照片2高度相似（感知哈希相差 3 位）。",
            "入户走访仅 4 分钟，少于 10 分钟。",
            "2026-10-12 当天入户走访 9 户，超过 8 户。",
            "手机时间比服务器慢 15 分钟，签到和拍摄时间可能不准。",
            "定位卫星时间为 2026-11-09 09:30，手机记录的签到签退时间比它慢 69 天 3 小时，手机时间可能被调过。",
            "照片1的 GPS 卫星时间为 2026-10-12 09:10，手机记录的拍摄时间比它快 25 分钟，手机时间可能被调过。",
            "照片1的 GPS 卫星时间为 2026-10-12 09:10，手机记录的拍摄时间比它慢 2 小时 10 分钟，手机时间可能被调过。",
            "签到于 2026-09-01 10:00，服务器 2026-11-09 09:30 才收到，相隔 68 天 23 小时，超过 7 天；\
             走访时长 1666 小时 40 分钟，超过 8 小时，可能是事后补录。",
        ];
        assert_eq!(named, expected);
        // Without names no id leaks into the text: generic names stand in.
        let generic: Vec<String> = one_of_each().iter().map(EvidenceFlag::detail).collect();
        assert_eq!(
            generic[5],
            "另一次走访签退到另一次走访签到相距 100.0 公里、间隔 30 分钟，需时速 200 公里。"
        );
        assert_eq!(
            generic[15],
            "照片与另一次走访的照片高度相似（感知哈希相差 3 位）。"
        );
        assert_eq!(
            EvidenceFlag::PhotoExifGpsFar {
                photo_id: "p".to_owned(),
                distance_m: 8_430_544.0,
                limit_m: 500.0,
                from_household: false,
            }
            .detail_named(&names),
            "照片1的拍摄地点距走访定位 8430.5 公里，超过 500 米。"
        );
        for (flag, text) in one_of_each().iter().zip(&generic) {
            for id in ["\"p\"", "\"q\"", "\"a\"", "\"b\"", "\"v\"", "\"h\""] {
                let bare = id.trim_matches('"');
                assert!(
                    !text.contains(&format!(" {bare} ")),
                    "{}: {text}",
                    flag.code()
                );
            }
        }
    }

    #[test]
    fn settings_default_and_accept_partial_files() {
        let defaults = EvidenceSettings::default();
        assert_eq!(defaults.household_radius_m, 300.0);
        assert_eq!(defaults.exif_time_tolerance_minutes, 60);
        assert_eq!(defaults.photo_fix_max_distance_m, 500.0);
        assert_eq!(defaults.near_duplicate_max_bits, 6);
        assert_eq!(defaults.max_travel_kmh, 120.0);
        assert_eq!(defaults.max_in_person_visits_per_day, 8);
        assert_eq!(defaults.min_visit_minutes, 10);
        assert_eq!(defaults.max_clock_skew_minutes, 10);
        assert_eq!(defaults.late_record_max_days, 7);
        assert_eq!(defaults.late_record_max_hours, 8);
        let partial: EvidenceSettings =
            serde_json::from_str(r#"{"min_visit_minutes": 60, "household_radius_m": 500}"#)
                .unwrap_or_default();
        assert_eq!(partial.min_visit_minutes, 60);
        assert_eq!(partial.household_radius_m, 500.0);
        assert_eq!(partial.max_travel_kmh, 120.0);
        assert!(serde_json::from_str::<EvidenceSettings>(r#"{"radius": 1}"#).is_err());
    }

    #[test]
    fn business_dates_are_beijing_dates() {
        assert_eq!(business_date(datetime!(2026-10-11 15:59 UTC)), "2026-10-11");
        assert_eq!(business_date(datetime!(2026-10-11 16:00 UTC)), "2026-10-12");
    }
}
