-- Near-duplicate photo search without reading every photo. The 64-bit perceptual hash is
-- split into 7 bands (six of 9 bits, one of 10). Two hashes that differ in at most 6 bits
-- differ in at most 6 bands, so at least one band is equal (pigeonhole): an exact, indexed
-- lookup by band finds every candidate, and the Hamming distance is then checked in Rust.
-- (near_duplicate_max_bits above 6 falls back to the full scan; see sqlite.rs.) The bands
-- are virtual generated columns: computed from phash, never out of step with it. Masking
-- after the shift makes them the same whether SQLite's >> sign-extends or not.
ALTER TABLE photo_meta ADD COLUMN phash_band0 INTEGER GENERATED ALWAYS AS (phash & 511) VIRTUAL;
ALTER TABLE photo_meta ADD COLUMN phash_band1 INTEGER GENERATED ALWAYS AS ((phash >> 9) & 511) VIRTUAL;
ALTER TABLE photo_meta ADD COLUMN phash_band2 INTEGER GENERATED ALWAYS AS ((phash >> 18) & 511) VIRTUAL;
ALTER TABLE photo_meta ADD COLUMN phash_band3 INTEGER GENERATED ALWAYS AS ((phash >> 27) & 511) VIRTUAL;
ALTER TABLE photo_meta ADD COLUMN phash_band4 INTEGER GENERATED ALWAYS AS ((phash >> 36) & 511) VIRTUAL;
ALTER TABLE photo_meta ADD COLUMN phash_band5 INTEGER GENERATED ALWAYS AS ((phash >> 45) & 511) VIRTUAL;
ALTER TABLE photo_meta ADD COLUMN phash_band6 INTEGER GENERATED ALWAYS AS ((phash >> 54) & 1023) VIRTUAL;
CREATE INDEX photo_meta_phash_band0 ON photo_meta (phash_band0);
CREATE INDEX photo_meta_phash_band1 ON photo_meta (phash_band1);
CREATE INDEX photo_meta_phash_band2 ON photo_meta (phash_band2);
CREATE INDEX photo_meta_phash_band3 ON photo_meta (phash_band3);
CREATE INDEX photo_meta_phash_band4 ON photo_meta (phash_band4);
CREATE INDEX photo_meta_phash_band5 ON photo_meta (phash_band5);
CREATE INDEX photo_meta_phash_band6 ON photo_meta (phash_band6);
