//! The bounded pool that computes every argon2id password hash and verification.
//!
//! Why a pool of its own: argon2id at OWASP's parameters holds 19 MiB per hash. Run on
//! tokio's blocking pool, a login flood ran one hash per blocking thread (up to 512), and
//! glibc kept each thread's freed 19 MiB in its own arena, so the server grew by gigabytes
//! and never gave it back. Here a fixed number of long-lived threads (one per core by
//! default) take hashes from one queue; each thread keeps ONE block buffer and reuses it for
//! every hash, so the memory logins can hold is `threads × argon2_memory_kib` whatever the
//! load, and the allocator never sees the 19 MiB blocks come and go. Extra requests wait in
//! the queue (a few bytes each) instead of holding memory.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;

use crate::settings::LoginSettings;

/// Why the pool could not compute a hash.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The argon2 parameters in settings are out of range.
    #[error("invalid argon2 parameters: {0}")]
    Parameters(String),
    /// Hashing failed (salt encoding, a worker that stopped).
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// A job for one worker: it gets the worker's reusable block buffer.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send + 'static>;

/// Counters shared by the workers; the peak is what tests check the bound against.
#[derive(Debug, Default)]
struct Counters {
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    started: AtomicUsize,
}

/// At most `threads` password hashes at once, on dedicated threads (see the module docs).
/// Dropping the last handle ends the workers once their queue is empty.
pub struct PasswordPool {
    queue: Mutex<mpsc::Sender<Job>>,
    counters: Arc<Counters>,
    threads: usize,
    params: Params,
}

impl std::fmt::Debug for PasswordPool {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PasswordPool")
            .field("threads", &self.threads)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl PasswordPool {
    /// Start `settings.hashing_threads()` workers hashing with the settings' argon2id
    /// parameters. Fails on parameters argon2 refuses, so a bad setting stops start-up.
    pub fn start(settings: &LoginSettings) -> Result<Self, PoolError> {
        let params = Params::new(
            settings.argon2_memory_kib,
            settings.argon2_iterations,
            settings.argon2_parallelism,
            None,
        )
        .map_err(|error| PoolError::Parameters(error.to_string()))?;
        let threads = settings.hashing_threads().max(1);
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let counters = Arc::new(Counters::default());
        for index in 0..threads {
            let receiver = Arc::clone(&receiver);
            let counters = Arc::clone(&counters);
            std::thread::Builder::new()
                .name(format!("fieldsync-argon2-{index}"))
                .spawn(move || work(&receiver, &counters))
                .map_err(|error| PoolError::Hashing(format!("cannot start a worker: {error}")))?;
        }
        Ok(Self {
            queue: Mutex::new(sender),
            counters,
            threads,
            params,
        })
    }

    /// How many hashes may run at once.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The most hashes that ever ran at once in this pool (never above [`Self::threads`]).
    pub fn peak_in_flight(&self) -> usize {
        self.counters.peak_in_flight.load(Ordering::SeqCst)
    }

    /// How many jobs (hashes and verifications) the pool has started.
    pub fn jobs_started(&self) -> usize {
        self.counters.started.load(Ordering::SeqCst)
    }

    /// Run `job` on a worker with that worker's block buffer and wait for its answer.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |blocks| {
            let _ = answer.send(job(blocks));
        });
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job)
            .map_err(|_| PoolError::Hashing("the hashing workers stopped".into()))?;
        // A job that panicked drops its answer channel; the worker itself lives on.
        answered
            .await
            .map_err(|_| PoolError::Hashing("a hashing job failed".into()))
    }

    /// Hash `password` with a fresh random salt and the configured parameters (PHC string).
    pub async fn hash(&self, password: &str) -> Result<String, PoolError> {
        let password = password.to_owned();
        let params = self.params.clone();
        self.run(move |blocks| hash_with_buffer(&password, &params, blocks))
            .await?
    }

    /// Check `password` against a stored PHC string, which carries its own parameters (so
    /// hashes made before a settings change still verify). `None` (unknown user) verifies
    /// against a made-up hash with the configured parameters: the same work, always false,
    /// so the answer and its timing do not tell whether the username exists.
    pub async fn verify(&self, password: &str, stored_hash: Option<String>) -> bool {
        let password = password.to_owned();
        let params = self.params.clone();
        self.run(move |blocks| {
            let stored_hash = stored_hash.unwrap_or_else(|| unmatchable_hash(&params));
            verify_with_buffer(&password, &stored_hash, blocks, params.block_count())
        })
        .await
        .unwrap_or(false)
    }
}

/// One worker: take jobs until every sender is gone. Keeps one block buffer for its whole
/// life and counts the jobs running at once.
fn work(receiver: &Mutex<mpsc::Receiver<Job>>, counters: &Counters) {
    let mut blocks: Vec<Block> = Vec::new();
    loop {
        // Holding the lock while waiting is fine: idle workers have nothing else to do.
        let job = match receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv()
        {
            Ok(job) => job,
            Err(_) => return,
        };
        // Counted before the job runs, so a caller that got its answer sees its job counted.
        counters.started.fetch_add(1, Ordering::SeqCst);
        let now_running = counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        counters
            .peak_in_flight
            .fetch_max(now_running, Ordering::SeqCst);
        // A panicking job must not take a worker (and so a slice of capacity) with it.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut blocks)));
        counters.in_flight.fetch_sub(1, Ordering::SeqCst);
        if outcome.is_err() {
            tracing::error!("a password hashing job panicked");
        }
    }
}

/// The blocks a hash with `params` needs, from the worker's buffer. The buffer grows to the
/// configured size once; a stored hash with a larger memory cost (made under older, larger
/// settings) gets a one-off buffer so the kept one stays at the configured size.
fn hash_into(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    output: &mut [u8],
    blocks: &mut Vec<Block>,
    kept_blocks: usize,
) -> Result<(), argon2::Error> {
    let needed = params.block_count();
    if needed > kept_blocks.max(blocks.len()) {
        let mut one_off = vec![Block::default(); needed];
        return argon2.hash_password_into_with_memory(password, salt, output, &mut one_off[..]);
    }
    if blocks.len() < needed {
        blocks.resize(needed, Block::default());
    }
    argon2.hash_password_into_with_memory(password, salt, output, &mut blocks[..needed])
}

/// Hash with a random 16-byte salt into a PHC string.
fn hash_with_buffer(
    password: &str,
    params: &Params,
    blocks: &mut Vec<Block>,
) -> Result<String, PoolError> {
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|error| PoolError::Hashing(error.to_string()))?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    hash_into(
        &argon2,
        params,
        password.as_bytes(),
        &salt_bytes,
        &mut output,
        blocks,
        params.block_count(),
    )
    .map_err(|error| PoolError::Hashing(error.to_string()))?;
    let output = Output::new(&output).map_err(|error| PoolError::Hashing(error.to_string()))?;
    let params_string = argon2::password_hash::ParamsString::try_from(params)
        .map_err(|error| PoolError::Hashing(error.to_string()))?;
    Ok(PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: params_string,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string())
}

/// What `argon2`'s own `PasswordVerifier` does (algorithm, version, parameters, salt and
/// output length from the PHC string; constant-time comparison of the outputs), with the
/// worker's buffer instead of a fresh 19 MiB allocation (`kept_blocks`: the configured size
/// the buffer may grow to). Anything unparsable is `false`.
fn verify_with_buffer(
    password: &str,
    stored_hash: &str,
    blocks: &mut Vec<Block>,
    kept_blocks: usize,
) -> bool {
    let Ok(parsed) = PasswordHash::new(stored_hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let mut salt_buffer = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_buffer) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let computed = Output::init_with(expected.len(), |output| {
        hash_into(
            &argon2,
            &params,
            password.as_bytes(),
            salt_bytes,
            output,
            blocks,
            kept_blocks,
        )
        .map_err(|_| argon2::password_hash::Error::Password)
    });
    // `Output`'s equality is constant-time.
    computed.is_ok_and(|computed| computed == expected)
}

/// A PHC string with the configured parameters, a random salt and a random output: verifying
/// any password against it costs one full hash and always fails.
fn unmatchable_hash(params: &Params) -> String {
    let mut salt_bytes = [0u8; 16];
    let mut output_bytes = [0u8; Params::DEFAULT_OUTPUT_LEN];
    rand::rng().fill_bytes(&mut salt_bytes);
    rand::rng().fill_bytes(&mut output_bytes);
    let (Ok(salt), Ok(output), Ok(params_string)) = (
        SaltString::encode_b64(&salt_bytes),
        Output::new(&output_bytes),
        argon2::password_hash::ParamsString::try_from(params),
    ) else {
        return String::new();
    };
    PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: params_string,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters keep the unit tests fast in debug builds; the code path is the same.
    fn cheap_settings(threads: usize) -> LoginSettings {
        LoginSettings {
            hashing_threads: threads,
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            ..LoginSettings::default()
        }
    }

    #[tokio::test]
    async fn hashes_verify_only_with_the_right_password() {
        let pool = PasswordPool::start(&cheap_settings(2)).unwrap();
        let hash = pool.hash("走访2026").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert!(pool.verify("走访2026", Some(hash.clone())).await);
        assert!(!pool.verify("走访2025", Some(hash)).await);
        assert!(!pool.verify("x", Some("not a hash".into())).await);
        assert!(!pool.verify("x", None).await, "unknown users never verify");
    }

    #[tokio::test]
    async fn stored_hashes_keep_their_own_parameters() {
        // Made by the argon2 crate itself with other parameters than the pool's (the crate's
        // default, OWASP's 19456/2, which was the server's default before issue 11): still
        // verifies, so changing the settings locks nobody out.
        let stored = {
            use argon2::PasswordHasher;
            let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
            Argon2::default()
                .hash_password("旧密码".as_bytes(), &salt)
                .unwrap()
                .to_string()
        };
        assert!(stored.contains("m=19456,t=2,p=1"), "{stored}");
        let pool = PasswordPool::start(&cheap_settings(1)).unwrap();
        assert!(pool.verify("旧密码", Some(stored.clone())).await);
        assert!(!pool.verify("新密码", Some(stored)).await);
        // And the pool's own hashes verify with the crate's verifier.
        let made_here = pool.hash("新密码").await.unwrap();
        assert!(crate::auth::verify_password("新密码", &made_here));
    }

    #[tokio::test]
    async fn each_worker_keeps_one_buffer_of_the_configured_size() {
        // The flat-memory promise: verifications (of a user's hash and of an unknown user)
        // and hashes all reuse the worker's one buffer, sized for the configured cost.
        let pool = PasswordPool::start(&cheap_settings(1)).unwrap();
        assert_eq!(pool.run(|blocks| blocks.len()).await.unwrap(), 0);
        assert!(!pool.verify("x", None).await);
        let kept = pool.run(|blocks| blocks.as_ptr() as usize).await.unwrap();
        assert_eq!(pool.run(|blocks| blocks.len()).await.unwrap(), 64);
        let hash = pool.hash("走访").await.unwrap();
        assert!(pool.verify("走访", Some(hash)).await);
        assert_eq!(
            pool.run(|blocks| (blocks.len(), blocks.as_ptr() as usize))
                .await
                .unwrap(),
            (64, kept),
            "the same buffer, not a new allocation"
        );
        // A stored hash with a larger cost verifies on a one-off buffer; the kept one
        // stays at the configured size.
        let larger = crate::auth::hash_password("旧").unwrap();
        assert!(pool.verify("旧", Some(larger)).await);
        assert_eq!(pool.run(|blocks| blocks.len()).await.unwrap(), 64);
    }

    #[test]
    fn parameters_argon2_refuses_stop_start_up() {
        let settings = LoginSettings {
            argon2_memory_kib: 1,
            ..cheap_settings(1)
        };
        assert!(matches!(
            PasswordPool::start(&settings),
            Err(PoolError::Parameters(_))
        ));
    }

    #[test]
    fn the_unmatchable_hash_has_the_configured_cost() {
        let params = Params::new(64, 1, 1, None).unwrap();
        let dummy = unmatchable_hash(&params);
        assert!(dummy.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{dummy}");
        assert_ne!(dummy, unmatchable_hash(&params), "fresh salt and output");
    }

    #[tokio::test]
    async fn never_more_than_the_thread_count_run_at_once() {
        // Every job blocks until the test opens the gate, after it saw `threads` jobs
        // running; the pool's own counter must then never have passed `threads`. Counted
        // in the pool, not inferred from timing.
        let threads = 3;
        let pool = Arc::new(PasswordPool::start(&cheap_settings(threads)).unwrap());
        let (started, started_receiver) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let mut jobs = Vec::new();
        for _ in 0..12 {
            let pool = Arc::clone(&pool);
            let started = started.clone();
            let gate = Arc::clone(&gate);
            jobs.push(tokio::spawn(async move {
                pool.run(move |_blocks| {
                    let _ = started.send(());
                    let (open, opened) = &*gate;
                    let mut open = open.lock().unwrap();
                    while !*open {
                        open = opened.wait(open).unwrap();
                    }
                })
                .await
                .unwrap();
            }));
        }
        let waiting = tokio::task::spawn_blocking(move || {
            for _ in 0..threads {
                started_receiver.recv().unwrap();
            }
            started_receiver
        })
        .await
        .unwrap();
        assert_eq!(pool.peak_in_flight(), threads, "all workers busy");
        {
            let (open, opened) = &*gate;
            *open.lock().unwrap() = true;
            opened.notify_all();
        }
        for job in jobs {
            job.await.unwrap();
        }
        drop(waiting);
        assert_eq!(
            pool.peak_in_flight(),
            threads,
            "12 jobs, never more than {threads} at once"
        );
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_worker_lives_on() {
        let pool = PasswordPool::start(&cheap_settings(1)).unwrap();
        let failed = pool.run(|_blocks| -> u32 { panic!("boom") }).await;
        assert!(matches!(failed, Err(PoolError::Hashing(_))));
        assert_eq!(pool.run(|_blocks| 7).await.unwrap(), 7);
    }
}
