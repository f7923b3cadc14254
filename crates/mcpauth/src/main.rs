//! `mcpauth`: OAuth 2.1 for the Model Context Protocol from the command line.

mod audit_file;
mod audit_json;
mod cli;
mod commands;
mod config;
mod gateway;
mod metrics;
mod present;
mod relay;
mod setup;
mod tls;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use mcpauth_client::ClientError;
use mcpauth_core::{CoreError, ErrorCode};

use crate::cli::{Cli, Command, LogFormat};
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
    let logs = Logs {
        verbose: cli.verbose,
        file: log_file.as_deref(),
        json: cli.log_format == LogFormat::Json,
        audit: cli.audit_log.as_deref(),
    };
    if let Err(e) = init_tracing(&logs) {
        eprintln!("mcpauth: {e:#}");
        return ExitCode::from(exit::FAILURE);
    }
    let _audit = FlushAuditAtExit;
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

/// Where the logs go.
struct Logs<'a> {
    verbose: u8,
    /// `connect --log-file`: a copy of stderr's log.
    file: Option<&'a std::path::Path>,
    /// `--log-format json`: JSON lines on stderr.
    json: bool,
    /// `--audit-log`: the security events (target `mcpauth::audit`) as JSON lines.
    audit: Option<&'a std::path::Path>,
}

/// The audit log's writer, once `--audit-log` opened it.
static AUDIT_FILE: std::sync::OnceLock<audit_file::AuditFile> = std::sync::OnceLock::new();

/// Writes out the audit log's last lines when `main` returns.
struct FlushAuditAtExit;

impl Drop for FlushAuditAtExit {
    fn drop(&mut self) {
        if let Some(audit) = AUDIT_FILE.get() {
            audit.flush();
        }
    }
}

/// Opens `path` for appending, created 0600: logs may name users and addresses.
fn append_private(path: &std::path::Path, what: &str) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot open the {what} {}: {e}", path.display()))
}

/// Logs to stderr (colour only on a terminal; JSON lines with `--log-format json`), also to
/// `connect --log-file` (0600, appended), and the audit events to `--audit-log`.
fn init_tracing(logs: &Logs<'_>) -> anyhow::Result<()> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = match logs.verbose {
        0 => "warn",
        1 => "info,mcpauth=info,mcpauth_client=info",
        _ => "debug,hyper_util=info,reqwest=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let (writer, ansi) = match logs.file {
        None => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal() && !logs.json,
        ),
        Some(path) => {
            let file = append_private(path, "log file")?;
            (
                BoxMakeWriter::new(std::io::stderr.and(std::sync::Mutex::new(file))),
                false,
            )
        }
    };
    let stderr: Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync> = if logs.json {
        Box::new(tracing_subscriber::fmt::layer().json().with_writer(writer))
    } else {
        Box::new(
            tracing_subscriber::fmt::layer()
                .with_target(logs.verbose > 1)
                .without_time()
                .with_ansi(ansi)
                .with_writer(writer),
        )
    };
    let audit = match logs.audit {
        Some(path) => {
            let file = audit_file::AuditFile::new(append_private(path, "audit log")?)?;
            let file = AUDIT_FILE.get_or_init(|| file).clone();
            let only_audit = tracing_subscriber::filter::Targets::new()
                .with_target(mcpauth_authserver::AUDIT_TARGET, tracing::Level::INFO);
            Some(audit_json::AuditLayer::new(file).with_filter(only_audit))
        }
        None => None,
    };
    // Counts the events metrics are made of; its filter lets them through only once
    // `--metrics-bind` turned metrics on (an atomic load per such event otherwise).
    let metrics = metrics::EventMetrics.with_filter(metrics::EventFilter);
    tracing_subscriber::registry()
        .with(stderr.with_filter(filter))
        .with(audit)
        .with(metrics)
        .init();
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
        ClientError::PkceUnsupported { .. }
        | ClientError::StaticClientIssuerMismatch { .. }
        | ClientError::DpopRequired { .. } => exit::REFUSED,
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
        Command::Grants(c) => commands::grants(cli, c).await,
    }
}
