"""The zenoh session the radio test's Python peers open (raw_zenoh_drone.py,
multicast_outsider.py): the links given and no others, as the test's nodes have them."""
import zenoh


def open_session(listen_json, connect_json):
    """A peer listening on LISTEN_JSON and dialling CONNECT_JSON (JSON lists of endpoints),
    scouting and gossip off, datagrams below the radio's MTU, 10 s link handshakes."""
    conf = zenoh.Config()
    for key, value in [
        ("mode", '"peer"'),
        ("listen/endpoints", listen_json),
        ("connect/endpoints", connect_json),
        ("scouting/multicast/enabled", "false"),
        ("scouting/gossip/enabled", "false"),
        ("transport/link/tx/batch_size", "1400"),
        ("transport/unicast/open_timeout", "10000"),
        ("transport/unicast/accept_timeout", "10000"),
    ]:
        conf.insert_json5(key, value)
    return zenoh.open(conf)
