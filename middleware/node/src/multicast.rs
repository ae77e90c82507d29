//! The radio's broadcast path (`[zenoh] multicast`): every message the node publishes best
//! effort (frames for all members or for one, key announcements, pair handshakes, and digests,
//! which then go to all members at once) goes on the air once, over zenoh's UDP multicast
//! transport, instead of once per member over the unicast links, and no unicast link's
//! congestion control holds it back (QUIC's, under 30% loss, stalls for seconds). Queries
//! (wants) and messages over 1 KB stay on the unicast links: zenoh 1.10's multicast transport
//! carries publications only, and a lost fragment would lose a whole large message.
//!
//! It is a zenoh session of its own, whose only link is the multicast group. In one session with
//! the unicast links, zenoh 1.10 routes every data message to every multicast group of the session
//! (its "regions" gateway) and re-sends what arrives on one kind of face to the other, and with
//! gossip off it cannot tell duplicates: five drones put 360 to 440 Mbit/s on the air for 4 kbit/s
//! of Spook frames (docs/benchmarks.md). Alone, the multicast session sends what this node
//! publishes and nothing else.
//!
//! What it gives up: the multicast transport is best effort and has no domain key (zenoh
//! negotiates nothing on a multicast group). Spook's frames stay sealed and signed by the group's
//! sender keys, and a frame lost on the air is recovered by anti-entropy over the unicast links,
//! as any lost datagram is; but anyone on the radio's multicast group sees that frames flow.

use zenoh::Wait;

/// The batch size of the multicast session unless `[zenoh] options` sets
/// `transport/link/tx/batch_size`: one datagram below a radio's MTU (a lost IP fragment would
/// lose a whole batch; zenoh's multicast default is 65,535 bytes). zenoh negotiates nothing on a
/// multicast group, so every node on it must use the same value.
pub const DEFAULT_BATCH_SIZE: &str = "1400";

/// Whether `locator` is a UDP multicast locator (`udp/239.1.2.3:7450`, optionally
/// `#iface=wlan0`), or why not.
///
/// ```
/// use spook_node::multicast::check_locator;
/// assert!(check_locator("udp/239.77.0.1:7450#iface=wlan0").is_ok());
/// assert!(check_locator("udp/[ff02::1]:7450").is_ok());
/// assert!(check_locator("udp/10.0.0.1:7450").unwrap_err().contains("not a multicast address"));
/// assert!(check_locator("tcp/239.77.0.1:7450").is_err());
/// ```
///
/// # Errors
/// The reason, for the operator.
pub fn check_locator(locator: &str) -> Result<(), String> {
    let rest = locator.strip_prefix("udp/").ok_or("a multicast locator starts with udp/")?;
    let addr = rest.split(['?', '#']).next().unwrap_or_default();
    let sa: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr:?} is not an address and port: {e}"))?;
    if !sa.ip().is_multicast() {
        return Err(format!("{} is not a multicast address (224.0.0.0/4 or ff00::/8)", sa.ip()));
    }
    locator.parse::<zenoh::config::EndPoint>().map_err(|e| e.to_string())?;
    Ok(())
}

/// The multicast session's zenoh configuration: peer mode, listening on `locator` only, no
/// scouting, no gossip, the batch size from `options` or [`DEFAULT_BATCH_SIZE`]. zenoh's JOIN
/// interval stays at its 2,500 ms: at 500 ms five drones put 450 Mbit/s on the air (measured;
/// the cause inside zenoh's multicast transport was not established).
///
/// ```
/// // zenoh accepts every key it sets (a misspelt key is an error here, not at a radio).
/// let z = spook_node::multicast::config("udp/239.77.0.1:7450#iface=lo", &Default::default()).unwrap();
/// assert!(z.to_string().contains("239.77.0.1"));
/// ```
///
/// # Errors
/// zenoh refuses a value.
pub fn config(locator: &str, options: &std::collections::BTreeMap<String, String>) -> Result<zenoh::Config, String> {
    let mut z = zenoh::Config::default();
    let batch = options.get("transport/link/tx/batch_size").map_or(DEFAULT_BATCH_SIZE, String::as_str);
    let settings = [
        ("mode", "\"peer\"".to_string()),
        ("listen/endpoints", serde_json::json!([locator]).to_string()),
        ("connect/endpoints", "[]".into()),
        ("scouting/multicast/enabled", "false".into()),
        ("scouting/gossip/enabled", "false".into()),
        ("transport/link/tx/batch_size", batch.to_string()),
    ];
    for (k, v) in settings {
        z.insert_json5(k, &v).map_err(|e| format!("zenoh config {k}: {e}"))?;
    }
    Ok(z)
}

/// The open multicast session and the subscriptions declared on it, by key expression.
pub(crate) struct Multicast {
    session: zenoh::Session,
    subscribers: Vec<(String, zenoh::pubsub::Subscriber<()>)>,
}

impl Multicast {
    pub(crate) async fn open(locator: &str, options: &std::collections::BTreeMap<String, String>) -> anyhow::Result<Multicast> {
        let z = config(locator, options).map_err(|e| anyhow::anyhow!("{e}"))?;
        let session = zenoh::open(z).await.map_err(|e| anyhow::anyhow!("cannot open the multicast session on {locator}: {e}"))?;
        tracing::info!(locator, "multicast: frames for every member of a group go out once on this group");
        Ok(Multicast { session, subscribers: Vec::new() })
    }

    pub(crate) fn session(&self) -> &zenoh::Session {
        &self.session
    }

    pub(crate) fn keep(&mut self, key: &str, s: zenoh::pubsub::Subscriber<()>) {
        self.subscribers.push((key.to_string(), s));
    }

    /// Undeclare the subscriptions under `prefix` (a group left).
    pub(crate) fn forget(&mut self, prefix: &str) {
        self.subscribers.retain(|(k, _)| !k.starts_with(prefix));
    }

    /// Publish `payload` once on the multicast group (best effort: there is nothing else).
    pub(crate) fn publish(&self, key: &str, payload: Vec<u8>) {
        if let Err(e) = self.session.put(key, payload).congestion_control(zenoh::qos::CongestionControl::Drop).wait() {
            tracing::warn!(key, "multicast publish failed: {e}");
        }
    }

    pub(crate) async fn close(self, bound: std::time::Duration) {
        drop(self.subscribers);
        match tokio::time::timeout(bound, self.session.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("closing the multicast session: {e}"),
            Err(_) => tracing::warn!("multicast session still closing at shutdown: left to the process exit"),
        }
    }
}
