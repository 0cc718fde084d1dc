//! How long one argon2id hash takes on this machine for each configuration the OWASP
//! Password Storage Cheat Sheet lists for argon2id (all p = 1; they are meant to be
//! equivalent in strength):
//! <https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html#argon2id>.
//!
//! Each configuration is timed on the server's own password pool (`PasswordPool::hash`, one
//! worker with its reused block buffer), which is what every login runs.

use std::time::{Duration, Instant};

use fieldsync_server::password_pool::PasswordPool;
use fieldsync_server::settings::LoginSettings;
use serde::Serialize;

use crate::report::percentile_ms;

/// OWASP's argon2id configurations as (memory KiB, iterations), p = 1.
pub const OWASP_ARGON2ID: [(u32, u32); 5] = [
    (47_104, 1),
    (19_456, 2),
    (12_288, 3),
    (9_216, 4),
    (7_168, 5),
];

/// The time one configuration took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub rounds: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub mean_ms: f64,
}

/// Why a configuration could not be timed.
#[derive(Debug, thiserror::Error)]
#[error("argon2id m={memory_kib} t={iterations}: {reason}")]
pub struct HashCostError {
    pub memory_kib: u32,
    pub iterations: u32,
    pub reason: String,
}

/// Time `rounds` hashes (after one warm-up that sizes the buffer) of each configuration.
pub async fn measure(rounds: usize) -> Result<Vec<HashCost>, HashCostError> {
    let mut costs = Vec::with_capacity(OWASP_ARGON2ID.len());
    for (memory_kib, iterations) in OWASP_ARGON2ID {
        let failed = |reason: String| HashCostError {
            memory_kib,
            iterations,
            reason,
        };
        let pool = PasswordPool::start(&LoginSettings {
            hashing_threads: 1,
            argon2_memory_kib: memory_kib,
            argon2_iterations: iterations,
            argon2_parallelism: 1,
            ..LoginSettings::default()
        })
        .map_err(|error| failed(error.to_string()))?;
        pool.hash("warm-up")
            .await
            .map_err(|error| failed(error.to_string()))?;
        let mut times: Vec<Duration> = Vec::with_capacity(rounds);
        for round in 0..rounds.max(1) {
            let started = Instant::now();
            pool.hash(&format!("password-{round}"))
                .await
                .map_err(|error| failed(error.to_string()))?;
            times.push(started.elapsed());
        }
        times.sort_unstable();
        let mean_ms =
            times.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / times.len() as f64;
        costs.push(HashCost {
            memory_kib,
            iterations,
            rounds: times.len(),
            p50_ms: percentile_ms(&times, 0.50),
            p95_ms: percentile_ms(&times, 0.95),
            mean_ms,
        });
    }
    Ok(costs)
}

/// The costs as a markdown table, the fastest marked.
pub fn markdown(costs: &[HashCost]) -> String {
    let fastest = costs
        .iter()
        .map(|cost| cost.p50_ms)
        .fold(f64::INFINITY, f64::min);
    let mut text = String::from(
        "| argon2id (OWASP, p = 1) | hashes | p50 | p95 | mean | vs fastest |\n|---|---|---|---|---|---|\n",
    );
    for cost in costs {
        text.push_str(&format!(
            "| m = {} KiB, t = {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}× |\n",
            cost.memory_kib,
            cost.iterations,
            cost.rounds,
            cost.p50_ms,
            cost.p95_ms,
            cost.mean_ms,
            cost.p50_ms / fastest
        ));
    }
    text
}
