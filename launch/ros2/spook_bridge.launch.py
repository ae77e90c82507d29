"""ROS 2 launch file: a spookd node and the Spook bridge beside your nodes.

    ros2 launch spook_bridge.launch.py config:=/etc/spook/spookd.toml mapping:=mapping.toml socket:=/run/spook/spookd.sock

It reads spook.json beside it, as start.sh does (the tested twin: no launch wheels exist for
Jazzy on PyPI), so both start the same programs with the same arguments. Uses only the
documented launch / launch_ros API: LaunchDescription, DeclareLaunchArgument, ExecuteProcess,
LaunchConfiguration.
"""
import json
import os
import re

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.substitutions import LaunchConfiguration

SPEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spook.json")


def _word(word):
    """One command word: a plain string, or the launch argument it names ("{config}")."""
    m = re.fullmatch(r"\{(\w+)\}", word)
    return LaunchConfiguration(m.group(1)) if m else word


def generate_launch_description():
    with open(SPEC) as f:
        spec = json.load(f)
    actions = [DeclareLaunchArgument(name, default_value=value) for name, value in spec["arguments"].items()]
    for p in spec["processes"]:
        actions.append(ExecuteProcess(cmd=[_word(w) for w in p["cmd"]], name=p["name"], output="screen"))
    return LaunchDescription(actions)
