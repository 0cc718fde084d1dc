//! `fieldsync-loadgen`: the command line of the load generator (see the library docs).
//!
//! ```text
//! fieldsync-loadgen seed --data-dir D [--key-dir K] --cadres 1000 --households-per-cadre 10
//! fieldsync-server --data-dir D [--key-dir K] ...        # start the server on that folder
//! fieldsync-loadgen run --url http://127.0.0.1:50051 --devices 1000 --in-flight 100 \
//!     --think-ms 0 --seed 42 --mix device-day [--json]
//! fieldsync-loadgen hash-costs --rounds 20
//! ```

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fieldsync_loadgen::run::{Mix, RunOptions};
use fieldsync_loadgen::seed::{LOAD_PASSWORD, SeedOptions};
use fieldsync_loadgen::{hash_costs, run, seed};

/// 压测工具：模拟大量手机终端访问 fieldsync 服务器。
#[derive(Debug, Parser)]
#[command(name = "fieldsync-loadgen", version)]
struct Arguments {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// 在空数据目录中灌入示范县和 N 名压测干部（服务器启动之前运行）。
    Seed {
        #[arg(long)]
        data_dir: PathBuf,
        /// Server key folder (default `<data-dir>-keys`, as the server's).
        #[arg(long)]
        key_dir: Option<PathBuf>,
        /// Seed this PostgreSQL database (the server's `database_url`) instead of the
        /// SQLite file in --data-dir; the key folder still comes from --data-dir/--key-dir.
        #[arg(long, env = "FIELDSYNC_DATABASE_URL")]
        database_url: Option<String>,
        #[arg(long, default_value_t = 1000)]
        cadres: usize,
        #[arg(long, default_value_t = 10)]
        households_per_cadre: usize,
    },
    /// 用 N 台模拟设备压测运行中的服务器。
    Run {
        /// Server URL; repeat for several servers (devices are spread over them).
        #[arg(long = "url", required = true)]
        urls: Vec<String>,
        /// Extra CA certificate (PEM) for https:// servers.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        #[arg(long, default_value_t = 100)]
        in_flight: usize,
        #[arg(long, default_value_t = 0)]
        think_ms: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = Mix::DeviceDay)]
        mix: Mix,
        /// Seeded load-test cadres (device i logs in as cadre i mod this); default: devices.
        #[arg(long)]
        cadres: Option<usize>,
        #[arg(long, default_value = LOAD_PASSWORD)]
        password: String,
        /// Print the report as JSON instead of a markdown table.
        #[arg(long)]
        json: bool,
    },
    /// 测量 OWASP 列出的各组 argon2id 参数在本机的哈希耗时。
    HashCosts {
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Arguments::parse().command {
        Command::Seed {
            data_dir,
            key_dir,
            database_url,
            cadres,
            households_per_cadre,
        } => {
            let summary = seed::seed_county(&SeedOptions {
                key_dir,
                database_url,
                ..SeedOptions::new(data_dir.clone(), cadres, households_per_cadre)
            })
            .await
            .context("灌入压测数据失败")?;
            println!(
                "已灌入 {} 名压测干部、{} 户（含示范县）到 {}；账号 {} … {}，密码 {}",
                summary.cadres,
                summary.households,
                data_dir.display(),
                summary.first_username,
                summary.last_username,
                LOAD_PASSWORD
            );
        }
        Command::Run {
            urls,
            ca_file,
            devices,
            in_flight,
            think_ms,
            seed,
            mix,
            cadres,
            password,
            json,
        } => {
            let options = RunOptions {
                urls,
                ca_file,
                devices,
                in_flight,
                think_ms,
                seed,
                mix,
                cadres: cadres.unwrap_or(devices),
                password,
            };
            let report = run::run(&options).await.context("压测无法开始")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.markdown());
            }
        }
        Command::HashCosts { rounds, json } => {
            let costs = hash_costs::measure(rounds).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&costs)?);
            } else {
                print!("{}", hash_costs::markdown(&costs));
            }
        }
    }
    Ok(())
}
