//! What a client says when it cannot reach anything: typed errors with messages users can act
//! on, before any node is involved.
#![allow(clippy::unwrap_used)]

use spook_client::{Client, Error, RemoteOptions};

#[tokio::test]
async fn a_local_client_without_a_node_says_where_it_looked_and_what_to_run() {
    let path = std::env::temp_dir().join(format!("spook-no-node-{}.sock", std::process::id()));
    let e = Client::local(&path).await.unwrap_err();
    assert!(matches!(e, Error::Unreachable { .. }) && e.node_lost(), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()) && msg.contains("spook up"), "{msg}");
}

#[tokio::test]
async fn a_remote_client_without_nodes_is_refused_before_it_opens_zenoh() {
    let e = Client::remote(RemoteOptions::new(spook_secure::Identity::generate(), "lab")).await.unwrap_err();
    assert!(matches!(e, Error::BadValue(_)) && e.to_string().contains("RemoteOptions::node"), "{e:?}");
}

#[test]
fn a_schema_file_with_a_duplicate_or_numeric_name_is_refused_by_name() {
    let dup = "[[field]]\nname = \"a\"\nkind = \"f64\"\n[[field]]\nname = \"a\"\nkind = \"i64\"\n";
    let e = spook_client::schema::from_toml(dup).unwrap_err();
    assert!(e.to_string().contains("\"a\" is named twice"), "{e}");
    let numeric = "[[field]]\nname = \"a\"\nkind = \"f64\"\n[registers]\n\"7\" = 3\n";
    let e = spook_client::schema::from_toml(numeric).unwrap_err();
    assert!(e.to_string().contains("is a number"), "{e}");
    let unknown_key = "[[field]]\nname = \"a\"\nkind = \"f64\"\npolicy = \"max\"\n";
    let e = spook_client::schema::from_toml(unknown_key).unwrap_err();
    assert!(e.to_string().contains("policy"), "an unknown key is named: {e}");
    let high = "[[field]]\nname = \"a\"\nkind = \"f64\"\n[registers]\nx = 3000000000\n";
    assert!(spook_client::schema::from_toml(high).unwrap_err().to_string().contains("hashed names"));
}
