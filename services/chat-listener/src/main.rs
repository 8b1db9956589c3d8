//! The `chat-listener` binary.

use std::io::{self, BufWriter};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// Joins the chats of live channels and publishes their messages.
#[derive(Debug, Parser)]
#[command(name = "chat-listener", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read raw IRC lines on stdin, print one JSON object per line on stdout.
    Parse,
    // `Run` (the listener itself) is added with the connection pool.
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Parse => {
            let stdin = io::stdin().lock();
            let stdout = BufWriter::new(io::stdout().lock());
            chat_listener::bin_parse::parse_lines(stdin, stdout).context("chat-listener parse")?;
        }
    }
    Ok(())
}
