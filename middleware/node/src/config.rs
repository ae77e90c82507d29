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
# "lan" (these defaults) or "radio", for lossy, slow links (drones, telemetry radios): it
# changes the defaults of the keys you do not set to
#   [timing] digest_interval_ms = 500, decohere_after_ms = 4000, decohere_max_ms = 12000
#   [zenoh] options "connect/retry" = "{ period_init_ms: 500, period_max_ms: 2000, period_increase_factor: 2 }",
#                   "transport/unicast/open_timeout" = "10000", "transport/unicast/accept_timeout" = "10000"
# (fewer digests on the air; more patience with a link that stalls; the zenoh session is
# re-established within ~2 s of a heal, and its handshake survives QUIC's retransmissions). Keys you set, and environment overrides, win.
profile = "lan"

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
# Over a radio (a broadcast medium): a UDP multicast locator, e.g.
# "udp/239.77.0.1:7450#iface=wlan0". Frames for every member of a group then go on the air
# once rather than once per member (digests, wants, keys and handshakes stay unicast). It is
# zenoh's multicast transport: best effort and without the domain key (frames stay sealed and
# signed by Spook; the multicast group is for networks that are yours). Every node of the
# domain on that radio should set the same locator and the same tx batch_size.
multicast = ""
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
# Digest period and re-add hysteresis (ms).
digest_interval_ms = 250
rejoin_after_ms = 3000
# Decoherence: a member silent past its timeout is reported decohered, and removed if this
# node and the members it hears are a majority. The timeout adapts to each member's link:
# twice the longest gap between its frames in the last minute, never below decohere_after_ms
# and never above decohere_max_ms (at most 60000; equal bounds give a fixed timeout).
decohere_after_ms = 3000
decohere_max_ms = 10000
# A member not heard since this node started (one invited that has not joined yet, or peers
# whose channels are still forming after a restart) counts as silent only after this much
# more; once its node hands over its key for the group, silence counts from that moment.
join_grace_ms = 60000
# Prompt acks: a member sends its ack as soon as it has made a delta durable (at most one
# small frame per this many ms), so the committed view follows the pending one within a few
# link delays; 0: acks ride the digests only, the committed view trails by digest rounds
# (what the radio profile sets: air bytes count more there).
prompt_ack_ms = 1

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
    /// `lan` or `radio`: which defaults the keys not set take ([`RADIO_TIMING`]).
    pub profile: String,
}

/// What the `radio` profile sets, unless the file or the environment sets it: `[timing]` keys,
/// then `[zenoh] options`.
pub const RADIO_TIMING: [(&str, u64); 4] = [("digest_interval_ms", 500), ("decohere_after_ms", 4_000), ("decohere_max_ms", 12_000), ("prompt_ack_ms", 0)];
/// The `radio` profile's zenoh options: reconnect quickly once a cut link heals (zenoh takes
/// `connect/retry` whole, not its fields one by one), and give link handshakes 10 s: over
/// reliable UDP they ride QUIC, whose retransmissions at 30% loss outlast zenoh's defaults.
pub const RADIO_ZENOH: [(&str, &str); 3] = [
    ("connect/retry", "{ period_init_ms: 500, period_max_ms: 2000, period_increase_factor: 2 }"),
    ("transport/unicast/open_timeout", "10000"),
    ("transport/unicast/accept_timeout", "10000"),
];

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
    /// A UDP multicast locator (`udp/239.1.2.3:7450#iface=wlan0`) that group frames for
    /// every member go out on once, instead of once per member; empty: off
    /// ([`crate::multicast`]).
    pub multicast: String,
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
    /// Decoherence timeout, lower bound.
    pub decohere_after_ms: u64,
    /// Decoherence timeout, upper bound ([`spook_core::GroupConfig::decohere_max_ms`]).
    pub decohere_max_ms: u64,
    /// Re-add hysteresis.
    pub rejoin_after_ms: u64,
    /// Grace for members not heard since the start ([`spook_core::GroupConfig::join_grace_ms`]).
    pub join_grace_ms: u64,
    /// Least time between prompt acks; 0: off ([`spook_core::GroupConfig::prompt_ack_ms`]).
    pub prompt_ack_ms: u64,
}

impl Default for Config {
    /// The same values as [`DEFAULT_CONFIG`] (a test holds them equal).
    fn default() -> Self {
        Config { node: NodeSection::default(), zenoh: ZenohSection::default(), metrics: MetricsSection::default(), timing: TimingSection::default(), faults: FaultsSection::default() }
    }
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection { ledger: "spook.spookdb".into(), domain: "default".into(), control: "spookd.sock".into(), log: "info".into(), profile: "lan".into() }
    }
}

impl Default for ZenohSection {
    fn default() -> Self {
        ZenohSection { mode: "peer".into(), listen: vec!["tcp/127.0.0.1:0".into()], connect: Vec::new(), multicast_scouting: false, multicast: String::new(), options: std::collections::BTreeMap::new() }
    }
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection { listen: DEFAULT_METRICS.into() }
    }
}

impl Default for TimingSection {
    fn default() -> Self {
        TimingSection { digest_interval_ms: 250, decohere_after_ms: 3000, decohere_max_ms: 10_000, rejoin_after_ms: 3000, join_grace_ms: 60_000, prompt_ack_ms: 1 }
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
        let mut c: Config = toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        c.apply_profile(&explicit_keys(text));
        c.validate()?;
        Ok(c)
    }

    /// Give the keys not in `explicit` (`section.key`, or `zenoh.options.<path>`) the
    /// profile's values.
    ///
    /// ```
    /// # use spook_node::Config;
    /// let c = Config::from_toml("[node]\nprofile = \"radio\"\n[timing]\ndecohere_after_ms = 5000\n", "n.toml".as_ref()).unwrap();
    /// assert_eq!((c.timing.digest_interval_ms, c.timing.decohere_after_ms, c.timing.decohere_max_ms), (500, 5000, 12000));
    /// assert_eq!(c.timing.prompt_ack_ms, 0, "over a radio, acks ride the digests");
    /// assert!(c.zenoh.options["connect/retry"].contains("period_max_ms: 2000"));
    /// ```
    pub fn apply_profile(&mut self, explicit: &std::collections::BTreeSet<String>) {
        if self.node.profile != "radio" {
            return;
        }
        for (key, v) in RADIO_TIMING {
            if explicit.contains(&format!("timing.{key}")) {
                continue;
            }
            match key {
                "digest_interval_ms" => self.timing.digest_interval_ms = v,
                "decohere_after_ms" => self.timing.decohere_after_ms = v,
                "prompt_ack_ms" => self.timing.prompt_ack_ms = v,
                _ => self.timing.decohere_max_ms = v,
            }
        }
        for (k, v) in RADIO_ZENOH {
            self.zenoh.options.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
    }

    /// Load a file (or the defaults if `path` is `None`), then apply environment overrides.
    pub fn load(path: Option<&std::path::Path>) -> Result<Config, ConfigError> {
        let (mut c, mut explicit) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.to_path_buf(), source })?;
                (Config::from_toml(&text, p)?, explicit_keys(&text))
            }
            None => (Config::default(), std::collections::BTreeSet::new()),
        };
        let env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("SPOOK_")).collect();
        c.apply_env(env.iter().cloned())?;
        // A profile chosen in the environment applies too, and a key set there wins over it.
        for (k, _) in &env {
            if let Some(key) = k.strip_prefix("SPOOK_TIMING_") {
                explicit.insert(format!("timing.{}", key.to_ascii_lowercase()));
            }
        }
        c.apply_profile(&explicit);
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
                "NODE_PROFILE" => self.node.profile = value.clone(),
                "ZENOH_MODE" => self.zenoh.mode = value.clone(),
                "ZENOH_LISTEN" => self.zenoh.listen = list(),
                "ZENOH_CONNECT" => self.zenoh.connect = list(),
                "ZENOH_MULTICAST" => self.zenoh.multicast = value.clone(),
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
                "TIMING_DECOHERE_MAX_MS" => self.timing.decohere_max_ms = num()?,
                "TIMING_REJOIN_AFTER_MS" => self.timing.rejoin_after_ms = num()?,
                "TIMING_JOIN_GRACE_MS" => self.timing.join_grace_ms = num()?,
                "TIMING_PROMPT_ACK_MS" => self.timing.prompt_ack_ms = num()?,
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
        if !self.zenoh.multicast.is_empty() {
            crate::multicast::check_locator(&self.zenoh.multicast).map_err(|why| ConfigError::Invalid(format!("zenoh.multicast {:?}: {why}", self.zenoh.multicast)))?;
        }
        if self.timing.digest_interval_ms == 0 || self.timing.decohere_after_ms < 2 * self.timing.digest_interval_ms {
            return Err(ConfigError::Invalid("timing: digest_interval_ms must be > 0 and decohere_after_ms at least twice it".into()));
        }
        if self.timing.decohere_max_ms > spook_core::SILENCE_WINDOW_MS {
            return Err(ConfigError::Invalid(format!(
                "timing.decohere_max_ms {} is over {} (the window the timeout learns from)",
                self.timing.decohere_max_ms,
                spook_core::SILENCE_WINDOW_MS
            )));
        }
        if !matches!(self.node.profile.as_str(), "lan" | "radio") {
            return Err(ConfigError::Invalid(format!("node.profile must be \"lan\" or \"radio\", not {:?}", self.node.profile)));
        }
        if !(0.0..=100.0).contains(&self.faults.drop_pct) {
            return Err(ConfigError::Invalid(format!("faults.drop_pct {} is not a percentage (0 to 100)", self.faults.drop_pct)));
        }
        Ok(())
    }
}

/// The keys a TOML document sets, as `section.key` (what a profile must leave alone).
fn explicit_keys(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    if let Ok(doc) = text.parse::<toml::Table>() {
        for (section, v) in &doc {
            if let Some(t) = v.as_table() {
                out.extend(t.keys().map(|k| format!("{section}.{k}")));
            }
        }
    }
    out
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
        let e = Config::from_toml("[node]\nprofile = \"wifi\"\n", p).unwrap_err().to_string();
        assert!(e.contains("node.profile") && e.contains("wifi"), "{e}");
        let e = Config::from_toml("[timing]\ndecohere_max_ms = 600000\n", p).unwrap_err().to_string();
        assert!(e.contains("decohere_max_ms"), "{e}");
        // The multicast path takes a multicast group, never a host's address.
        let e = Config::from_toml("[zenoh]\nmulticast = \"udp/10.0.0.1:7450\"\n", p).unwrap_err().to_string();
        assert!(e.contains("zenoh.multicast") && e.contains("not a multicast address"), "{e}");
        let e = Config::from_toml("[zenoh]\nmulticast = \"239.1.2.3:7450\"\n", p).unwrap_err().to_string();
        assert!(e.contains("udp/"), "{e}");
        let c = Config::from_toml("[zenoh]\nmulticast = \"udp/239.1.2.3:7450#iface=wlan0\"\n", p).unwrap();
        assert_eq!(c.zenoh.multicast, "udp/239.1.2.3:7450#iface=wlan0");
    }

    #[test]
    fn the_radio_profile_changes_only_the_keys_not_set() {
        let p = std::path::Path::new("r.toml");
        let c = Config::from_toml("[node]\nprofile = \"radio\"\n[zenoh]\noptions = { \"connect/retry\" = \"{ period_max_ms: 3000 }\" }\n", p).unwrap();
        assert_eq!((c.timing.digest_interval_ms, c.timing.decohere_after_ms, c.timing.decohere_max_ms), (500, 4_000, 12_000));
        assert_eq!(c.zenoh.options["connect/retry"], "{ period_max_ms: 3000 }", "an option set in the file wins");
        let c = Config::from_toml("[node]\nprofile = \"radio\"\n[timing]\ndigest_interval_ms = 250\n", p).unwrap();
        assert_eq!((c.timing.digest_interval_ms, c.timing.decohere_after_ms), (250, 4_000), "a timing key set in the file wins");
        assert!(c.zenoh.options["connect/retry"].contains("period_init_ms: 500"));
        let lan = Config::from_toml("[timing]\ndecohere_after_ms = 4000\n", p).unwrap();
        assert_eq!((lan.timing.digest_interval_ms, lan.timing.decohere_max_ms), (250, 10_000), "lan keeps the defaults");
        assert!(lan.zenoh.options.is_empty());
    }
}
