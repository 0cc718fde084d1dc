-- 0024_exif_damaged (issue 14 §6): a photo whose EXIF block could be read only in part.
-- Upload completion now keeps every EXIF tag that parses instead of dropping the whole block
-- over one malformed entry; this marks such a photo, so the evidence rules call its EXIF
-- damaged (照片EXIF信息损坏) rather than missing. Photos stored before this migration were
-- read all-or-nothing: 0 for them (their EXIF either read completely or is absent).
ALTER TABLE photo_meta ADD COLUMN exif_damaged INTEGER NOT NULL DEFAULT 0;
