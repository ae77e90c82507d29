"""Publisher and subscriber for the bridge benchmark (bench.sh): real rclpy nodes.

usage: python latency.py pub SECONDS RATE_HZ      (publish PoseStamped stamped with now)
       python latency.py sub SECONDS              (print one JSON line: latencies in ms)
Both on this process's ROS_DOMAIN_ID. The publisher starts after 3 s of discovery."""
import json
import sys
import time

import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node


def main():
    role, seconds = sys.argv[1], float(sys.argv[2])
    rclpy.init()
    node = Node(f"spook_bench_{role}")
    start = time.monotonic()
    if role == "pub":
        rate = float(sys.argv[3])
        pub = node.create_publisher(PoseStamped, "/bench_pose", 100)
        sent, next_at = 0, start + 3.0
        while time.monotonic() - start < seconds:
            rclpy.spin_once(node, timeout_sec=0.001)
            if time.monotonic() >= next_at:
                m = PoseStamped()
                now = time.time_ns()
                m.header.stamp.sec, m.header.stamp.nanosec = now // 10**9, now % 10**9
                m.header.frame_id = "map"
                m.pose.position.x = float(sent)
                m.pose.orientation.w = 1.0
                pub.publish(m)
                sent += 1
                next_at += 1.0 / rate
        print(json.dumps({"sent": sent}), flush=True)
    else:
        lat = []

        def got(m):
            lat.append((time.time_ns() - (m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)) / 1e6)

        node.create_subscription(PoseStamped, "/bench_pose", got, 100)
        while time.monotonic() - start < seconds:
            rclpy.spin_once(node, timeout_sec=0.01)
        print(json.dumps({"received": len(lat), "latency_ms": lat}), flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
