//! `clawbot-fill-history`: fills a hub's data directory with a group of
//! stored messages, for the history scenario's 10,000,000-message target.
//!
//! Sending that many through a running hub takes many minutes; this writes
//! them with the hub's own store code (same schema, migrations, ids and
//! rows) while no hub runs, in large transactions without fsync per
//! commit. Start the hub on the directory afterwards and run
//! `clawbot-bench history --group <id> --prefill 0`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Parser;
use clawbot_hub::config::Synchronous;
use clawbot_hub::store::event::EventKind;
use clawbot_hub::store::groups::{self, GroupRecord};
use clawbot_hub::store::messages::{self, NewEvent};
use clawbot_hub::store::{now_iso, Store};

/// Rows per transaction: large enough that commits cost nothing, small
/// enough that one transaction's pages fit in memory.
const CHUNK: u64 = 50_000;

#[derive(Parser)]
#[command(
    version,
    about = "Fill a hub's data directory with one group's history (no hub may be running on it)"
)]
struct Args {
    /// The hub's data directory (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// The group to fill (created if missing).
    #[arg(long, default_value = "bench-history")]
    group: String,
    /// How many messages to add.
    #[arg(long, default_value_t = 10_000_000)]
    messages: u64,
    /// Bytes of content per message.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Distinct senders the messages come from.
    #[arg(long, default_value_t = 100)]
    senders: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.senders > 0, "--senders must be at least 1");
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    // The fill is repeatable from scratch, so a crash mid-way costs only
    // time: no fsync per commit.
    let opened = Store::open(&args.data_dir, Synchronous::Normal, Duration::ZERO)?;
    let store = opened.store;
    let group = GroupRecord {
        id: args.group.clone(),
        name: args.group.clone(),
        description: "filled by clawbot-fill-history".into(),
        owner_id: None,
        created_at: now_iso(),
    };
    store
        .writer
        .write(move |connection| groups::create(connection, &group))
        .await?;
    let content = "x".repeat(args.size);
    let started = Instant::now();
    let mut written = 0;
    while written < args.messages {
        let count = CHUNK.min(args.messages - written);
        let (group, content, senders) = (args.group.clone(), content.clone(), args.senders);
        store
            .writer
            .write(move |connection| {
                let now = now_iso();
                for index in written..written + count {
                    let sender = format!("filler-{}", index % senders);
                    messages::insert(
                        connection,
                        NewEvent {
                            kind: EventKind::Message,
                            from_name: sender.clone(),
                            from_id: sender,
                            group_id: Some(group.clone()),
                            recipient: None,
                            content: content.clone(),
                            client_id: None,
                            ref_id: None,
                            created_at: now.clone(),
                        },
                    )?;
                }
                Ok(())
            })
            .await?;
        written += count;
        if written % 1_000_000 == 0 || written == args.messages {
            let elapsed = started.elapsed().as_secs_f64();
            eprintln!(
                "{written} messages in {elapsed:.1} s ({:.0}/s)",
                written as f64 / elapsed
            );
        }
    }
    store.writer.stop().await;
    opened
        .writer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    println!(
        "filled group '{}' with {} messages in {:.1} s",
        args.group,
        args.messages,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
