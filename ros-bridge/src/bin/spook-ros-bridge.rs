//! `spook-ros-bridge`: ROS 2 topics to Spook registers and back, as a mapping file says.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use spook_client::GroupApi;
use spook_ros::bridge::{drive, Bridge};
use spook_ros::mapping::Mapping;

const HELP: &str = "spook-ros-bridge: ROS 2 topics to Spook registers and back

usage: spook-ros-bridge --mapping FILE (--socket PATH | --config FILE)

  --mapping FILE   the mapping (TOML): group, bridge name, topics (ros-bridge/README.md)
  --socket PATH    reach a running spookd through its control socket
  --config FILE    run a node in this process from a spookd config file (its own ledger)
  --help           this text

The group must exist on the node, created with the bridge's schema
(`spook group create NAME --schema ros-bridge/schema.toml`). ROS's environment comes from
ros-bridge/ros2/env.sh; ROS_DOMAIN_ID chooses the ROS domain. Logs: RUST_LOG=info.";

struct Args {
    mapping: PathBuf,
    socket: Option<PathBuf>,
    config: Option<PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = std::env::args().skip(1);
    let (mut mapping, mut socket, mut config) = (None, None, None);
    while let Some(k) = a.next() {
        let mut value = || a.next().map(PathBuf::from).with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--mapping" => mapping = Some(value()?),
            "--socket" => socket = Some(value()?),
            "--config" => config = Some(value()?),
            "-h" | "--help" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n\n{HELP}"),
        }
    }
    let mapping = mapping.with_context(|| format!("--mapping is required\n\n{HELP}"))?;
    if socket.is_some() == config.is_some() {
        bail!("give one of --socket and --config\n\n{HELP}");
    }
    Ok(Args { mapping, socket, config })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())).with_writer(std::io::stderr).init();
    let args = args()?;
    let mapping = Mapping::load(&args.mapping)?;
    let (client, embedded) = match (&args.socket, &args.config) {
        (Some(socket), _) => (spook_client::Client::local(socket).await?, None),
        (None, Some(config)) => {
            let cfg = spook_node::Config::load(Some(config)).with_context(|| format!("config {}", config.display()))?;
            let (c, node) = spook_node::embedded::start(cfg).await?;
            (c, Some(node))
        }
        (None, None) => unreachable!("checked in args()"),
    };
    let group = client.group(&mapping.group);
    let schema = group.schema().await.with_context(|| format!("group {:?}", mapping.group))?;
    let first_seq = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros()).unwrap_or(1);
    let bridge = Bridge::new(&mapping, &schema, first_seq)?;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let ros = start_ros(&mapping, tx)?;
    tracing::info!(bridge = %mapping.bridge, group = %mapping.group, topics = mapping.topics.len(), session = %group.id(), "bridging");
    let publish = move |topic: String, cdr: Vec<u8>| ros.publish(topic, cdr);
    let counts = tokio::select! {
        r = drive(bridge, &group, rx, &publish) => r?,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("stopping");
            spook_ros::bridge::Counts::default()
        }
    };
    tracing::info!(?counts, "stopped");
    if let Some(node) = embedded {
        node.shutdown().await?;
    }
    Ok(())
}

#[cfg(feature = "ros2")]
fn start_ros(mapping: &Mapping, tx: tokio::sync::mpsc::Sender<(String, Vec<u8>)>) -> anyhow::Result<spook_ros::ros::RosSide> {
    let name = format!("spook_bridge_{}", mapping.bridge.replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
    Ok(spook_ros::ros::RosSide::start(mapping, &name, tx)?)
}

/// Without the `ros2` feature there is no ROS side to start.
#[cfg(not(feature = "ros2"))]
fn start_ros(_: &Mapping, _: tokio::sync::mpsc::Sender<(String, Vec<u8>)>) -> anyhow::Result<NoRos> {
    bail!("this spook-ros-bridge was built without ROS: build it with `--features spook-ros/ros2` in ROS 2's environment (ros-bridge/ros2/env.sh)")
}

#[cfg(not(feature = "ros2"))]
struct NoRos;

#[cfg(not(feature = "ros2"))]
impl NoRos {
    fn publish(&self, _: String, _: Vec<u8>) {}
}
