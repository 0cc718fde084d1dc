//! `fieldsync-server`: the thin binary around [`fieldsync_server::serve`]. It reads settings
//! (defaults, TOML file, `FIELDSYNC_*` environment, then command-line flags), optionally
//! seeds the demo county, and serves until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
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
    /// PEM certificate chain: serve gRPC and the console over TLS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
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
    if let Some(cert) = arguments.tls_cert {
        settings.tls_cert_file = Some(cert);
    }
    if let Some(key) = arguments.tls_key {
        settings.tls_key_file = Some(key);
    }
    // A bad certificate or key stops start-up here, with the file named, before anything
    // is bound or opened.
    let tls_enabled = fieldsync_server::tls::server_config(&settings)?.is_some();
    let scheme = if tls_enabled { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(settings.listen_addr).await?;
    let address = listener.local_addr()?;
    if let Some(warning) = fieldsync_server::tls::plain_text_warning(address, tls_enabled) {
        eprintln!("{warning}");
    }
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
        print_demo_banner(scheme, address);
    }
    println!("控制台 console: {scheme}://{address}/   gRPC: {scheme}://{address}");
    fieldsync_server::serve(listener, state, async {
        // If the signal handler cannot be installed the server still runs until killed.
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

fn print_demo_banner(scheme: &str, address: SocketAddr) {
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
    println!("打开控制台 open the console: {scheme}://{address}/console/login");
}
