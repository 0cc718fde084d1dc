//! What a load run measured: per RPC the calls, the outcomes by gRPC code and the latency
//! percentiles, printed as a markdown table (ready to paste into BENCHMARKS.md) or as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// The outcome name of a successful call.
pub const OK: &str = "Ok";

/// Latencies and outcomes of one RPC (or step, such as connecting) across all devices.
#[derive(Debug, Clone, Default)]
pub struct RpcSamples {
    latencies: Vec<Duration>,
    /// Outcome counts keyed by gRPC code name (`Ok`, `Unavailable`, ...) or a load-generator
    /// outcome such as `Rejected:household_out_of_scope`.
    outcomes: BTreeMap<String, usize>,
}

impl RpcSamples {
    pub fn record(&mut self, latency: Duration, outcome: &str) {
        self.latencies.push(latency);
        *self.outcomes.entry(outcome.to_owned()).or_insert(0) += 1;
    }

    pub fn merge(&mut self, other: RpcSamples) {
        self.latencies.extend(other.latencies);
        for (outcome, count) in other.outcomes {
            *self.outcomes.entry(outcome).or_insert(0) += count;
        }
    }
}

/// The measured figures of one RPC.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpcSummary {
    pub rpc: String,
    pub calls: usize,
    pub errors: usize,
    /// Non-`Ok` outcomes by name.
    pub errors_by_code: BTreeMap<String, usize>,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub mix: String,
    pub devices: usize,
    pub in_flight: usize,
    pub think_ms: u64,
    pub seed: u64,
    pub wall_seconds: f64,
    /// Devices whose whole script ran without an error.
    pub devices_clean: usize,
    pub rpcs: Vec<RpcSummary>,
}

impl RunReport {
    /// Total non-`Ok` outcomes over every RPC.
    pub fn total_errors(&self) -> usize {
        self.rpcs.iter().map(|rpc| rpc.errors).sum()
    }

    /// The summary of one RPC by name.
    pub fn rpc(&self, name: &str) -> Option<&RpcSummary> {
        self.rpcs.iter().find(|rpc| rpc.rpc == name)
    }

    /// The run as a markdown table plus one line of totals.
    pub fn markdown(&self) -> String {
        let mut text = format!(
            "{} devices × `{}`, {} in flight, think {} ms, seed {}: wall time {:.2} s, \
             {} of {} devices without an error, {} errors in total.\n\n",
            self.devices,
            self.mix,
            self.in_flight,
            self.think_ms,
            self.seed,
            self.wall_seconds,
            self.devices_clean,
            self.devices,
            self.total_errors()
        );
        text.push_str("| RPC | calls | errors (by code) | p50 | p95 | p99 | max |\n");
        text.push_str("|---|---|---|---|---|---|---|\n");
        for rpc in &self.rpcs {
            let errors = if rpc.errors == 0 {
                "0".to_owned()
            } else {
                let by_code: Vec<String> = rpc
                    .errors_by_code
                    .iter()
                    .map(|(code, count)| format!("{code} {count}"))
                    .collect();
                format!("{} ({})", rpc.errors, by_code.join(", "))
            };
            text.push_str(&format!(
                "| {} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |\n",
                rpc.rpc, rpc.calls, errors, rpc.p50_ms, rpc.p95_ms, rpc.p99_ms, rpc.max_ms
            ));
        }
        text
    }
}

/// Nearest-rank percentile of sorted latencies, in milliseconds (0 when there are none).
pub fn percentile_ms(sorted: &[Duration], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

/// Summarise the samples of one RPC.
pub fn summarise(rpc: &str, samples: RpcSamples) -> RpcSummary {
    let RpcSamples {
        mut latencies,
        outcomes,
    } = samples;
    latencies.sort_unstable();
    let errors_by_code: BTreeMap<String, usize> = outcomes
        .into_iter()
        .filter(|(outcome, _)| outcome != OK)
        .collect();
    RpcSummary {
        rpc: rpc.to_owned(),
        calls: latencies.len(),
        errors: errors_by_code.values().sum(),
        errors_by_code,
        p50_ms: percentile_ms(&latencies, 0.50),
        p95_ms: percentile_ms(&latencies, 0.95),
        p99_ms: percentile_ms(&latencies, 0.99),
        max_ms: percentile_ms(&latencies, 1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_errors_by_code_and_takes_nearest_rank_percentiles() {
        let mut samples = RpcSamples::default();
        for millis in 1..=100 {
            let outcome = if millis % 50 == 0 { "Unavailable" } else { OK };
            samples.record(Duration::from_millis(millis), outcome);
        }
        let summary = summarise("Login", samples);
        assert_eq!(summary.calls, 100);
        assert_eq!(summary.errors, 2);
        assert_eq!(summary.errors_by_code.get("Unavailable"), Some(&2));
        assert_eq!(summary.p50_ms, 50.0);
        assert_eq!(summary.p95_ms, 95.0);
        assert_eq!(summary.p99_ms, 99.0);
        assert_eq!(summary.max_ms, 100.0);
    }

    #[test]
    fn an_rpc_without_calls_summarises_to_zeroes() {
        let summary = summarise("Pull", RpcSamples::default());
        assert_eq!((summary.calls, summary.errors, summary.p95_ms), (0, 0, 0.0));
    }
}
