//! `spookd`: a Spook node with its embedded ledger. See `spookd --help`.

use std::path::PathBuf;

use anyhow::Context;

const HELP: &str = "\
spookd: a Spook node (zenoh transport, embedded SpookDB ledger)

USAGE:
    spookd [--config FILE]      run the node until SIGTERM or SIGINT
    spookd --print-config       print the default configuration file, with every key

Configuration: a TOML file (defaults for every missing key), then environment overrides
SPOOK_<SECTION>_<KEY>, e.g. SPOOK_NODE_LEDGER=/var/lib/spook/node.spookdb or
SPOOK_ZENOH_CONNECT=tcp/127.0.0.1:7447. Logs: RUST_LOG or [node] log.
The `spook` CLI talks to the node over the control socket ([node] control).";

fn main() {
    // An error is a sentence for the operator, never a stack trace (whatever RUST_BACKTRACE).
    if let Err(e) = real_main() {
        eprintln!("spookd: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut config: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(());
            }
            "--print-config" => {
                print!("{}", spook_node::config::DEFAULT_CONFIG);
                return Ok(());
            }
            "--config" | "-c" => config = Some(args.next().context("--config needs a file")?.into()),
            other => anyhow::bail!("unexpected argument {other:?}\n\n{HELP}"),
        }
    }
    let cfg = spook_node::Config::load(config.as_deref())?;
    spook_node::daemon::init_logging(&cfg.node.log);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let r = rt.block_on(spook_node::daemon::run(cfg));
    // The ledger is closed and the session closed (or given up on): do not wait for zenoh's
    // background tasks, which over a lossy link can outlive the node by many seconds.
    rt.shutdown_timeout(std::time::Duration::from_millis(300));
    r
}
