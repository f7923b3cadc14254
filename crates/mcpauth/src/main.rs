//! `mcpauth`: OAuth 2.1 for the Model Context Protocol from the command line.

mod cli;
mod commands;
mod config;
mod gateway;
mod present;
mod relay;
mod setup;
mod tls;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use mcpauth_client::ClientError;
use mcpauth_core::{CoreError, ErrorCode};

use crate::cli::{Cli, Command};
use crate::config::ConfigFile;

/// Exit codes (documented in `--help`).
mod exit {
    pub const FAILURE: u8 = 1;
    pub const LOGIN_REQUIRED: u8 = 2;
    pub const REFUSED: u8 = 3;
    pub const DENIED: u8 = 4;
    pub const USAGE: u8 = 64;
    pub const INTERRUPTED: u8 = 130;
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let log_file = match &cli.command {
        Command::Connect(a) => a.log_file.clone(),
        _ => None,
    };
    if let Err(e) = init_tracing(cli.verbose, log_file.as_deref()) {
        eprintln!("mcpauth: {e:#}");
        return ExitCode::from(exit::FAILURE);
    }
    // One thread is plenty for a CLI and starts fastest (`mcpauth token` is called in loops);
    // the servers get a worker per core.
    let server = matches!(cli.command, Command::Serve(_) | Command::Gateway(_));
    let mut builder = if server {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mcpauth: cannot start: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let result = runtime.block_on(async {
        if server {
            // Servers shut down gracefully on SIGINT/SIGTERM themselves.
            return Some(run(&cli).await);
        }
        tokio::select! {
            r = run(&cli) => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    match result {
        Some(Ok(())) => ExitCode::SUCCESS,
        Some(Err(e)) => {
            // Errors carry servers' text (issuers, URLs, reasons): shown escaped.
            eprintln!("mcpauth: {}", present::escape(&format!("{e:#}")));
            let code = exit_code(&e);
            if code == exit::LOGIN_REQUIRED {
                eprintln!(
                    "hint: run `mcpauth login {}`",
                    target_of(&cli).unwrap_or("URL")
                );
            }
            ExitCode::from(code)
        }
        None => {
            eprintln!("\nmcpauth: cancelled");
            ExitCode::from(exit::INTERRUPTED)
        }
    }
}

fn target_of(cli: &Cli) -> Option<&str> {
    match &cli.command {
        Command::Token(a) => Some(&a.target),
        _ => None,
    }
}

/// Logs to stderr (colour only on a terminal), and also to `log_file` (0600, appended).
fn init_tracing(verbose: u8, log_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let default = match verbose {
        0 => "warn",
        1 => "info,mcpauth=info,mcpauth_client=info",
        _ => "debug,hyper_util=info,reqwest=info",
    };
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
    };
    let builder = tracing_subscriber::fmt()
        .with_target(verbose > 1)
        .without_time()
        .with_env_filter(filter());
    match log_file {
        None => builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
        Some(path) => {
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let file = options
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot open the log file {}: {e}", path.display()))?;
            builder
                .with_writer(std::io::stderr.and(std::sync::Mutex::new(file)))
                .with_ansi(false)
                .init();
        }
    }
    Ok(())
}

/// Maps an error to its documented exit code.
fn exit_code(e: &anyhow::Error) -> u8 {
    if e.is::<commands::DpopNeedsRequest>() {
        return exit::USAGE;
    }
    let Some(client) = e.chain().find_map(|c| c.downcast_ref::<ClientError>()) else {
        return exit::FAILURE;
    };
    match client {
        ClientError::LoginRequired { .. } => exit::LOGIN_REQUIRED,
        ClientError::PkceUnsupported { .. } | ClientError::StaticClientIssuerMismatch { .. } => {
            exit::REFUSED
        }
        // SEP-1933: the authorization server refused the workload's token.
        ClientError::AssertionRefused { .. } => exit::DENIED,
        ClientError::Core(CoreError::AuthorizationRefused(err))
        | ClientError::RefusedWithoutScope(err)
            if err.error == ErrorCode::AccessDenied =>
        {
            exit::DENIED
        }
        ClientError::Core(
            CoreError::IssuerMismatch { .. }
            | CoreError::IssMismatch { .. }
            | CoreError::IssMissing
            | CoreError::StateMismatch
            | CoreError::InsecureUrl { .. }
            | CoreError::InvalidDocument { .. },
        ) => exit::REFUSED,
        _ => exit::FAILURE,
    }
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let config = cli.config.as_deref().map(ConfigFile::load).transpose()?;
    let config = config.as_ref();
    match &cli.command {
        Command::Login(a) => commands::login(cli, a, config).await,
        Command::Token(a) => commands::token(cli, a, config).await,
        Command::Status => commands::status(cli),
        Command::Logout(a) => commands::logout(cli, a, config).await,
        Command::Discover(a) => commands::discover(cli, a, config).await,
        Command::Tools(a) => commands::tools(cli, a, config).await,
        Command::Call(a) => commands::call(cli, a, config).await,
        Command::Connect(a) => commands::connect(cli, a, config).await,
        Command::Gateway(a) => gateway::gateway(a).await,
        Command::Serve(a) => commands::serve(a).await,
        Command::Users(c) => commands::users(cli, c).await,
        Command::Clients(c) => commands::clients(cli, c).await,
        Command::Keys(c) => commands::keys(cli, c).await,
    }
}
