//! `fieldsync-server`: the thin binary around [`fieldsync_server::serve`]. It reads settings
//! (defaults, TOML file, `FIELDSYNC_*` environment, then command-line flags), optionally
//! seeds the demo county, and serves until Ctrl-C. Maintenance subcommands (e.g.
//! `keys rotate-pii`) run instead of serving.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use fieldsync_server::settings::Settings;
use fieldsync_server::{AppState, demo};

/// fieldsync server: gRPC sync for the phones and the supervisor console on one port.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Arguments {
    /// Seed a demo county (2 townships, 6 villages, 300+ households, cadres and supervisors)
    /// when the data folder is empty, and print the demo logins.
    #[arg(long)]
    demo: bool,
    /// Folder for the SQLite file and the photo blobs (default ./fieldsync-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:7700).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// TOML settings file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A maintenance command to run instead of serving.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Server keys (the key folder, outside the data folder).
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a new personal-data key and reseal every stored ID and phone number with it;
    /// the old key is kept as pii-<key_id>.key so backups stay readable. Stop the server
    /// first.
    RotatePii,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arguments = Arguments::parse();
    let mut settings = Settings::load(arguments.config.as_deref(), std::env::vars())?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&settings.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if let Some(data_dir) = arguments.data_dir {
        settings.data_dir = data_dir;
    }
    if let Some(listen) = arguments.listen {
        settings.listen_addr = listen;
    }
    if let Some(Command::Keys(command)) = arguments.command {
        return run_keys_command(command, &settings).await;
    }
    let listener = tokio::net::TcpListener::bind(settings.listen_addr).await?;
    let address = listener.local_addr()?;
    let data_dir = settings.data_dir.clone();
    let state = AppState::open(settings)?;
    if arguments.demo {
        if demo::seed_demo_if_empty(state.store.as_ref())
            .await?
            .is_some()
        {
            println!(
                "已生成示范县数据 (demo county seeded) in {}",
                data_dir.display()
            );
        }
        print_demo_banner(address);
    }
    println!("控制台 console: http://{address}/   gRPC: http://{address}");
    fieldsync_server::serve(listener, state, async {
        // If the signal handler cannot be installed the server still runs until killed.
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

/// `fieldsync-server keys ...`.
async fn run_keys_command(command: KeysCommand, settings: &Settings) -> anyhow::Result<()> {
    match command {
        KeysCommand::RotatePii => {
            let report = fieldsync_server::pii_rotation::rotate_pii_key(settings).await?;
            println!(
                "个人信息密钥已轮换 (personal-data key rotated): {} -> {}; {} rows resealed; \
                 retired key kept in {}",
                report.retired_key_id,
                report.new_key_id,
                report.rows_resealed,
                settings.key_dir().display()
            );
            Ok(())
        }
    }
}

fn print_demo_banner(address: SocketAddr) {
    println!();
    println!(
        "示范账号 demo logins (password for all: {}):",
        demo::DEMO_PASSWORD
    );
    let logins = demo::demo_logins();
    // The supervisors, the admin and the tour cadre by name; the other cadres as a range, so
    // the banner fits on one screen.
    let (named, other_cadres): (Vec<_>, Vec<_>) = logins.iter().partition(|login| {
        !login.username.starts_with("cadre") || login.username == demo::DEMO_TOUR_CADRE
    });
    for login in named {
        println!(
            "  {:<12} {:<10} {}",
            login.username, login.role_label, login.display_name
        );
    }
    if let (Some(first), Some(last)) = (other_cadres.first(), other_cadres.last()) {
        println!(
            "  {} … {}  帮扶干部 ({} more cadres)",
            first.username,
            last.username,
            other_cadres.len()
        );
    }
    println!();
    println!("打开控制台 open the console: http://{address}/console/login");
}
