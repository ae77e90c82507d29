//! `spook`: the command line for a Spook node. See `spook --help`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value as Json};
use spook_node::control::Request;

const HELP: &str = "\
spook: command line for a Spook node

USAGE:
    spook [--config FILE] [--json] [--connect LOCATOR --node ID [--domain D]] <command>

NODE:
    init [--domain-key TOKEN]     create this node's identity in its ledger, and a domain key
                                  for a new domain (or take TOKEN: join an existing domain)
    domain-key [--set TOKEN | --new] [--zenoh]
                                  print the domain key's token (a secret: give it to the
                                  other nodes and remote clients of the domain); zenoh admits
                                  no session without it. --zenoh: the lines a zenohd router
                                  of the domain needs instead
    id                            print this node's endpoint id
    allow <endpoint-id> [--name N]
                                  add a peer to the allow-list (only allowed peers can connect)
    disallow <endpoint-id>        remove it: its channels close, its frames are refused, and
                                  this node's sender keys of its groups are replaced
    pair [--seconds N] [--name N]  meet another node by a pairing ceremony (run it on both):
                                  each shows a six-digit code; type the one the other shows
    pair --confirm CODE           the same, for scripts (after `spook --json pair`)
    up                            run the node in the foreground (as spookd)
    status [--follow]             members, frontiers, pending, hashes, bytes, rejections, and
                                  re-alignment progress; --follow redraws every second
    reconnect                     drop the zenoh session and open a fresh one (new zenoh id,
                                  new links and declarations), e.g. when plain UDP has
                                  wedged zenoh's routing (see docs/protocol.md)
    demo [--nodes N] [--seconds S]
                                  start a local domain of N nodes and watch it converge
    bench [--quick] [--samples N] [--batches N] [--watchers N] [--client]
                                  measure latency, updates/s and bytes against raw zenoh
                                  (in this process, on loopback; use a release build).
                                  --client: through spook-client embedded, local and
                                  remote, against the JSON requests and raw zenoh

GROUPS:
    group create <name> [--member ID]... [--serial] [--trusted-members] [--schema FILE]
                                  create a group; prints an invite for the other members.
                                  --schema: its fields, kinds, merge policies and register
                                  names from a TOML file (docs/client.md; default: the
                                  fleet schema of the demo). It never changes: a new
                                  schema is a new group
                                  --trusted-members: frames carry no Ed25519 signature (64 B
                                  and a sign/verify less per frame, for constrained radio);
                                  any member could then forge another member's deltas
    group join <invite> [--name N]
    group leave <name>
    group remove <name> <member-id>
                                  remove a member that is not coming back (a lost drone, a
                                  revoked peer): a serial pair, or a serial group that lost
                                  its majority, needs this to go on. One heard again is
                                  re-added (as after a prune): `disallow` it on every
                                  member to keep it out
    group list

DATA (values are JSON; a register is an id or a name, e.g. drone-7):
    set <group> <register> <field> <json>     e.g. spook set fleet 7 battery 0.82
    write <group> <register> <field> <json> [<field> <json>]...
                                              several fields as one atomic delta
    schema <group>                            the group's fields, kinds and merge policies
    get <group> <register> [field] [--committed | --serial]
    watch <group> [--committed] [--snapshot]  stream changes until Ctrl-C; --snapshot shows
                                              every register's current value first

TRANSACTIONS (serial groups; run in the total order, the first whose conditions hold wins):
    tx <group> --set 'REG.FIELD JSON'... [--if 'COND']... [--lease-ms N]
       [--after SEQ]... [--timeout-ms N] [--seq N] [--client ID] [--no-wait]
                                  COND: 'REG.FIELD == JSON' (or != < <= > >=),
                                  'REG.FIELD absent', 'REG.FIELD version N', 'REG.FIELD lease-expired',
                                  'REG.FIELD lease-held' (a lease still runs at its turn)
                                  e.g. spook tx tasks --if '3.owner lease-expired' \
                                           --set '3.owner \"drone-7\"' --lease-ms 5000
                                  Exit status 3 when it aborted or its outcome is not known yet.
    session <group> [--client ID]  this client's operations and their outcomes

An operation's identity is (client, seq): resending it through any node of the domain (after
its node died, say) executes it once. The client id comes from --client or from the client
key file (--client-key FILE, $SPOOK_CLIENT_KEY, default ~/.config/spook/client.key, created
on first use); seq defaults to the current time in microseconds.

Commands other than init, id, allow and up talk to the running node over its control socket
(from the config's [node] control). --json prints the node's JSON responses as they are.

REMOTE (attach to any node of the domain over zenoh, no local socket):
    --connect LOCATOR             a zenoh endpoint of the domain, e.g. tcp/10.0.0.5:7447
                                  (repeatable)
    --node ID                     the node to attach to (its `spook id`). Repeat it to name
                                  others: the client attaches to the first that answers, and
                                  when its node stops answering, a watch (and any request but
                                  set and write, which have no identity to be resent by) goes
                                  on through the next; a watch there first shows the
                                  registers that changed while it was away
    --domain D                    the domain (default: the config's [node] domain)
    --domain-key TOKEN            the domain's key (`spook domain-key` on a node; or
                                  $SPOOK_DOMAIN_KEY): its nodes admit no zenoh session without
The client key (--client-key) is proven in a Noise handshake: the node must allow it first
(`spook allow <client-id>` on that node; `spook client-id` prints it). Over zenoh, a client
can get, set, write, tx, session, status, watch and group list; administration stays on
the local socket.
    client-id                     print this client's id (from its key file)";

struct Opts {
    config: Option<PathBuf>,
    json: bool,
    connect: Vec<String>,
    node: Vec<String>,
    domain: Option<String>,
    client_key: Option<String>,
    domain_key: Option<String>,
    /// `--help`: the whole help, or a command's part of it.
    help: bool,
    rest: Vec<String>,
}

fn parse_args() -> Result<Opts> {
    let mut o = Opts { config: None, json: false, connect: Vec::new(), node: Vec::new(), domain: None, client_key: None, domain_key: std::env::var("SPOOK_DOMAIN_KEY").ok(), help: false, rest: Vec::new() };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => o.help = true,
            "--config" | "-c" => o.config = Some(it.next().context("--config needs a file")?.into()),
            "--json" => o.json = true,
            "--connect" => o.connect.push(it.next().context("--connect needs a zenoh locator, e.g. tcp/127.0.0.1:7447")?),
            "--node" => o.node.push(it.next().context("--node needs the node's id (`spook id` on it)")?),
            "--domain" => o.domain = Some(it.next().context("--domain needs a name")?),
            "--client-key" => o.client_key = Some(it.next().context("--client-key needs a file")?),
            "--domain-key" => o.domain_key = Some(it.next().context("--domain-key needs a token (`spook domain-key` on a node of the domain)")?),
            _ => o.rest.push(a),
        }
    }
    Ok(o)
}

/// Take `--name value` out of `args`.
fn take_opt(args: &mut Vec<String>, name: &str) -> Result<Option<String>> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => {
            if i + 1 >= args.len() {
                bail!("{name} needs a value");
            }
            let v = args.remove(i + 1);
            args.remove(i);
            Ok(Some(v))
        }
    }
}

fn take_flag(args: &mut Vec<String>, name: &str) -> bool {
    match args.iter().position(|a| a == name) {
        Some(i) => {
            args.remove(i);
            true
        }
        None => false,
    }
}

/// Where requests go: a `spook-client` on the node's local control socket, or on nodes of
/// the domain over zenoh (with failover), made at the first request.
struct Conn {
    rt: tokio::runtime::Runtime,
    local: PathBuf,
    remote: Option<spook_client::RemoteOptions>,
    client: Option<spook_client::Client>,
}

impl Conn {
    fn client(&mut self) -> Result<spook_client::Client> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c = match self.remote.take() {
            Some(o) => self.rt.block_on(spook_client::Client::remote(o))?,
            None => self.rt.block_on(spook_client::Client::local(&self.local))?,
        };
        self.client = Some(c.clone());
        Ok(c)
    }

    fn request(&mut self, r: &Request) -> Result<Json> {
        let c = self.client()?;
        Ok(self.rt.block_on(c.call(r))?)
    }

    /// `r` on the running node; when no node runs (its socket cannot be reached), `offline`
    /// does the same on the node's ledger file instead.
    fn request_or_offline(&mut self, r: &Request, offline: impl FnOnce() -> Result<Json>) -> Result<Json> {
        match self.request(r) {
            Err(e) if matches!(e.downcast_ref::<spook_client::Error>(), Some(spook_client::Error::Unreachable { .. })) => offline(),
            answer => answer,
        }
    }
}

/// A value as the CLI prints it.
fn fields_json(f: &spook_client::Fields) -> Json {
    Json::Object(f.iter().map(|(k, v)| (k.clone(), spook_node::values::to_json(v))).collect())
}

/// The lines of the help about `cmd` (each command's entry and its continuation lines), or the
/// whole help for a command it does not name.
fn command_help(cmd: &str) -> String {
    let mut out = Vec::new();
    let mut inside = false;
    for line in HELP.lines() {
        let entry = line.strip_prefix("    ").filter(|l| !l.starts_with(' '));
        if let Some(e) = entry {
            inside = e.split_whitespace().next() == Some(cmd);
        } else if !line.starts_with("     ") {
            inside = false;
        }
        if inside {
            out.push(line);
        }
    }
    if out.is_empty() {
        return HELP.to_string();
    }
    format!("usage:\n{}\n\n(`spook --help` for every command and the global options)", out.join("\n"))
}

/// A name as the terminal should show it: control characters escaped, never interpreted.
fn printable(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let o = parse_args()?;
    if o.help {
        match o.rest.first() {
            Some(cmd) => println!("{}", command_help(cmd)),
            None => println!("{HELP}"),
        }
        return Ok(());
    }
    let cfg = spook_node::Config::load(o.config.as_deref())?;
    let sock = cfg.node.control.clone();
    // Only the commands that need a client key look for one (HOME may be unset under a
    // service manager).
    let key_path = || client_key_path(o.client_key.as_deref());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let remote = if o.connect.is_empty() {
        None
    } else {
        anyhow::ensure!(!o.node.is_empty(), "--connect needs --node ID: the node to attach to (`spook id` on it)");
        let me = spook_client::identity::load_or_create(&key_path()?)?;
        let mut opts = spook_client::RemoteOptions::new(me, o.domain.as_deref().unwrap_or(&cfg.node.domain));
        for n in &o.node {
            opts = opts.node(n.parse().map_err(|e| anyhow!("--node {n}: {e}"))?);
        }
        opts.connect.clone_from(&o.connect);
        opts.domain_key = o.domain_key.as_deref().map(spook_node::domain_key::DomainKey::from_token).transpose()?;
        Some(opts)
    };
    let mut conn = Conn { rt, local: sock.clone(), remote, client: None };
    let mut args = o.rest.clone();
    if args.is_empty() {
        eprintln!("usage: spook [--config FILE] <command> ...   (`spook --help` lists the commands)");
        std::process::exit(2);
    }
    let cmd = args.remove(0);
    let show = |j: &Json, human: &dyn Fn(&Json) -> String| {
        let line = if o.json { j.to_string() } else { human(j) };
        // A reader that went away (`spook watch | head`) ends the command quietly.
        if writeln!(std::io::stdout(), "{line}").is_err() {
            std::process::exit(0);
        }
    };
    match cmd.as_str() {
        "client-id" => {
            let id = spook_client::identity::load_or_create(&key_path()?)?.id().to_string();
            show(&json!({"ok": true, "client": id}), &|j| j["client"].as_str().unwrap_or_default().to_string());
        }
        "init" | "id" => {
            // `--domain-key` (or $SPOOK_DOMAIN_KEY) is a global option: with init, the domain
            // this node joins.
            let join = if cmd == "init" { o.domain_key.as_deref().map(spook_node::domain_key::DomainKey::from_token).transpose()? } else { None };
            let j = match conn.request(&Request::Id) {
                Ok(j) => {
                    if let Some(k) = &join {
                        conn.request(&Request::DomainKey { set: Some(k.token()) })?;
                    }
                    j
                }
                Err(_) => {
                    let mut l = spook_ledger::Ledger::open(&cfg.node.ledger)?;
                    let existed = l.identity()?.is_some();
                    if cmd == "id" && !existed {
                        bail!("{} has no identity yet: run `spook init`", cfg.node.ledger.display());
                    }
                    let id = spook_node::node::ensure_identity(&mut l)?;
                    if cmd == "init" {
                        // A new domain's key, unless this node joins one (or has one already).
                        match join {
                            Some(k) => l.set_domain_key(&k.to_bytes())?,
                            None if l.domain_key()?.is_none() => l.set_domain_key(&spook_node::domain_key::DomainKey::generate(1).to_bytes())?,
                            None => {}
                        }
                    }
                    json!({"ok": true, "id": id.id().to_string(), "created": !existed})
                }
            };
            show(&j, &|j| j["id"].as_str().unwrap_or_default().to_string());
        }
        "domain-key" => {
            let new = take_flag(&mut args, "--new");
            let zenoh_lines = take_flag(&mut args, "--zenoh");
            let set = match (take_opt(&mut args, "--set")?, new) {
                (Some(_), true) => bail!("usage: spook domain-key [--set TOKEN | --new]"),
                (Some(t), false) => Some(spook_node::domain_key::DomainKey::from_token(&t)?),
                (None, true) => Some(spook_node::domain_key::DomainKey::generate(1)),
                (None, false) => None,
            };
            let r = Request::DomainKey { set: set.as_ref().map(spook_node::domain_key::DomainKey::token) };
            let j = conn.request_or_offline(&r, || {
                let mut l = spook_ledger::Ledger::open(&cfg.node.ledger)?;
                if let Some(k) = &set {
                    l.set_domain_key(&k.to_bytes())?;
                }
                let k = l.domain_key()?.ok_or_else(|| anyhow!("{} has no domain key: `spook domain-key --new` makes one", cfg.node.ledger.display()))?;
                let k = spook_node::domain_key::DomainKey::from_bytes(&k)?;
                Ok(json!({"ok": true, "token": k.token(), "generation": k.generation}))
            })?;
            if zenoh_lines {
                // For a zenohd router of the domain: its dictionary line and its own settings.
                let k = spook_node::domain_key::DomainKey::from_token(j["token"].as_str().unwrap_or_default())?;
                println!("# dictionary file line (transport/auth/usrpwd/dictionary_file):\n{}:{}", k.user(), k.password());
                println!("# transport/auth/usrpwd: user = {:?}, password = {:?}", k.user(), k.password());
                return Ok(());
            }
            show(&j, &|j| j["token"].as_str().unwrap_or_default().to_string());
        }
        "allow" => {
            let name = take_opt(&mut args, "--name")?.unwrap_or_default();
            let peer = args.first().ok_or_else(|| anyhow!("usage: spook allow <endpoint-id> [--name N]"))?.clone();
            let r = Request::Allow { peer: peer.clone(), name: name.clone() };
            let j = conn.request_or_offline(&r, || {
                let id = peer.parse().map_err(|e| anyhow!("{e}"))?;
                let mut l = spook_ledger::Ledger::open(&cfg.node.ledger)?;
                spook_node::node::allow_in_ledger(&mut l, id, &name)?;
                Ok(json!({"ok": true, "allowed": peer}))
            })?;
            show(&j, &|j| format!("allowed {}", j["allowed"].as_str().unwrap_or_default()));
        }
        "disallow" => {
            let peer = args.first().ok_or_else(|| anyhow!("usage: spook disallow <endpoint-id>"))?.clone();
            let j = conn.request_or_offline(&Request::Disallow { peer: peer.clone() }, || {
                let id: spook_core::EndpointId = peer.parse().map_err(|e| anyhow!("{e}"))?;
                let mut l = spook_ledger::Ledger::open(&cfg.node.ledger)?;
                let was = l.remove_peer(&id)?;
                Ok(json!({"ok": true, "disallowed": peer, "was_allowed": was, "groups_rekeyed": []}))
            })?;
            show(&j, &|j| {
                let id = j["disallowed"].as_str().unwrap_or_default();
                if j["was_allowed"] == false {
                    return format!("{id} was not on the allow-list");
                }
                let groups: Vec<&str> = j["groups_rekeyed"].as_array().map(|g| g.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
                if groups.is_empty() {
                    format!("disallowed {id}")
                } else {
                    format!("disallowed {id}; new sender keys in {}", groups.join(", "))
                }
            });
        }
        "up" => {
            spook_node::daemon::init_logging(&cfg.node.log);
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(spook_node::daemon::run(cfg))?;
        }
        "status" => {
            let follow = take_flag(&mut args, "--follow");
            let j = conn.request(&Request::Status)?;
            show(&j, &human_status);
            // Redraw every second (re-alignment progress, bytes) until Ctrl-C or the node stops.
            if !follow {
                return Ok(());
            }
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                let j = conn.request(&Request::Status)?;
                if !o.json {
                    print!("\x1b[2J\x1b[H");
                }
                show(&j, &human_status);
            }
        }
        "group" => {
            let sub = if args.is_empty() { String::new() } else { args.remove(0) };
            match sub.as_str() {
                "create" => {
                    let serial = take_flag(&mut args, "--serial");
                    let trusted_members = take_flag(&mut args, "--trusted-members");
                    let mut members = Vec::new();
                    while let Some(m) = take_opt(&mut args, "--member")? {
                        members.push(m);
                    }
                    let schema = match take_opt(&mut args, "--schema")? {
                        Some(f) => {
                            let text = std::fs::read_to_string(&f).with_context(|| format!("--schema {f}"))?;
                            Some(spook_client::schema::from_toml(&text).with_context(|| format!("--schema {f}"))?)
                        }
                        None => None,
                    };
                    let name = args.first().ok_or_else(|| anyhow!("usage: spook group create <name> [--member ID]... [--serial] [--trusted-members] [--schema FILE]"))?.clone();
                    let kind = Some(if serial { "serial" } else { "convergent" }.to_string());
                    let j = conn.request(&Request::GroupCreate { name, members, kind, trusted_members, schema })?;
                    // The invite alone on stdout (INVITE=$(spook group create ...)); the advice
                    // on stderr.
                    if !o.json {
                        eprintln!(
                            "group {} created ({}); on each other member run:\n  spook -c <that node's config> group join {}",
                            j["group"].as_str().unwrap_or_default(),
                            j["id"].as_str().unwrap_or_default(),
                            j["invite"].as_str().unwrap_or_default()
                        );
                    }
                    show(&j, &|j| j["invite"].as_str().unwrap_or_default().to_string());
                }
                "join" => {
                    let name = take_opt(&mut args, "--name")?;
                    let invite = args.first().ok_or_else(|| anyhow!("usage: spook group join <invite> [--name N]"))?.clone();
                    let j = conn.request(&Request::GroupJoin { invite, name })?;
                    show(&j, &|j| format!("joined group {}", j["group"].as_str().unwrap_or_default()));
                }
                "leave" => {
                    let group = args.first().ok_or_else(|| anyhow!("usage: spook group leave <name>"))?.clone();
                    let j = conn.request(&Request::GroupLeave { group })?;
                    show(&j, &|j| format!("left {}", j["left"].as_str().unwrap_or_default()));
                }
                "remove" => {
                    let [group, member] = <[String; 2]>::try_from(args).map_err(|_| anyhow!("usage: spook group remove <name> <member-id>"))?;
                    let j = conn.request(&Request::GroupRemove { group, member })?;
                    show(&j, &|j| format!("removed {} from {} (write {})", j["removed"].as_str().unwrap_or_default(), j["group"].as_str().unwrap_or_default(), j["seq"]));
                }
                "list" => {
                    let j = conn.request(&Request::GroupList)?;
                    show(&j, &|j| {
                        let gs = j["groups"].as_array().cloned().unwrap_or_default();
                        if gs.is_empty() {
                            return "no groups (spook group create <name>)".into();
                        }
                        let members = |g: &Json| match g["members"].as_array().map_or(0, Vec::len) {
                            1 => "1 member ".to_string(),
                            n => format!("{n} members"),
                        };
                        gs.iter().map(|g| format!("{:<16} {:<11} {}  {}{}", printable(g["name"].as_str().unwrap_or_default()), g["kind"].as_str().unwrap_or_default(), members(g), g["id"].as_str().unwrap_or_default(), if g["trusted_members"] == true { "  trusted-members (unsigned frames)" } else { "" })).collect::<Vec<_>>().join("\n")
                    });
                }
                _ => bail!("usage: spook group create|join|leave|remove|list ..."),
            }
        }
        "set" => {
            if args.len() != 4 {
                bail!("usage: spook set <group> <register> <field> <json>   e.g. spook set fleet 7 battery 0.82");
            }
            // A number is a register id, anything else a name (resolved by the group's schema).
            let register: spook_client::Reg = args[1].parse()?;
            let value: Json = serde_json::from_str(&args[3]).with_context(|| format!("value {:?} is not JSON (strings need quotes: '\"text\"')", args[3]))?;
            let j = conn.request(&Request::Set { group: args[0].clone(), register, field: args[2].clone(), value, typed: false })?;
            show(&j, &|j| format!("written (seq {})", j["seq"]));
        }
        "write" => {
            if args.len() < 4 || args.len() % 2 != 0 {
                bail!("usage: spook write <group> <register> <field> <json> [<field> <json>]...   e.g. spook write fleet 7 battery 0.8 owner '\"drone-7\"'");
            }
            let register: spook_client::Reg = args[1].parse()?;
            let set = args[2..]
                .chunks(2)
                .map(|p| {
                    let value: Json = serde_json::from_str(&p[1]).with_context(|| format!("value {:?} of {} is not JSON (strings need quotes: '\"text\"')", p[1], p[0]))?;
                    Ok(spook_client::proto::FieldWrite { register: register.clone(), field: p[0].clone(), value })
                })
                .collect::<Result<Vec<_>>>()?;
            let j = conn.request(&Request::Write { group: args[0].clone(), set, typed: false })?;
            show(&j, &|j| format!("written as one delta (seq {})", j["seq"]));
        }
        "get" => {
            let committed = take_flag(&mut args, "--committed");
            let serial = take_flag(&mut args, "--serial");
            if args.len() < 2 || (serial && args.len() > 2) {
                bail!("usage: spook get <group> <register> [field] [--committed | --serial]");
            }
            let register: spook_client::Reg = args[1].parse()?;
            let view = Some(if serial { "serial" } else if committed { "committed" } else { "pending" }.to_string());
            let j = conn.request(&Request::Get { group: args[0].clone(), register, field: args.get(2).cloned(), view, typed: false })?;
            show(&j, &|j| if j.get("field").is_some() { j["value"].to_string() } else { serde_json::to_string_pretty(&j["fields"]).unwrap_or_default() });
            if !o.json && j["fields"].as_object().is_some_and(serde_json::Map::is_empty) {
                eprintln!("(nothing written to register {} in this view: a serial group keeps transactions' cells under --serial, and a node that just joined may still be re-aligning; `spook status` shows its progress)", args[1]);
            }
        }
        "tx" => {
            let lease = take_opt(&mut args, "--lease-ms")?.map(|v| v.parse::<u64>()).transpose().context("--lease-ms needs a number")?;
            let mut conditions = Vec::new();
            while let Some(c) = take_opt(&mut args, "--if")? {
                conditions.push(spook_client::proto::parse_condition(&c).map_err(|e| anyhow!(e))?);
            }
            let mut set = Vec::new();
            while let Some(w) = take_opt(&mut args, "--set")? {
                set.push(spook_client::proto::parse_set(&w, lease).map_err(|e| anyhow!(e))?);
            }
            let mut after = Vec::new();
            while let Some(a) = take_opt(&mut args, "--after")? {
                after.push(a.parse::<u64>().with_context(|| format!("--after {a:?} is not a seq"))?);
            }
            let timeout_ms = take_opt(&mut args, "--timeout-ms")?.map(|v| v.parse::<u64>()).transpose().context("--timeout-ms needs a number")?;
            let seq = match take_opt(&mut args, "--seq")? {
                Some(v) => v.parse::<u64>().with_context(|| format!("--seq {v:?} is not a number"))?,
                None => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64),
            };
            let client = client_id(&mut args, &key_path()?)?;
            let wait = !take_flag(&mut args, "--no-wait");
            let group = match args.as_slice() {
                [g] => g.clone(),
                _ => bail!("usage: spook tx <group> --set 'REG.FIELD JSON'... [--if 'COND']... (see spook --help)"),
            };
            let j = conn.request(&Request::Tx { group, client, seq, conditions, set, after, timeout_ms, wait, typed: false })?;
            show(&j, &|j| match j["state"].as_str().unwrap_or_default() {
                "committed" => format!("committed (op {}, fence {}){}", j["seq"], j["fence"], if j["resent"] == json!(true) { ", already executed before" } else { "" }),
                "aborted" => format!("aborted (op {}): {}", j["seq"], j["reason"].as_str().unwrap_or_default()),
                "pending" => format!("submitted (op {}); its outcome: spook session {}", j["seq"], args[0]),
                other => format!("{other} (op {}): {}", j["seq"], j["note"].as_str().unwrap_or_default()),
            });
            if !matches!(j["state"].as_str(), Some("committed" | "pending")) {
                std::process::exit(3);
            }
        }
        "schema" => {
            let group = args.first().ok_or_else(|| anyhow!("usage: spook schema <group>"))?.clone();
            let j = conn.request(&Request::Schema { group })?;
            show(&j, &|j| {
                let s: spook_core::Schema = serde_json::from_value(j["schema"].clone()).unwrap_or_default();
                let mut out = format!("schema version {} (hash {})\n", s.version, j["hash"].as_str().unwrap_or_default());
                for f in &s.fields {
                    out += &format!("  {:<24} {:<8} {:?}\n", f.name, format!("{:?}", f.kind), f.policy);
                }
                for (id, n) in &s.registers {
                    out += &format!("  register {n} = {}\n", id.0);
                }
                out.trim_end().to_string()
            });
        }
        "reconnect" => {
            let j = conn.request(&Request::Reconnect)?;
            show(&j, &|j| format!("dropping zenoh session {} and opening a fresh one", j["zid"].as_str().unwrap_or_default()));
        }
        "session" => {
            let client = client_id(&mut args, &key_path()?)?;
            let group = args.first().ok_or_else(|| anyhow!("usage: spook session <group> [--client ID]"))?.clone();
            let j = conn.request(&Request::Session { group, client })?;
            show(&j, &|j| {
                let mut s = format!("client {}  next seq {}\n", j["client"].as_str().unwrap_or_default(), j["next_seq"]);
                for op in j["ops"].as_array().cloned().unwrap_or_default() {
                    s += &format!("  op {:<18} {} {}\n", op["seq"], op["state"].as_str().unwrap_or_default(), op["reason"].as_str().unwrap_or_default());
                }
                s
            });
        }
        "watch" => {
            let committed = take_flag(&mut args, "--committed");
            let snapshot = take_flag(&mut args, "--snapshot");
            let group = args.first().ok_or_else(|| anyhow!("usage: spook watch <group> [--committed] [--snapshot]"))?.clone();
            let view = if committed { spook_core::View::Committed } else { spook_core::View::Pending };
            // Over zenoh, when its node stops answering the watch goes on through the next
            // node that does, showing there the registers that changed meanwhile.
            let client = conn.client()?;
            conn.rt.block_on(async {
                let mut w = client.group(&group).watch_with(spook_client::WatchOptions { view, snapshot }).await?;
                while let Some(ev) = w.next().await {
                    match ev? {
                        spook_client::Event::Change(c) => {
                            let view = if c.view == spook_core::View::Committed { "committed" } else { "pending" };
                            let mut j = json!({"group": group, "view": view, "register": c.register, "fields": fields_json(&c.fields)});
                            if c.snapshot {
                                j["snapshot"] = json!(true);
                            }
                            let now = if c.snapshot { " (current)" } else { "" };
                            show(&j, &|j| format!("{view} register {}{now}: {}", j["register"], j["fields"]));
                        }
                        spook_client::Event::Lagged(n) => eprintln!("spook watch: {n} events went by while this terminal was behind; the registers that changed follow"),
                        _ => {}
                    }
                }
                anyhow::Ok(())
            })?;
            bail!("the watch ended");
        }
        "pair" => {
            if let Some(code) = take_opt(&mut args, "--confirm")? {
                let j = conn.request(&Request::PairConfirm { code })?;
                show(&j, &|j| format!("paired: {} ({}) is on the allow-list", j["allowed"].as_str().unwrap_or_default(), j["name"].as_str().unwrap_or_default()));
                return Ok(());
            }
            let seconds = take_opt(&mut args, "--seconds")?.map(|v| v.parse::<u64>()).transpose().context("--seconds needs a number")?;
            let name = take_opt(&mut args, "--name")?.unwrap_or_default();
            let j = conn.request(&Request::PairOpen { name, seconds })?;
            if !o.json {
                println!("pairing window open for {} s: run `spook pair` on the other node too (same domain)", j["seconds"]);
            }
            let code = loop {
                std::thread::sleep(std::time::Duration::from_millis(200));
                let st = conn.request(&Request::PairStatus)?;
                if let Some(c) = st["code"].as_str() {
                    break c.to_string();
                }
                if st["open"] != json!(true) {
                    bail!("the pairing window closed before another node answered");
                }
            };
            use std::io::IsTerminal;
            if o.json || !std::io::stdin().is_terminal() {
                show(&json!({"ok": true, "code": code}), &|j| format!("code {}: compare with the other node, then run `spook pair --confirm <the other node's code>`", j["code"].as_str().unwrap_or_default()));
                return Ok(());
            }
            println!("this node shows the code:  {code}");
            print!("type the code the OTHER node shows (a different code means someone is in the middle): ");
            std::io::stdout().flush()?;
            let mut typed = String::new();
            std::io::stdin().read_line(&mut typed)?;
            let j = conn.request(&Request::PairConfirm { code: typed.trim().to_string() })?;
            println!("paired: {} ({}) is on the allow-list", j["allowed"].as_str().unwrap_or_default(), j["name"].as_str().unwrap_or_default());
        }
        "bench" => {
            let client_modes = take_flag(&mut args, "--client");
            let mut b = spook_node::bench::BenchConfig::default();
            if take_flag(&mut args, "--quick") {
                b = spook_node::bench::BenchConfig { latency_samples: 50, throughput_batches: 200, watchers: 3, stream_secs: 2 };
            }
            if let Some(v) = take_opt(&mut args, "--samples")? {
                b.latency_samples = v.parse().context("--samples needs a number")?;
            }
            if let Some(v) = take_opt(&mut args, "--batches")? {
                b.throughput_batches = v.parse().context("--batches needs a number")?;
            }
            if let Some(v) = take_opt(&mut args, "--watchers")? {
                b.watchers = v.parse().context("--watchers needs a number")?;
            }
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            if client_modes {
                let quick = b.latency_samples < 100;
                rt.block_on(spook_node::bench::client_modes(if quick { 30 } else { b.latency_samples }, if quick { 160 } else { b.throughput_batches }))?;
                return Ok(());
            }
            rt.block_on(spook_node::bench::run(b))?;
        }
        "demo" => {
            let nodes: usize = take_opt(&mut args, "--nodes")?.map_or(Ok(3), |v| v.parse()).context("--nodes")?;
            let seconds: u64 = take_opt(&mut args, "--seconds")?.map_or(Ok(20), |v| v.parse()).context("--seconds")?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(spook_node::demo::run(nodes.clamp(2, 16), seconds))?;
        }
        other => bail!("unknown command {other:?}: `spook --help` lists the commands"),
    }
    Ok(())
}

fn human_status(j: &Json) -> String {
    let mut s = format!("node {}  domain {}\n", j["id"].as_str().unwrap_or_default(), j["domain"].as_str().unwrap_or_default());
    s += &format!("bytes in {}  out {}\n", j["bytes_in"], j["bytes_out"]);
    if let Some(r) = j["rejected"].as_object() {
        if !r.is_empty() {
            s += &format!("rejected: {}\n", r.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "));
        }
    }
    for g in j["groups"].as_array().cloned().unwrap_or_default() {
        s += &format!(
            "\ngroup {} ({}), state {} committed {} (the state hash covers the pending view and the deltas held, the committed hash the committed values only: they differ with nothing pending), frontier {} ms, {} pending, {} re-alignments, {} decohered\n",
            g["name"].as_str().unwrap_or_default(),
            g["kind"].as_str().unwrap_or_default(),
            g["state_hash"].as_str().unwrap_or_default().get(..12).unwrap_or_default(),
            g["committed_hash"].as_str().unwrap_or_default().get(..12).unwrap_or_default(),
            g["frontier_ms"],
            g["pending_candidates"],
            g["states_applied"],
            g["decohered"],
        );
        for m in g["members"].as_array().cloned().unwrap_or_default() {
            let id = m["id"].as_str().unwrap_or_default();
            let tag = if m["me"].as_bool() == Some(true) { "me" } else if m["paired"].as_bool() == Some(true) { "paired" } else { "no channel" };
            s += &format!("  {}…  seq {:<8} {tag}\n", id.get(..12).unwrap_or(id), m["seq"]);
        }
        if let Some(bar) = realign_bar(&g) {
            s += &format!("  re-aligning {bar}\n");
        }
        if let Some(e) = g["ledger_error"].as_str() {
            s += &format!("  LEDGER: {e}\n");
        }
    }
    s
}

/// The client id for `tx` and `session`: `--client ID`, or the client key file's.
fn client_id(args: &mut Vec<String>, key_path: &std::path::Path) -> Result<String> {
    if let Some(c) = take_opt(args, "--client")? {
        return Ok(c);
    }
    Ok(spook_client::identity::load_or_create(key_path)?.id().to_string())
}

/// The client key file: `--client-key`, `$SPOOK_CLIENT_KEY`, or ~/.config/spook/client.key.
fn client_key_path(given: Option<&str>) -> Result<PathBuf> {
    match given.map(str::to_string).or_else(|| std::env::var("SPOOK_CLIENT_KEY").ok()) {
        Some(p) => Ok(PathBuf::from(p)),
        None => Ok(PathBuf::from(std::env::var("HOME").context("HOME is not set: give --client-key FILE")?).join(".config/spook/client.key")),
    }
}

/// A progress bar over the deltas other members announced that this node does not hold yet.
fn realign_bar(g: &Json) -> Option<String> {
    let (mut held, mut announced) = (0u64, 0u64);
    for m in g["members"].as_array()? {
        if let Some(a) = m["announced_seq"].as_u64() {
            held += m["seq"].as_u64().unwrap_or(0).min(a);
            announced += a;
        }
    }
    if held >= announced {
        return None;
    }
    let width = 30;
    let done = usize::try_from(held * width / announced.max(1)).unwrap_or(0);
    Some(format!("[{}{}] {:>3}%  {held} of {announced} deltas", "#".repeat(done), "-".repeat(30 - done), held * 100 / announced.max(1)))
}
