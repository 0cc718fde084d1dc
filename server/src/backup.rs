//! `fieldsync-server backup DEST` and `fieldsync-server restore SRC` (issue 12 §4): an online,
//! consistent copy of a serving server's data folder, and its return into a new folder.
//!
//! **What a backup holds.** `DEST/fieldsync.sqlite3` (SQLite's online backup API, one
//! snapshot: `store::sqlite::backup`), `DEST/blobs/sha256/…` (every photo the snapshot
//! records as stored), `DEST/blobs/derived/…` (the console's re-encoded copies, when
//! present), optionally `DEST/keys/` (`--with-keys`), and last `DEST/manifest.json`. The
//! manifest is written only when everything else is durable, so a folder without one is an
//! interrupted backup and `restore` refuses it.
//!
//! **Why the blobs are consistent with the database.** Blobs are content-addressed (named by
//! their SHA-256) and immutable once stored, and a blob's row is inserted into `blobs` only
//! after its file was fsynced and renamed into place (`media::blobs`). So copying the
//! database first and then exactly the blobs its snapshot lists copies files that all exist
//! and can no longer change; blobs stored after the snapshot are simply not in it (the
//! phones that sent them were acknowledged later, and upload them again after a restore
//! only if they are asked to: nothing in the snapshot refers to them). Each copied blob is
//! re-hashed on the way, so a blob damaged on disk is reported instead of copied silently.
//! Uploads still in progress in the snapshot are rewound to offset 0 in the copy (their
//! staging files are not copied): the phones send those photos again from the start.
//!
//! **Photos on an object store.** When `settings.blobs` names an S3-compatible store, the
//! photos are not in the data folder and a backup holds only the database (and keys when
//! asked): keeping the photos is the object store's job (bucket versioning, replication to a
//! second site, or the store's own backup tool; docs/operations.md). The manifest then
//! names the store (`blob_store`), and a restored server must use that same store.
//!
//! **Keys.** The personal-data and audit keys live in the key folder outside the data folder
//! (`keys.rs`), so that a stolen data backup cannot be read. A backup without the keys is
//! unreadable if the key folder is ever lost; a backup with them is as sensitive as the
//! server itself. The default is *without* keys (the key folder changes only at a rotation
//! and is backed up separately, to a different place: docs/operations.md); `--with-keys`
//! puts them in `DEST/keys/` for a county that keeps backups on an encrypted, access-
//! controlled disk. Either way the manifest records the key ids (public), so `restore`
//! refuses a key folder that cannot open the backup instead of starting a server whose
//! personal data no longer opens.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::{self, KeyError};
use crate::settings::{BlobLocation, Settings};
use crate::store::StoreError;
use crate::store::sealed::{self, PII_KEY_NAME};
use crate::store::sqlite::backup as database_copy;

/// Name of the manifest, the last file a backup writes.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Name of the database file in a backup (the same as in a data folder).
pub const DATABASE_FILE: &str = "fieldsync.sqlite3";
/// Folder of the key files in a backup made with `--with-keys`.
pub const KEYS_FOLDER: &str = "keys";
/// The manifest format this build writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// What to put in a backup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupOptions {
    /// Copy the key folder into `DEST/keys/` too (see the module doc for the risk).
    pub with_keys: bool,
}

/// The backup's description, `DEST/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// RFC 3339 UTC time the backup finished.
    pub created_at: String,
    /// `PRAGMA user_version` of the copied database.
    pub schema_version: i64,
    /// SHA-256 of every copied blob (the stored originals).
    pub blobs: Vec<String>,
    /// Stored blobs that were missing or damaged in the live folder and are not in the
    /// backup (empty in a healthy folder).
    pub missing_blobs: Vec<String>,
    /// Key id of every personal-data key that may have sealed a value in the database (the
    /// current one first), so a restore can check the key folder before serving.
    pub pii_key_ids: Vec<String>,
    /// Key id of the audit chain's key, if the server had one.
    pub audit_key_id: Option<String>,
    /// Whether `keys/` holds a copy of the key folder.
    pub keys_included: bool,
    /// `s3://bucket[/prefix]` when the photos live in an object store, which backs them up
    /// itself; `blobs` is then empty. Absent in backups of a local blob folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_store: Option<String>,
}

/// What a backup did (printed by the command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub destination: PathBuf,
    pub schema_version: i64,
    pub blobs_copied: usize,
    pub blob_bytes: u64,
    pub derived_copied: usize,
    pub uploads_rewound: usize,
    /// Stored blobs not in the backup because they are missing or damaged in the live
    /// folder: the backup is complete otherwise, and the command exits non-zero.
    pub missing_blobs: Vec<String>,
    pub keys_included: bool,
    /// The object store that keeps the photos (not copied), when there is one.
    pub blob_store: Option<String>,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    pub data_dir: PathBuf,
    pub schema_version: i64,
    pub blobs_restored: usize,
    /// Whether key files were written into the key folder from the backup.
    pub keys_restored: bool,
}

/// Why a backup could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no database at {0}: is --data-dir the server's data folder?")]
    NoDatabase(PathBuf),
    #[error(
        "backup folder {0} is not empty: give a new or empty folder (a backup never overwrites another)"
    )]
    DestinationNotEmpty(PathBuf),
    #[error("copying the database failed: {0}")]
    Database(#[from] StoreError),
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the key folder: {0}")]
    Keys(#[from] KeyError),
}

/// Why a restore was refused or failed. Every refusal happens before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(
        "{0} is not a complete fieldsync backup (no {MANIFEST_FILE}: the backup was interrupted, or this is the wrong folder)"
    )]
    NotABackup(PathBuf),
    #[error("{path}: unreadable manifest ({message})")]
    BadManifest { path: PathBuf, message: String },
    #[error(
        "data folder {0} is not empty: restore never overwrites a live or existing folder. Stop the server, move the folder aside (keep it), and restore into a new or empty folder"
    )]
    DataFolderNotEmpty(PathBuf),
    #[error(
        "the key folder {key_dir} cannot open this backup: it was sealed with personal-data key {expected}, which is not there. Restore the key folder from its own backup (or use a backup made with --with-keys)"
    )]
    MissingPiiKey { key_dir: PathBuf, expected: String },
    #[error(
        "the key folder {key_dir} holds audit key {found}, but this backup's audit chain was signed with {expected}: restore the matching key folder"
    )]
    WrongAuditKey {
        key_dir: PathBuf,
        expected: String,
        found: String,
    },
    #[error(
        "key file {0} differs from the one in the backup: refusing to replace a key (move the key folder aside first if the backup's keys are the right ones)"
    )]
    KeyConflict(PathBuf),
    #[error("blob {sha256} in the backup is missing or damaged")]
    DamagedBlob { sha256: String },
    #[error("the database in the backup is not usable: {0}")]
    Database(#[from] StoreError),
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the key folder: {0}")]
    Keys(#[from] KeyError),
}

/// Back up the data folder of `settings` into `destination` (new or empty) while the server
/// may be serving. Blocking: call it from a blocking thread.
pub fn backup(
    settings: &Settings,
    destination: &Path,
    options: BackupOptions,
) -> Result<BackupReport, BackupError> {
    let database = settings.sqlite_path();
    if !database.is_file() {
        return Err(BackupError::NoDatabase(database));
    }
    if !is_missing_or_empty(destination).map_err(io_error(destination))? {
        return Err(BackupError::DestinationNotEmpty(destination.to_owned()));
    }
    create_private_dir(destination).map_err(io_error(destination))?;
    // 1. The database snapshot: it decides which blobs belong to the backup.
    let copy = database_copy::copy_live_database(&database, &destination.join(DATABASE_FILE))?;
    // 2. Exactly the blobs the snapshot lists (immutable once stored; see the module doc),
    //    unless they live in an object store, which keeps them itself.
    let blob_store = match &settings.blobs.url {
        BlobLocation::LocalFolder => None,
        location => Some(String::from(location.clone())),
    };
    let listed_blobs: &[String] = if blob_store.is_some() {
        &[]
    } else {
        &copy.stored_blobs
    };
    let source_blobs = settings.blob_dir();
    let target_blobs = destination.join("blobs");
    let mut blobs = Vec::with_capacity(copy.stored_blobs.len());
    let mut missing_blobs = Vec::new();
    let mut blob_bytes = 0;
    let mut derived_copied = 0;
    for sha256 in listed_blobs {
        let Some(relative) = blob_relative_path(sha256) else {
            missing_blobs.push(sha256.clone());
            continue;
        };
        match copy_verified(
            &source_blobs.join(&relative),
            &target_blobs.join(&relative),
            sha256,
        ) {
            Ok(Some(bytes)) => {
                blob_bytes += bytes;
                blobs.push(sha256.clone());
            }
            Ok(None) => missing_blobs.push(sha256.clone()),
            Err(source) => {
                return Err(BackupError::Io {
                    path: source_blobs.join(&relative),
                    source,
                });
            }
        }
        for relative in derived_relative_paths(sha256) {
            let from = source_blobs.join(&relative);
            if from.is_file() {
                copy_file(&from, &target_blobs.join(&relative)).map_err(io_error(&from))?;
                derived_copied += 1;
            }
        }
    }
    // 3. Keys: ids always (public), files only when asked.
    let key_dir = settings.key_dir();
    let (pii_key_ids, audit_key_id) = key_ids(&key_dir)?;
    if options.with_keys {
        copy_key_folder(&key_dir, &destination.join(KEYS_FOLDER))?;
    }
    // 4. The manifest, last: its presence says the rest is complete and durable.
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        created_at: now_rfc3339(),
        schema_version: copy.schema_version,
        blobs,
        missing_blobs: missing_blobs.clone(),
        pii_key_ids,
        audit_key_id,
        keys_included: options.with_keys,
        blob_store: blob_store.clone(),
    };
    sync_tree(destination).map_err(io_error(destination))?;
    let manifest_path = destination.join(MANIFEST_FILE);
    write_durably(
        &manifest_path,
        &serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
    )
    .map_err(io_error(&manifest_path))?;
    Ok(BackupReport {
        destination: destination.to_owned(),
        schema_version: copy.schema_version,
        blobs_copied: manifest.blobs.len(),
        blob_bytes,
        derived_copied,
        uploads_rewound: copy.uploads_rewound,
        missing_blobs,
        keys_included: options.with_keys,
        blob_store,
    })
}

/// Read a backup's manifest (also a quick "is this a complete backup" check).
pub fn read_manifest(source: &Path) -> Result<Manifest, RestoreError> {
    let path = source.join(MANIFEST_FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(RestoreError::NotABackup(source.to_owned()));
        }
        Err(source) => return Err(RestoreError::Io { path, source }),
    };
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|error| RestoreError::BadManifest {
            path: path.clone(),
            message: error.to_string(),
        })?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(RestoreError::BadManifest {
            path,
            message: format!(
                "format {} (this server reads {MANIFEST_FORMAT})",
                manifest.format
            ),
        });
    }
    Ok(manifest)
}

/// Restore the backup in `source` into the data folder of `settings`, which must be new or
/// empty (a live folder is never overwritten), and its key folder. Blocking.
///
/// Order: every check first (manifest, empty data folder, keys that open the backup), then
/// the data is copied into a sibling staging folder and verified (database integrity, every
/// blob's hash), then the keys are written, and last the staging folder is renamed into
/// place, so an interrupted restore never leaves a half-filled data folder behind.
pub fn restore(settings: &Settings, source: &Path) -> Result<RestoreReport, RestoreError> {
    let manifest = read_manifest(source)?;
    let data_dir = settings.data_dir.clone();
    if !is_missing_or_empty(&data_dir).map_err(restore_io(&data_dir))? {
        return Err(RestoreError::DataFolderNotEmpty(data_dir));
    }
    let key_dir = settings.key_dir();
    let backup_keys = source.join(KEYS_FOLDER);
    let keys_to_write = if manifest.keys_included {
        plan_key_restore(&backup_keys, &key_dir)?
    } else {
        Vec::new()
    };
    // The keys the server will have after the restore must open the backup.
    check_keys_open_backup(&manifest, &key_dir, &backup_keys, &keys_to_write)?;

    let staging = staging_folder(&data_dir);
    if staging.exists() {
        // Left by an interrupted restore: never served, safe to start over.
        std::fs::remove_dir_all(&staging).map_err(restore_io(&staging))?;
    }
    create_private_dir(&staging).map_err(restore_io(&staging))?;
    let restored = (|| {
        let database = staging.join(DATABASE_FILE);
        copy_file(&source.join(DATABASE_FILE), &database)
            .map_err(restore_io(&source.join(DATABASE_FILE)))?;
        let schema_version = database_copy::check_database_file(&database)?;
        for sha256 in &manifest.blobs {
            let Some(relative) = blob_relative_path(sha256) else {
                return Err(RestoreError::DamagedBlob {
                    sha256: sha256.clone(),
                });
            };
            let from = source.join("blobs").join(&relative);
            match copy_verified(&from, &staging.join("blobs").join(&relative), sha256) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(RestoreError::DamagedBlob {
                        sha256: sha256.clone(),
                    });
                }
                Err(error) => return Err(restore_io(&from)(error)),
            }
            for relative in derived_relative_paths(sha256) {
                let from = source.join("blobs").join(&relative);
                if from.is_file() {
                    copy_file(&from, &staging.join("blobs").join(&relative))
                        .map_err(restore_io(&from))?;
                }
            }
        }
        sync_tree(&staging).map_err(restore_io(&staging))?;
        Ok(schema_version)
    })();
    let schema_version = match restored {
        Ok(version) => version,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(error);
        }
    };
    for (from, to) in &keys_to_write {
        let name = to
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(from).map_err(restore_io(from))?;
        write_private_file(&key_dir, &name, &bytes).map_err(restore_io(to))?;
    }
    if data_dir.exists() {
        // Empty (checked above); rename cannot replace a directory on every platform.
        std::fs::remove_dir(&data_dir).map_err(restore_io(&data_dir))?;
    }
    std::fs::rename(&staging, &data_dir).map_err(restore_io(&data_dir))?;
    if let Some(parent) = data_dir.parent() {
        sync_directory(parent).map_err(restore_io(parent))?;
    }
    Ok(RestoreReport {
        data_dir,
        schema_version,
        blobs_restored: manifest.blobs.len(),
        keys_restored: !keys_to_write.is_empty(),
    })
}

/// Exit code of `backup` when the backup completed but stored photos were missing or
/// damaged in the live folder (1 is any failure, 2 clap's usage error).
pub const EXIT_BLOBS_MISSING: i32 = 3;

/// The `fieldsync-server backup DEST [--with-keys]` command: back up and print what was
/// copied; the exit code. It runs on the command's own thread: the command process has
/// nothing else to do, and the server it backs up is another process.
pub async fn run_backup(
    settings: Settings,
    destination: PathBuf,
    with_keys: bool,
) -> Result<i32, BackupError> {
    let report = backup(&settings, &destination, BackupOptions { with_keys })?;
    println!(
        "备份完成 (backup complete): {} — schema v{}, {} photos ({} bytes), {} derived copies, {} unfinished uploads rewound",
        report.destination.display(),
        report.schema_version,
        report.blobs_copied,
        report.blob_bytes,
        report.derived_copied,
        report.uploads_rewound
    );
    if let Some(blob_store) = &report.blob_store {
        println!(
            "注意：照片不在备份中 (photos are NOT in this backup): they live in the object store {blob_store}, which must back them up itself (bucket versioning or replication); a restored server must use the same store."
        );
    }
    if report.keys_included {
        println!(
            "注意：备份包含密钥 (the backup INCLUDES the keys): anyone who can read it can read every ID and phone number in it. Keep it encrypted and access-controlled."
        );
    } else {
        println!(
            "注意：备份不含密钥 (the backup does NOT include the key folder {}): back that folder up separately, or this backup cannot be read.",
            settings.key_dir().display()
        );
    }
    if report.missing_blobs.is_empty() {
        return Ok(0);
    }
    eprintln!(
        "警告 WARNING: {} stored photos are missing or damaged in {} and are not in the backup: {}",
        report.missing_blobs.len(),
        settings.blob_dir().display(),
        report.missing_blobs.join(", ")
    );
    Ok(EXIT_BLOBS_MISSING)
}

/// The `fieldsync-server restore SRC` command: restore and print what was restored.
pub async fn run_restore(settings: Settings, source: PathBuf) -> Result<(), RestoreError> {
    let report = restore(&settings, &source)?;
    println!(
        "恢复完成 (restore complete) into {}: schema v{}, {} photos{}. Start the server on this folder; it upgrades the schema if this build is newer.",
        report.data_dir.display(),
        report.schema_version,
        report.blobs_restored,
        if report.keys_restored {
            format!(", keys written to {}", settings.key_dir().display())
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `sha256/<aa>/<sha256>` inside a blob folder, or `None` for a name that is not a SHA-256
/// (never joined to a path: a damaged database must not name files outside the folder).
fn blob_relative_path(sha256: &str) -> Option<PathBuf> {
    if !fieldsync_model::visit::is_sha256_hex(sha256) {
        return None;
    }
    Some(Path::new("sha256").join(&sha256[..2]).join(sha256))
}

/// The derived copies a blob may have (`media::blobs::Derived`), relative to the blob folder.
fn derived_relative_paths(sha256: &str) -> Vec<PathBuf> {
    if !fieldsync_model::visit::is_sha256_hex(sha256) {
        return Vec::new();
    }
    ["thumb.jpg", "display.jpg"]
        .iter()
        .map(|suffix| {
            Path::new("derived")
                .join(&sha256[..2])
                .join(format!("{sha256}.{suffix}"))
        })
        .collect()
}

/// Copy `from` to `to`, hashing on the way; `Ok(None)` when `from` is missing or its bytes
/// do not hash to `sha256` (then nothing is left at `to`). The copy is fsynced.
fn copy_verified(from: &Path, to: &Path, sha256: &str) -> std::io::Result<Option<u64>> {
    let mut input = match std::fs::File::open(from) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut output = std::fs::File::create(to)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let read = input.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        output.write_all(&buffer[..read])?;
        total += read as u64;
    }
    if hex::encode(hasher.finalize()) != sha256 {
        drop(output);
        std::fs::remove_file(to)?;
        return Ok(None);
    }
    output.sync_all()?;
    Ok(Some(total))
}

fn copy_file(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(from, to)?;
    std::fs::File::open(to)?.sync_all()
}

/// The key ids a backup records: every personal-data key (current first) and the audit key.
/// A key folder that does not exist yet (no server ever ran) gives none.
fn key_ids(key_dir: &Path) -> Result<(Vec<String>, Option<String>), KeyError> {
    let mut pii_key_ids = Vec::new();
    if keys::key_path(key_dir, PII_KEY_NAME).exists() {
        pii_key_ids.push(keys::load(key_dir, PII_KEY_NAME)?.key_id);
        for name in sealed::retired_key_names(key_dir)? {
            pii_key_ids.push(keys::load(key_dir, &name)?.key_id);
        }
    }
    let audit_key_id = if keys::key_path(key_dir, crate::audit::AUDIT_KEY_NAME).exists() {
        Some(keys::load(key_dir, crate::audit::AUDIT_KEY_NAME)?.key_id)
    } else {
        None
    };
    Ok((pii_key_ids, audit_key_id))
}

/// Copy every regular file of the key folder (keys and the audit legacy note), owner-only.
fn copy_key_folder(key_dir: &Path, target: &Path) -> Result<(), BackupError> {
    let entries = std::fs::read_dir(key_dir).map_err(io_error(key_dir))?;
    create_private_dir(target).map_err(io_error(target))?;
    for entry in entries {
        let entry = entry.map_err(io_error(key_dir))?;
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(io_error(&path))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        write_private_file(target, &name, &bytes).map_err(io_error(target))?;
    }
    Ok(())
}

/// Which backup key files to write into `key_dir`: those it lacks. A file it already holds
/// with other bytes is a conflict (a restore never replaces a key).
fn plan_key_restore(
    backup_keys: &Path,
    key_dir: &Path,
) -> Result<Vec<(PathBuf, PathBuf)>, RestoreError> {
    let entries = std::fs::read_dir(backup_keys).map_err(restore_io(backup_keys))?;
    let mut to_write = Vec::new();
    for entry in entries {
        let entry = entry.map_err(restore_io(backup_keys))?;
        let from = entry.path();
        if !from.is_file() {
            continue;
        }
        let to = key_dir.join(entry.file_name());
        match std::fs::read(&to) {
            Ok(existing) => {
                let wanted = std::fs::read(&from).map_err(restore_io(&from))?;
                if existing != wanted {
                    return Err(RestoreError::KeyConflict(to));
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                to_write.push((from, to));
            }
            Err(source) => return Err(RestoreError::Io { path: to, source }),
        }
    }
    Ok(to_write)
}

/// The key folder as it will be after the restore (existing files plus `keys_to_write`) must
/// hold the backup's current personal-data key and its audit key.
fn check_keys_open_backup(
    manifest: &Manifest,
    key_dir: &Path,
    backup_keys: &Path,
    keys_to_write: &[(PathBuf, PathBuf)],
) -> Result<(), RestoreError> {
    // Where each key will be read from after the restore.
    let folder_of = |name: &str| -> PathBuf {
        let file = format!("{name}.key");
        if keys_to_write
            .iter()
            .any(|(_, to)| to.file_name().is_some_and(|found| found == file.as_str()))
        {
            backup_keys.to_owned()
        } else {
            key_dir.to_owned()
        }
    };
    if let Some(expected) = manifest.pii_key_ids.first() {
        let mut available = Vec::new();
        let current_folder = folder_of(PII_KEY_NAME);
        if keys::key_path(&current_folder, PII_KEY_NAME).exists() {
            available.push(keys::load(&current_folder, PII_KEY_NAME)?.key_id);
        }
        for folder in [key_dir, backup_keys] {
            for name in sealed::retired_key_names(folder)? {
                available.push(keys::load(folder, &name)?.key_id);
            }
        }
        if !available.contains(expected) {
            return Err(RestoreError::MissingPiiKey {
                key_dir: key_dir.to_owned(),
                expected: expected.clone(),
            });
        }
    }
    if let Some(expected) = &manifest.audit_key_id {
        let folder = folder_of(crate::audit::AUDIT_KEY_NAME);
        let found = if keys::key_path(&folder, crate::audit::AUDIT_KEY_NAME).exists() {
            keys::load(&folder, crate::audit::AUDIT_KEY_NAME)?.key_id
        } else {
            "(none)".to_owned()
        };
        if &found != expected {
            return Err(RestoreError::WrongAuditKey {
                key_dir: key_dir.to_owned(),
                expected: expected.clone(),
                found,
            });
        }
    }
    Ok(())
}

/// `<data_dir>.restoring` beside the data folder (same filesystem, so the final rename is
/// atomic).
fn staging_folder(data_dir: &Path) -> PathBuf {
    let mut name = data_dir
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_else(|| "fieldsync-data".into());
    name.push(".restoring");
    data_dir.with_file_name(name)
}

fn is_missing_or_empty(folder: &Path) -> std::io::Result<bool> {
    match std::fs::read_dir(folder) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(error) => Err(error),
    }
}

/// A folder readable by its owner only: backups hold every household's data.
fn create_private_dir(folder: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(folder)
}

fn write_private_file(folder: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    create_private_dir(folder)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(folder.join(name))?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    if let Some(parent) = path.parent() {
        sync_directory(parent)?;
    }
    Ok(())
}

/// fsync every directory under `root` (files were fsynced as they were written), so the
/// names of the copied files survive a power cut too.
fn sync_tree(root: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        }
    }
    sync_directory(root)
}

fn sync_directory(folder: &Path) -> std::io::Result<()> {
    std::fs::File::open(folder)?.sync_all()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

fn restore_io(path: &Path) -> impl Fn(std::io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_in(root: &Path, name: &str) -> Settings {
        Settings {
            data_dir: root.join(name),
            ..Settings::default()
        }
    }

    /// A data folder with a database, one stored blob and its thumbnail, and keys.
    fn live_folder(root: &Path) -> (Settings, String) {
        let settings = settings_in(root, "data");
        std::fs::create_dir_all(&settings.data_dir).unwrap();
        let pii = sealed::PiiCipher::load_or_create(&settings.key_dir()).unwrap();
        crate::audit::load_or_create_key(&settings.key_dir()).unwrap();
        let store = crate::store::SqliteStore::open(&settings.sqlite_path(), pii).unwrap();
        drop(store);
        let bytes = b"a photo's bytes".to_vec();
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let blob = settings
            .blob_dir()
            .join(blob_relative_path(&sha256).unwrap());
        std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
        std::fs::write(&blob, &bytes).unwrap();
        let connection = rusqlite::Connection::open(settings.sqlite_path()).unwrap();
        connection
            .execute(
                "INSERT INTO blobs (sha256, size_bytes, stored_at) VALUES (?1, ?2, 0)",
                rusqlite::params![sha256, bytes.len() as i64],
            )
            .unwrap();
        (settings, sha256)
    }

    #[test]
    fn with_photos_on_an_object_store_the_backup_holds_the_database_and_names_the_store() {
        let root = tempfile::tempdir().unwrap();
        let (mut live, _sha256) = live_folder(root.path());
        live.blobs.url = BlobLocation::S3 {
            bucket: "county-photos".into(),
            prefix: String::new(),
        };
        let destination = root.path().join("backup");
        let report = backup(&live, &destination, BackupOptions::default()).unwrap();
        assert_eq!(report.blobs_copied, 0);
        assert!(
            report.missing_blobs.is_empty(),
            "no photo counts as missing"
        );
        assert_eq!(report.blob_store.as_deref(), Some("s3://county-photos"));
        let manifest = read_manifest(&destination).unwrap();
        assert!(manifest.blobs.is_empty());
        assert_eq!(manifest.blob_store.as_deref(), Some("s3://county-photos"));
        assert!(!destination.join("blobs").exists());
        assert!(destination.join(DATABASE_FILE).is_file());
    }

    #[test]
    fn a_backup_restores_into_a_new_folder_and_never_over_a_live_one() {
        let root = tempfile::tempdir().unwrap();
        let (live, sha256) = live_folder(root.path());
        let destination = root.path().join("backup");
        let report = backup(&live, &destination, BackupOptions { with_keys: true }).unwrap();
        assert_eq!(report.blobs_copied, 1);
        assert!(report.missing_blobs.is_empty());
        let manifest = read_manifest(&destination).unwrap();
        assert_eq!(manifest.blobs, vec![sha256.clone()]);
        assert!(manifest.keys_included);

        // A second backup into the same folder is refused.
        assert!(matches!(
            backup(&live, &destination, BackupOptions::default()),
            Err(BackupError::DestinationNotEmpty(_))
        ));
        // The live folder itself is never a restore target.
        assert!(matches!(
            restore(&live, &destination),
            Err(RestoreError::DataFolderNotEmpty(_))
        ));

        let target = settings_in(root.path(), "restored");
        let restored = restore(&target, &destination).unwrap();
        assert!(restored.keys_restored);
        assert_eq!(restored.blobs_restored, 1);
        assert!(
            target
                .blob_dir()
                .join(blob_relative_path(&sha256).unwrap())
                .is_file()
        );
        assert_eq!(
            keys::load(&target.key_dir(), PII_KEY_NAME).unwrap(),
            keys::load(&live.key_dir(), PII_KEY_NAME).unwrap()
        );
        assert!(!staging_folder(&target.data_dir).exists());
    }

    #[test]
    fn a_restore_without_the_backups_keys_is_refused_before_writing_anything() {
        let root = tempfile::tempdir().unwrap();
        let (live, _) = live_folder(root.path());
        let destination = root.path().join("backup");
        backup(&live, &destination, BackupOptions::default()).unwrap();
        assert!(!destination.join(KEYS_FOLDER).exists());

        // A new server's key folder holds other keys: the backup would not open.
        let target = settings_in(root.path(), "elsewhere");
        sealed::PiiCipher::load_or_create(&target.key_dir()).unwrap();
        let error = restore(&target, &destination).unwrap_err();
        assert!(
            matches!(error, RestoreError::MissingPiiKey { .. }),
            "{error}"
        );
        assert!(!target.data_dir.exists());

        // With the live key folder copied over, the same backup restores.
        let target = settings_in(root.path(), "drill");
        copy_key_folder(&live.key_dir(), &target.key_dir()).unwrap();
        restore(&target, &destination).unwrap();
        assert!(target.sqlite_path().is_file());
    }

    #[test]
    fn an_interrupted_backup_and_a_damaged_blob_are_reported() {
        let root = tempfile::tempdir().unwrap();
        let (live, sha256) = live_folder(root.path());
        let blob = live.blob_dir().join(blob_relative_path(&sha256).unwrap());
        std::fs::write(&blob, b"bit rot").unwrap();
        let destination = root.path().join("backup");
        let report = backup(&live, &destination, BackupOptions::default()).unwrap();
        assert_eq!(report.missing_blobs, vec![sha256]);

        let partial = root.path().join("partial");
        std::fs::create_dir_all(&partial).unwrap();
        std::fs::copy(destination.join(DATABASE_FILE), partial.join(DATABASE_FILE)).unwrap();
        let target = settings_in(root.path(), "restored");
        assert!(matches!(
            restore(&target, &partial),
            Err(RestoreError::NotABackup(_))
        ));
    }
}
