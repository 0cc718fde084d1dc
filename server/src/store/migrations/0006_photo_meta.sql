-- 0006_photo_meta: what upload completion extracts from an accepted photo, and the evidence
-- flags of each visit revision (DESIGN §5).

-- One row per accepted blob (keyed like `blobs`: one blob may serve many photo rows).
-- Written before the blob row, so every blob accepted from now on has its metadata.
CREATE TABLE photo_meta (
    sha256             TEXT PRIMARY KEY NOT NULL,
    -- Sniffed from the bytes, not the declared type.
    mime_type          TEXT NOT NULL,
    width              INTEGER NOT NULL,
    height             INTEGER NOT NULL,
    -- EXIF DateTimeOriginal: RFC 3339 with its offset when the camera wrote
    -- OffsetTimeOriginal (exif_time_has_offset = 1), else the local wall-clock time as
    -- 'YYYY-MM-DDTHH:MM:SS' (exif_time_has_offset = 0; zone unknown).
    exif_time          TEXT,
    exif_time_has_offset INTEGER NOT NULL DEFAULT 0,
    -- EXIF GPS, WGS-84 decimal degrees.
    exif_lat           REAL,
    exif_lon           REAL,
    -- GPS satellite UTC time of the EXIF fix (unix ms).
    gps_time           INTEGER,
    make               TEXT,
    model              TEXT,
    orientation        INTEGER,
    -- 64-bit perceptual hash, its bits stored as a signed INTEGER. Near duplicates are found
    -- by Hamming distance, which no B-tree index answers, so there is no index on it.
    phash              INTEGER NOT NULL
);

-- Evidence flags of a revision: a JSON array of fieldsync_model::evidence::EvidenceFlag
-- (tagged by code); NULL until first computed.
ALTER TABLE visits ADD COLUMN evidence_flags TEXT;

-- The same cadre's visits around a date (travel speed and visits per day).
CREATE INDEX visits_by_author_month ON visits (author_user_id, business_month);
