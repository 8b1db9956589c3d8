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
    Parse {
        /// A channel's room id, as the running listener knows it from the channel's live-stream
        /// record: `login=id`, repeatable. Lines of that channel with an empty or no `room-id`
        /// tag are then attributed to it instead of refused.
        #[arg(long = "room-id", value_name = "LOGIN=ID", value_parser = room_id_arg)]
        room_ids: Vec<(String, i64)>,
    },
}

fn room_id_arg(s: &str) -> Result<(String, i64), String> {
    let (login, id) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected LOGIN=ID, e.g. pajlada=11148817"))?;
    let id: i64 = id
        .parse()
        .map_err(|_| format!("{s:?}: the room id {id:?} is not an integer"))?;
    Ok((login.trim_start_matches('#').to_owned(), id))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Parse { room_ids } => {
            let stdin = io::stdin().lock();
            let stdout = BufWriter::new(io::stdout().lock());
            chat_listener::bin_parse::parse_lines_with(stdin, stdout, &room_ids)
                .context("chat-listener parse")?;
            Ok(())
        }
        Command::Run => {
            let cfg: chat_listener::Config = config::load(cli.config.as_deref())?;
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
