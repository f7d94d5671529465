//! `courier`: the all-in-one binary. `courier serve` (the default) runs the broker, backend,
//! HTTP API and media jobs (`--role media-worker`: media jobs only); `courier migrate` applies
//! pending database migrations and exits; the hidden `courier media-job` hosts media jobs, forking
//! a confined child for each. `user`, `login`, `device`, `conv` and `chat` are the terminal
//! client (`cli/`), talking to a server over its public protocol.

use clap::{Parser, Subcommand};
use courier::settings::{Role, Settings};
use courier::App;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "courier",
    version,
    about = "Self-hosted messaging server: MQTT for devices, HTTP for accounts and media"
)]
struct Cli {
    #[command(flatten)]
    serve: Settings,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (default)
    Serve,
    /// Apply pending database migrations and exit
    Migrate,
    /// Print the effective settings as a TOML file (secrets redacted), each with where its
    /// value came from: default, file, env or flag
    Config,
    /// Host media processing jobs read from stdin, each in a forked child (the media worker starts these)
    #[command(hide = true)]
    MediaJob,
    /// Make an invite code for `--signup invite`: `courier invite --uses 5 --valid-for 7d`
    /// (run where the server's database is reachable, with the server's settings)
    Invite {
        /// Sign-ups the code may make
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long the code works
        #[arg(long = "valid-for", default_value = "7d", value_parser = courier::settings::parse_duration)]
        valid_for: std::time::Duration,
    },
    /// Moderation (run where the server's database is reachable, with the server's settings):
    /// `courier admin reports`, `courier admin suspend alice`
    Admin {
        #[command(subcommand)]
        cmd: courier::cli::admin::AdminCommand,
    },
    /// Accounts on a server: `courier user add alice`
    User {
        #[command(subcommand)]
        cmd: courier::cli::UserCommand,
    },
    /// Sign in to a server and keep the session for the other commands
    Login(courier::cli::Account),
    /// Your devices: `courier device list`, `courier device revoke ID`
    Device {
        #[command(subcommand)]
        cmd: courier::cli::DeviceCommand,
    },
    /// Conversations: `courier conv create --with bob`, `courier conv list`
    Conv {
        #[command(subcommand)]
        cmd: courier::cli::ConvCommand,
    },
    /// Chat in the terminal: `courier chat --user alice --with bob`
    Chat(courier::cli::chat::ChatArgs),
}

fn main() -> ExitCode {
    let loaded = match courier::settings::load::<Cli>(std::env::args_os().collect()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (cli, settings) = (loaded.command, loaded.settings);
    if matches!(cli.command, Some(Command::Config)) {
        print!("{}", courier::settings::render(&loaded.effective));
        return ExitCode::SUCCESS;
    }
    if matches!(cli.command, Some(Command::MediaJob)) {
        return media_worker::isolate::host_main();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let done = match cli.command {
        Some(Command::User { cmd }) => runtime.block_on(courier::cli::user(cmd)),
        Some(Command::Login(account)) => runtime.block_on(courier::cli::login(account)),
        Some(Command::Device { cmd }) => runtime.block_on(courier::cli::device(cmd)),
        Some(Command::Conv { cmd }) => runtime.block_on(courier::cli::conv(cmd)),
        Some(Command::Chat(args)) => runtime.block_on(courier::cli::chat::run(args)),
        _ => runtime.block_on(run(cli, settings)),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    let migrate_only = matches!(cli.command, Some(Command::Migrate));
    // The code is this command's whole output: no log lines on stdout.
    if let Some(Command::Invite { uses, valid_for }) = cli.command {
        let store = courier::app::open_store(&settings).await?;
        let (code, expires_at) = store.create_invite(uses.max(1), valid_for).await?;
        println!("{code}");
        eprintln!(
            "good for {} sign-up(s) until {expires_at} (Unix ms)",
            uses.max(1)
        );
        return Ok(());
    }
    if let Some(Command::Admin { cmd }) = cli.command {
        let store = courier::app::open_store(&settings).await?;
        return courier::cli::admin::run(cmd, &store).await;
    }
    courier::telemetry::init(settings.log_format);
    if migrate_only {
        if settings.database_url().starts_with("sqlite:") {
            std::fs::create_dir_all(&settings.data_dir)?;
        }
        backend::db::open(&settings.database_url()).await?;
        println!("migrations applied");
        return Ok(());
    }
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    match settings.role {
        Role::MediaWorker => courier::worker::run(settings, shutdown).await,
        _ => App::bind(settings).await?.run(shutdown).await,
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
