//! `fieldsync-loadgen`: many simulated phones against a running fieldsync server (one or
//! several URLs, plain or TLS), the seeding of a county big enough for them, and the timing
//! of the argon2id configurations a login could use.
//!
//! - [`seed`]: a county of N load-test cadres with their households, written into an empty
//!   data folder through the server library's store BEFORE the server starts.
//! - [`run`]: N devices, each its own install and cadre account, running a script (mix)
//!   over raw gRPC with a fixed seed; `in_flight` of them at once.
//! - [`report`]: per RPC calls, errors by gRPC code and p50/p95/p99/max, as markdown or JSON.
//! - [`hash_costs`]: the OWASP argon2id configurations timed on the server's password pool.
//! - [`machine`]: cores, CPU model, load average and a process's peak RSS for reports.
//!
//! The benchmarks in `tests/benches/` (many_devices, login_latency) drive this library
//! against the real release server binary; the binary is for pointing it anywhere else.

pub mod hash_costs;
pub mod machine;
pub mod report;
pub mod run;
pub mod seed;
