//! `spook._spook`: the Python extension of Spook, a thin pyo3 shell over `spook-client` (the
//! one door to a domain) and `spook-agents` (the coordination patterns). It owns the
//! conversion of Python values ([`convert`]), the exception mapping ([`errors`]) and the
//! awaitables ([`runtime`]); it holds no protocol logic and sends no request of its own.
//! The Python package `spook` (python/spook/) wraps it: the sync facade, pydantic models and
//! the LangGraph, LangChain and MCP integrations are Python.
//!
//! Start at [`client`]: a `Client` opens one of the three ways in and hands out [`group`]s.

mod agents;
mod client;
mod convert;
mod errors;
mod group;
mod outcome;
mod runtime;
mod watch;

use pyo3::prelude::*;

/// Send the extension's `tracing` logs (the embedded node's among them) to stderr, filtered
/// as `RUST_LOG` is (`"info"`, `"spook_node=debug"`). Once per process; later calls do nothing
/// and answer False.
#[pyfunction]
#[pyo3(signature = (filter = "info"))]
fn log_to_stderr(filter: &str) -> PyResult<bool> {
    let f = tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| errors::bad_value(format!("log filter {filter:?}: {e}")))?;
    Ok(tracing_subscriber::fmt().with_env_filter(f).with_writer(std::io::stderr).with_ansi(false).try_init().is_ok())
}

#[pymodule]
fn _spook(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(log_to_stderr, m)?)?;
    m.add_class::<client::Client>()?;
    m.add_class::<group::Group>()?;
    m.add_class::<group::GroupStatus>()?;
    m.add_class::<group::Tx>()?;
    m.add_class::<outcome::Committed>()?;
    m.add_class::<outcome::Aborted>()?;
    m.add_class::<outcome::Decohered>()?;
    m.add_class::<outcome::Pending>()?;
    m.add_class::<watch::Watch>()?;
    m.add_class::<watch::Change>()?;
    m.add_class::<watch::Lagged>()?;
    m.add_class::<watch::FrontierMoved>()?;
    m.add_class::<watch::MemberDecohered>()?;
    m.add_class::<watch::ReEntangled>()?;
    m.add_class::<watch::MembershipChanged>()?;
    m.add_class::<agents::Claims>()?;
    m.add_class::<agents::Claim>()?;
    m.add_class::<agents::Auctions>()?;
    m.add_class::<agents::SealedAuctions>()?;
    m.add_class::<agents::AuctionResult>()?;
    m.add_class::<agents::Barrier>()?;
    m.add_class::<agents::BarrierOutcome>()?;
    m.add_class::<agents::Blackboard>()?;
    m.add_class::<agents::BoardWatcher>()?;
    m.add_class::<agents::Posted>()?;
    m.add_class::<agents::Formation>()?;
    m.add_class::<agents::Choice>()?;
    Ok(())
}
