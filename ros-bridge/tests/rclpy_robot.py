"""One robot's ROS graph for the bridge tests: a real rclpy node on this process's ROS_DOMAIN_ID.

usage: python rclpy_robot.py NAME COUNT SECONDS [DELAY] [--quiet]

Waits DELAY s (default 3: discovery), then publishes COUNT std_msgs/String "NAME k" on /chatter and COUNT
geometry_msgs/PoseStamped on /pose (frame "NAME", position.x = k, stamp k s), 10 a second,
while recording every String and PoseStamped it receives until SECONDS have passed. Prints one
JSON line: {"strings": [...], "poses": [[frame, x, stamp_sec, stamp_nanosec], ...]}.
With --quiet it publishes nothing (a listener only)."""
import json
import sys
import time

import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from std_msgs.msg import String


def main():
    name, count, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    quiet = "--quiet" in sys.argv
    rest = [a for a in sys.argv[4:] if a != "--quiet"]
    delay = float(rest[0]) if rest else 3.0
    rclpy.init()
    node = Node(f"spook_test_{name.replace('-', '_')}")
    strings, poses = [], []
    node.create_subscription(String, "/chatter", lambda m: strings.append(m.data), 100)
    node.create_subscription(
        PoseStamped,
        "/pose",
        lambda m: poses.append([m.header.frame_id, m.pose.position.x, m.header.stamp.sec, m.header.stamp.nanosec]),
        100,
    )
    chatter = node.create_publisher(String, "/chatter", 100)
    pose = node.create_publisher(PoseStamped, "/pose", 100)
    start = time.monotonic()
    sent = 0
    next_at = start + delay
    while time.monotonic() - start < seconds:
        rclpy.spin_once(node, timeout_sec=0.01)
        if not quiet and sent < count and time.monotonic() >= next_at:
            chatter.publish(String(data=f"{name} {sent}"))
            p = PoseStamped()
            p.header.frame_id = name
            p.header.stamp.sec = sent
            p.header.stamp.nanosec = 500
            p.pose.position.x = float(sent)
            p.pose.orientation.w = 1.0
            pose.publish(p)
            sent += 1
            next_at += 0.1
    print(json.dumps({"strings": strings, "poses": poses}), flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
