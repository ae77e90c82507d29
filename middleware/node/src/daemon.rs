//! Running a node as a daemon: logging, the control socket, signals, clean shutdown.

use crate::control::{self, Request};
use crate::Config;

/// Logs via `tracing`: RUST_LOG wins over the configured filter.
pub fn init_logging(filter: &str) {
    let f = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    // Colour only on a terminal: a log sent to a file or a journal gets no escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).with_filter(crate::zenoh_noise::UnknownExprOnce);
    let _ = tracing_subscriber::registry().with(f).with(fmt).try_init();
}

/// Run a node until SIGTERM or SIGINT (or a `shutdown` request), then stop cleanly: pending
/// batches are written to the ledger before it exits.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let control_path = cfg.node.control.clone();
    // Before anything else: a second node with the same control path must not start at all.
    let socket = control::ControlSocket::claim(&control_path)?;
    let (node, task, metrics) = crate::start(cfg).await?;
    let _control = control::serve(&socket, node.clone()).map_err(|e| anyhow::anyhow!("control socket {}: {e}", control_path.display()))?;
    println!("spookd {} up; control socket {}{}", node.id, control_path.display(), metrics.map(|a| format!("; metrics http://{a}/metrics")).unwrap_or_default());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        }
    };
    tokio::pin!(task);
    tokio::select! {
        () = stop => {
            let _ = node.request(Request::Shutdown).await;
            task.await??;
        }
        r = &mut task => r??,
    }
    socket.release();
    Ok(())
}
