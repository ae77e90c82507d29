//! The ROS side (feature `ros2`): one rcl node on a thread of its own, which takes serialized
//! messages from the mapped topics' subscriptions and publishes serialized messages on the
//! mapped topics' publishers. Messages are never deserialised here: CDR goes to and comes
//! from [`crate::bridge`] as bytes.
//!
//! rcl is driven directly (through `r2r_rcl`; `r2r` only finds each type's type support)
//! because echo prevention needs what r2r does not expose: a subscription that ignores this
//! node's own publications (`ignore_local_publications`), and the publisher of each message
//! (`rmw_message_info_t::publisher_gid`), checked against this node's own publishers. A
//! message the bridge published is therefore never taken back into Spook, whatever it holds.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use r2r_rcl as rcl;

use crate::mapping::{Durability, Mapping, Qos, Reliability};

/// Why the ROS side could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RosError {
    /// An rcl call failed.
    #[error("rcl: {what} failed (code {code}): {message}")]
    Rcl {
        /// The call.
        what: &'static str,
        /// rcl's return code.
        code: i32,
        /// rcl's error string.
        message: String,
    },
    /// A type the installed message packages do not have.
    #[error("message type {0:?} is not installed (add its package to ros-bridge/ros2/setup.sh and IDL_PACKAGE_FILTER)")]
    UnknownType(String),
    /// A topic or node name rcl cannot take.
    #[error("name {0:?} contains a NUL byte")]
    BadName(String),
}

fn check(what: &'static str, code: i32) -> Result<(), RosError> {
    if code == rcl::RCL_RET_OK as i32 {
        Ok(())
    } else {
        // rcl keeps an error string per thread: take it, and reset it so the next call
        // starts clean.
        // SAFETY: rcutils returns a struct holding a NUL-terminated string.
        let message = unsafe {
            let e = rcl::rcutils_get_error_string();
            let m = std::ffi::CStr::from_ptr(e.str_.as_ptr()).to_string_lossy().into_owned();
            rcl::rcutils_reset_error();
            m
        };
        Err(RosError::Rcl { what, code, message })
    }
}

fn qos(q: &Qos) -> rcl::rmw_qos_profile_t {
    let mut p = r2r::QosProfile::default().keep_last(q.depth);
    p = match q.reliability {
        Reliability::Reliable => p.reliable(),
        Reliability::BestEffort => p.best_effort(),
    };
    p = match q.durability {
        Durability::Volatile => p.volatile(),
        Durability::TransientLocal => p.transient_local(),
    };
    p.into()
}

/// What the ROS thread is given: the mapping's topics in each direction.
struct Topics {
    subscribe: Vec<(String, String, Qos)>,
    publish: Vec<(String, String, Qos)>,
}

/// The running ROS side. Dropping it stops the thread and finalises the node.
pub struct RosSide {
    out: std::sync::mpsc::Sender<(String, Vec<u8>)>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RosSide {
    /// Start a node named `node_name` on the ROS domain of `ROS_DOMAIN_ID`, with a
    /// subscription for each topic mapped into Spook and a publisher for each mapped out of
    /// it. Messages taken go to `incoming` as (topic, CDR).
    ///
    /// # Errors
    /// rcl cannot start, or a type is not installed.
    pub fn start(mapping: &Mapping, node_name: &str, incoming: tokio::sync::mpsc::Sender<(String, Vec<u8>)>) -> Result<RosSide, RosError> {
        let topics = Topics {
            subscribe: mapping.topics.iter().filter(|t| t.direction.to_spook()).map(|t| (t.name.clone(), t.ros_type.clone(), t.qos)).collect(),
            publish: mapping.topics.iter().filter(|t| t.direction.to_ros()).map(|t| (t.name.clone(), t.ros_type.clone(), t.qos)).collect(),
        };
        let (out, out_rx) = std::sync::mpsc::channel::<(String, Vec<u8>)>();
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let name = node_name.to_string();
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("spook-ros".into())
            .spawn(move || match RclNode::new(&name, &topics) {
                Ok(mut node) => {
                    let _ = ready_tx.send(Ok(()));
                    node.run(&incoming, &out_rx, &stopping);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|_| RosError::Rcl { what: "spawning the ROS thread", code: -1, message: String::new() })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(RosSide { out, stop, thread: Some(thread) }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RosError::Rcl { what: "starting the ROS thread", code: -1, message: String::new() }),
        }
    }

    /// Publish `cdr` on `topic` (a topic mapped out of Spook).
    pub fn publish(&self, topic: String, cdr: Vec<u8>) {
        let _ = self.out.send((topic, cdr));
    }
}

impl Drop for RosSide {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Sub {
    topic: String,
    handle: rcl::rcl_subscription_t,
    buf: rcl::rcl_serialized_message_t,
}

struct Pub {
    topic: String,
    handle: rcl::rcl_publisher_t,
}

/// One rcl context and node with its endpoints; lives on the ROS thread only.
struct RclNode {
    context: Box<rcl::rcl_context_t>,
    node: Box<rcl::rcl_node_t>,
    subs: Vec<Sub>,
    pubs: Vec<Pub>,
    own_gids: Vec<Vec<u8>>,
}

fn type_support(ros_type: &str) -> Result<*const rcl::rosidl_message_type_support_t, RosError> {
    let m = r2r::WrappedNativeMsgUntyped::new_from(ros_type).map_err(|_| RosError::UnknownType(ros_type.to_string()))?;
    Ok(std::ptr::from_ref(m.ts).cast())
}

impl RclNode {
    fn new(name: &str, topics: &Topics) -> Result<RclNode, RosError> {
        let cname = CString::new(name).map_err(|_| RosError::BadName(name.into()))?;
        let ns = CString::new("").map_err(|_| RosError::BadName(String::new()))?;
        // SAFETY: each rcl object is zero-initialised by rcl, initialised once, used only on
        // this thread, and finalised in Drop in reverse order.
        unsafe {
            let allocator = rcl::rcutils_get_default_allocator();
            let mut init = rcl::rcl_get_zero_initialized_init_options();
            check("rcl_init_options_init", rcl::rcl_init_options_init(&mut init, allocator))?;
            let mut context = Box::new(rcl::rcl_get_zero_initialized_context());
            // No arguments: rcl wants a null argv with argc 0.
            let r = rcl::rcl_init(0, std::ptr::null(), &init, context.as_mut());
            rcl::rcl_init_options_fini(&mut init);
            check("rcl_init", r)?;
            let mut node = Box::new(rcl::rcl_get_zero_initialized_node());
            let options = rcl::rcl_node_get_default_options();
            check("rcl_node_init", rcl::rcl_node_init(node.as_mut(), cname.as_ptr(), ns.as_ptr(), context.as_mut(), &options))?;
            let mut me = RclNode { context, node, subs: Vec::new(), pubs: Vec::new(), own_gids: Vec::new() };
            for (topic, ros_type, q) in &topics.publish {
                let ts = type_support(ros_type)?;
                let ctopic = CString::new(topic.as_str()).map_err(|_| RosError::BadName(topic.clone()))?;
                let mut handle = rcl::rcl_get_zero_initialized_publisher();
                let mut po = rcl::rcl_publisher_get_default_options();
                po.qos = qos(q);
                check("rcl_publisher_init", rcl::rcl_publisher_init(&mut handle, me.node.as_mut(), ts, ctopic.as_ptr(), &po))?;
                let mut gid: rcl::rmw_gid_t = std::mem::zeroed();
                check("rmw_get_gid_for_publisher", rcl::rmw_get_gid_for_publisher(rcl::rcl_publisher_get_rmw_handle(&handle), &mut gid))?;
                me.own_gids.push(gid.data.to_vec());
                me.pubs.push(Pub { topic: topic.clone(), handle });
            }
            for (topic, ros_type, q) in &topics.subscribe {
                let ts = type_support(ros_type)?;
                let ctopic = CString::new(topic.as_str()).map_err(|_| RosError::BadName(topic.clone()))?;
                let mut handle = rcl::rcl_get_zero_initialized_subscription();
                let mut so = rcl::rcl_subscription_get_default_options();
                so.qos = qos(q);
                so.rmw_subscription_options.ignore_local_publications = true;
                check("rcl_subscription_init", rcl::rcl_subscription_init(&mut handle, me.node.as_mut(), ts, ctopic.as_ptr(), &so))?;
                let mut buf = rcl::rcutils_get_zero_initialized_uint8_array();
                check("rcutils_uint8_array_init", rcl::rcutils_uint8_array_init(&mut buf, 0, &rcl::rcutils_get_default_allocator()))?;
                me.subs.push(Sub { topic: topic.clone(), handle, buf });
            }
            Ok(me)
        }
    }

    /// Take and publish until told to stop: a poll every 2 ms (messages queue in DDS
    /// meanwhile, up to each topic's depth).
    fn run(&mut self, incoming: &tokio::sync::mpsc::Sender<(String, Vec<u8>)>, out: &std::sync::mpsc::Receiver<(String, Vec<u8>)>, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            let mut busy = false;
            for s in &mut self.subs {
                loop {
                    let mut info = rcl::rmw_message_info_t::default();
                    // SAFETY: the subscription and buffer are initialised and owned here.
                    let r = unsafe { rcl::rcl_take_serialized_message(&s.handle, &mut s.buf, &mut info, std::ptr::null_mut()) };
                    if r != rcl::RCL_RET_OK as i32 {
                        unsafe { rcl::rcutils_reset_error() };
                        break;
                    }
                    busy = true;
                    if self.own_gids.iter().any(|g| g[..] == info.publisher_gid.data[..]) {
                        // Ours: it came from Spook, it does not go back.
                        continue;
                    }
                    let bytes = if s.buf.buffer.is_null() { Vec::new() } else { unsafe { std::slice::from_raw_parts(s.buf.buffer, s.buf.buffer_length) }.to_vec() };
                    if incoming.blocking_send((s.topic.clone(), bytes)).is_err() {
                        return;
                    }
                }
            }
            while let Ok((topic, cdr)) = out.try_recv() {
                busy = true;
                let Some(p) = self.pubs.iter().find(|p| p.topic == topic) else {
                    tracing::warn!(%topic, "no publisher for this topic: not mapped out of Spook");
                    continue;
                };
                let msg = rcl::rcl_serialized_message_t {
                    buffer: cdr.as_ptr().cast_mut(),
                    buffer_length: cdr.len(),
                    buffer_capacity: cdr.len(),
                    // SAFETY: only read by rcl during the call.
                    allocator: unsafe { rcl::rcutils_get_default_allocator() },
                };
                // SAFETY: the publisher is initialised; rcl only reads the buffer.
                let r = unsafe { rcl::rcl_publish_serialized_message(&p.handle, &msg, std::ptr::null_mut()) };
                if r != rcl::RCL_RET_OK as i32 {
                    unsafe { rcl::rcutils_reset_error() };
                    tracing::warn!(%topic, code = r, "publish failed");
                }
            }
            if !busy {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

impl Drop for RclNode {
    fn drop(&mut self) {
        // SAFETY: finalising what new() initialised, endpoints before the node before the
        // context.
        unsafe {
            for s in &mut self.subs {
                rcl::rcl_subscription_fini(&mut s.handle, self.node.as_mut());
                rcl::rcutils_uint8_array_fini(&mut s.buf);
            }
            for p in &mut self.pubs {
                rcl::rcl_publisher_fini(&mut p.handle, self.node.as_mut());
            }
            rcl::rcl_node_fini(self.node.as_mut());
            rcl::rcl_shutdown(self.context.as_mut());
            rcl::rcl_context_fini(self.context.as_mut());
        }
    }
}
