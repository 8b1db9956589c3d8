//! The `chat-listener` binary.

use std::{
    io::{self, BufWriter},
    path::PathBuf,
};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tci_common::{config, telemetry, Shutdown};

/// Joins the chats of live channels and publishes their messages.
#[derive(Debug, Parser)]
#[command(name = "chat-listener", version, about)]
struct Cli {
    /// Optional TOML config file (also TCI_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the listener (the default).
    Run,
    /// Read raw IRC lines on stdin, print one JSON object per line on stdout.
    Parse,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Parse => {
            let stdin = io::stdin().lock();
            let stdout = BufWriter::new(io::stdout().lock());
            chat_listener::bin_parse::parse_lines(stdin, stdout).context("chat-listener parse")?;
            Ok(())
        }
        Command::Run => {
            let cfg: chat_listener::Config =
                config::load(cli.config.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
            telemetry::init(&cfg.common.log);
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let shutdown = Shutdown::with_signals();
                chat_listener::App::build(cfg, shutdown.token())
                    .await?
                    .run()
                    .await
            })
        }
    }
}
