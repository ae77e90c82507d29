//! `spookd`'s configuration: a TOML file with documented defaults, overridable by environment
//! variables (`SPOOK_<SECTION>_<KEY>`, e.g. `SPOOK_ZENOH_LISTEN=tcp/127.0.0.1:7500`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The default configuration file, with every key and its default. `spookd --print-config`
/// prints it.
pub const DEFAULT_CONFIG: &str = r#"# spookd configuration. Every key is optional; these are the defaults.
# Environment variables override the file: SPOOK_<SECTION>_<KEY>, upper case,
# e.g. SPOOK_NODE_LEDGER=/var/lib/spook/node.spookdb, SPOOK_ZENOH_LISTEN=tcp/127.0.0.1:7500
# (lists are comma-separated).

[node]
# The embedded SpookDB ledger: identity key, allow-list, groups, delta log. Its commit log
# sits beside it as `<ledger>.log`: copy both (with the node stopped) to back a node up.
ledger = "spook.spookdb"
# Nodes of one domain talk to each other; the domain is part of every key expression.
domain = "default"
# Local control socket for the `spook` CLI and client sessions.
control = "spookd.sock"
# Log filter (tracing's EnvFilter syntax); RUST_LOG overrides it.
log = "info"

[zenoh]
# "peer" (nodes connect to each other), "client" (join a zenoh router) or "router" (this
# node routes for others: zenoh clients and other nodes connect to it).
mode = "peer"
# Where this node listens. Use explicit loopback or interface addresses.
listen = ["tcp/127.0.0.1:0"]
# Peers or routers to connect to.
connect = []
# Multicast scouting sends to 224.0.0.224: off unless the network is yours.
multicast_scouting = false
# Further zenoh settings, by path, as JSON5 values, e.g. for a lossy radio link:
#   options = { "transport/link/tx/batch_size" = "1400", "transport/link/tx/lease" = "10000" }
# Two nodes should not both list each other in `connect` over UDP (see docs/protocol.md).
# Over a lossy radio use reliable UDP: udp/10.0.0.1:7447?rel=1;mixed_rel=1 (zenoh's own
# messages go over QUIC, retransmitted; Spook's go as datagrams and Spook recovers them).
options = {}

[metrics]
# Prometheus text endpoint ("" disables it). When the default port is taken (a second node
# on this host), the node listens on a free port and logs it; set a port for a fixed one.
listen = "127.0.0.1:9477"

[timing]
# Digest period, decoherence timeout and re-add hysteresis (ms).
digest_interval_ms = 250
decohere_after_ms = 3000
rejoin_after_ms = 3000
# A member not heard since this node started (one invited that has not joined yet, or peers
# whose channels are still forming after a restart) counts as silent only after this much
# more; once its node hands over its key for the group, silence counts from that moment.
join_grace_ms = 60000

[faults]
# Fault injection for tests: drop this share (percent) of the messages this node publishes,
# chosen by a PRNG seeded with `seed`. Never set it in production.
drop_pct = 0.0
seed = 0
"#;

/// Where the metrics endpoint listens unless configured. A node that finds it taken (a
/// second node on the host) listens on a free port instead, and says so.
pub const DEFAULT_METRICS: &str = "127.0.0.1:9477";

/// The whole configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Node settings.
    pub node: NodeSection,
    /// zenoh settings.
    pub zenoh: ZenohSection,
    /// Metrics endpoint.
    pub metrics: MetricsSection,
    /// Protocol timing.
    pub timing: TimingSection,
    /// Fault injection (tests).
    pub faults: FaultsSection,
}

/// `[faults]`: the in-process loss injector.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsSection {
    /// Percent of published messages dropped.
    pub drop_pct: f64,
    /// Seed of the drop decisions.
    pub seed: u64,
}

/// `[node]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Ledger file.
    pub ledger: PathBuf,
    /// Domain name.
    pub domain: String,
    /// Control socket path.
    pub control: PathBuf,
    /// Log filter.
    pub log: String,
}

/// `[zenoh]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ZenohSection {
    /// `peer` or `client`.
    pub mode: String,
    /// Listen endpoints.
    pub listen: Vec<String>,
    /// Connect endpoints.
    pub connect: Vec<String>,
    /// Multicast scouting.
    pub multicast_scouting: bool,
    /// Further zenoh settings: path → JSON5 value.
    pub options: std::collections::BTreeMap<String, String>,
}

/// `[metrics]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// `host:port` of the Prometheus endpoint; empty disables it.
    pub listen: String,
}

/// `[timing]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TimingSection {
    /// Digest period.
    pub digest_interval_ms: u64,
    /// Decoherence timeout.
    pub decohere_after_ms: u64,
    /// Re-add hysteresis.
    pub rejoin_after_ms: u64,
    /// Grace for members not heard since the start ([`spook_core::GroupConfig::join_grace_ms`]).
    pub join_grace_ms: u64,
}

impl Default for Config {
    /// The same values as [`DEFAULT_CONFIG`] (a test holds them equal).
    fn default() -> Self {
        Config { node: NodeSection::default(), zenoh: ZenohSection::default(), metrics: MetricsSection::default(), timing: TimingSection::default(), faults: FaultsSection::default() }
    }
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection { ledger: "spook.spookdb".into(), domain: "default".into(), control: "spookd.sock".into(), log: "info".into() }
    }
}

impl Default for ZenohSection {
    fn default() -> Self {
        ZenohSection { mode: "peer".into(), listen: vec!["tcp/127.0.0.1:0".into()], connect: Vec::new(), multicast_scouting: false, options: std::collections::BTreeMap::new() }
    }
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection { listen: DEFAULT_METRICS.into() }
    }
}

impl Default for TimingSection {
    fn default() -> Self {
        TimingSection { digest_interval_ms: 250, decohere_after_ms: 3000, rejoin_after_ms: 3000, join_grace_ms: 60_000 }
    }
}

/// A configuration error, with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong (from the TOML parser, with line and column).
        message: String,
    },
    /// An environment override does not fit its key.
    #[error("environment variable {var}={value}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// Its value.
        value: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("config: {0}")]
    Invalid(String),
}

impl Config {
    /// Parse a TOML document (missing keys take their defaults).
    ///
    /// ```
    /// # use spook_node::Config;
    /// let c = Config::from_toml("[zenoh]\nconnect = [\"tcp/127.0.0.1:7447\"]\n", "node.toml".as_ref()).unwrap();
    /// assert_eq!(c.zenoh.connect, ["tcp/127.0.0.1:7447"]);
    /// assert!(!c.zenoh.multicast_scouting);
    /// let e = Config::from_toml("[zenoh]\nmode = \"mesh\"\n", "node.toml".as_ref()).unwrap_err();
    /// assert!(e.to_string().contains("zenoh.mode"));
    /// ```
    pub fn from_toml(text: &str, path: &std::path::Path) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        c.validate()?;
        Ok(c)
    }

    /// Load a file (or the defaults if `path` is `None`), then apply environment overrides.
    pub fn load(path: Option<&std::path::Path>) -> Result<Config, ConfigError> {
        let mut c = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.to_path_buf(), source })?;
                Config::from_toml(&text, p)?
            }
            None => Config::default(),
        };
        c.apply_env(std::env::vars())?;
        c.validate()?;
        Ok(c)
    }

    /// Apply `SPOOK_<SECTION>_<KEY>` overrides.
    pub fn apply_env(&mut self, vars: impl IntoIterator<Item = (String, String)>) -> Result<(), ConfigError> {
        for (var, value) in vars {
            let Some(key) = var.strip_prefix("SPOOK_") else { continue };
            let err = |m: &str| ConfigError::Env { var: var.clone(), value: value.clone(), message: m.to_string() };
            let list = || value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect::<Vec<_>>();
            let num = || value.parse::<u64>().map_err(|_| err("expected a whole number of milliseconds"));
            match key {
                "NODE_LEDGER" => self.node.ledger = value.clone().into(),
                "NODE_DOMAIN" => self.node.domain = value.clone(),
                "NODE_CONTROL" => self.node.control = value.clone().into(),
                "NODE_LOG" => self.node.log = value.clone(),
                "ZENOH_MODE" => self.zenoh.mode = value.clone(),
                "ZENOH_LISTEN" => self.zenoh.listen = list(),
                "ZENOH_CONNECT" => self.zenoh.connect = list(),
                "ZENOH_MULTICAST_SCOUTING" => {
                    self.zenoh.multicast_scouting = match value.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(err("expected true or false")),
                    }
                }
                "METRICS_LISTEN" => self.metrics.listen = value.clone(),
                "TIMING_DIGEST_INTERVAL_MS" => self.timing.digest_interval_ms = num()?,
                "TIMING_DECOHERE_AFTER_MS" => self.timing.decohere_after_ms = num()?,
                "TIMING_REJOIN_AFTER_MS" => self.timing.rejoin_after_ms = num()?,
                "TIMING_JOIN_GRACE_MS" => self.timing.join_grace_ms = num()?,
                // Other SPOOK_ variables belong to tests and tools.
                _ => {}
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.zenoh.mode.as_str(), "peer" | "client" | "router") {
            return Err(ConfigError::Invalid(format!("zenoh.mode must be \"peer\", \"client\" or \"router\", not {:?}", self.zenoh.mode)));
        }
        if self.node.domain.is_empty() || self.node.domain.contains(['/', '*', '$', '#', '?']) {
            return Err(ConfigError::Invalid(format!("node.domain {:?} must be a non-empty name without / * $ # ?", self.node.domain)));
        }
        for e in self.zenoh.listen.iter().chain(&self.zenoh.connect) {
            if let Err(why) = check_endpoint(e) {
                return Err(ConfigError::Invalid(format!("zenoh endpoint {e:?}: {why}; it must look like tcp/127.0.0.1:7447 or udp/10.0.0.1:7447?rel=1;mixed_rel=1")));
            }
        }
        if self.timing.digest_interval_ms == 0 || self.timing.decohere_after_ms < 2 * self.timing.digest_interval_ms {
            return Err(ConfigError::Invalid("timing: digest_interval_ms must be > 0 and decohere_after_ms at least twice it".into()));
        }
        if !(0.0..=100.0).contains(&self.faults.drop_pct) {
            return Err(ConfigError::Invalid(format!("faults.drop_pct {} is not a percentage (0 to 100)", self.faults.drop_pct)));
        }
        Ok(())
    }
}

/// Whether `e` is a zenoh endpoint this node can use: zenoh's own syntax, and for tcp and udp
/// a host and a port (what only `zenoh::open` found out before, at the node's start).
fn check_endpoint(e: &str) -> Result<(), String> {
    e.parse::<zenoh::config::EndPoint>().map_err(|err| err.to_string())?;
    let (proto, rest) = e.split_once('/').ok_or("no protocol")?;
    if matches!(proto, "tcp" | "udp") {
        let addr = rest.split(['?', '#']).next().unwrap_or_default();
        let (host, port) = addr.rsplit_once(':').ok_or("no port")?;
        if host.is_empty() {
            return Err("no host".into());
        }
        port.parse::<u16>().map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_defaults_are_the_defaults() {
        let parsed: Config = toml::from_str(DEFAULT_CONFIG).expect("parses");
        let d = Config::default();
        assert_eq!(parsed, d);
        assert!(!d.zenoh.multicast_scouting, "never multicast on a host by default");
    }

    #[test]
    fn bad_config_is_a_clear_error() {
        let p = std::path::Path::new("x.toml");
        let e = Config::from_toml("[node]\nledgr = 1\n", p).unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("ledgr"), "{e}");
        let e = Config::from_toml("[zenoh]\nmode = \"mesh\"\n", p).unwrap_err().to_string();
        assert!(e.contains("zenoh.mode"), "{e}");
        let e = Config::from_toml("[zenoh]\nlisten = [\"127.0.0.1\"]\n", p).unwrap_err().to_string();
        assert!(e.contains("endpoint"), "{e}");
        // What only zenoh found out before, at the node's start.
        for bad in ["tcp/127.0.0.1", "tcp/127.0.0.1:70000", "udp/:7447", "tcp/127.0.0.1:x"] {
            let e = Config::from_toml(&format!("[zenoh]\nconnect = [\"{bad}\"]\n"), p).unwrap_err().to_string();
            assert!(e.contains("endpoint") && e.contains(bad), "{bad}: {e}");
        }
        Config::from_toml("[zenoh]\nconnect = [\"udp/10.0.0.1:7447?rel=1;mixed_rel=1\", \"tcp/[::1]:7447\"]\n", p).unwrap();
        let mut c = Config::default();
        let e = c.apply_env([("SPOOK_TIMING_DIGEST_INTERVAL_MS".to_string(), "soon".to_string())]).unwrap_err().to_string();
        assert!(e.contains("SPOOK_TIMING_DIGEST_INTERVAL_MS"), "{e}");
        c.apply_env([("SPOOK_ZENOH_CONNECT".to_string(), "tcp/127.0.0.1:1, tcp/127.0.0.1:2".to_string())]).unwrap();
        assert_eq!(c.zenoh.connect.len(), 2);
    }
}
