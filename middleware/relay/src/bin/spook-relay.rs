//! `spook-relay`: the command line over [`spook_relay::Relay`]. Parses its arguments by
//! hand (the crate depends on std alone), prints one startup line, then relays until killed.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;
use std::{env, thread};

use spook_relay::{Impairment, Relay};

const USAGE: &str = "usage: spook-relay --listen ADDR --to ADDR [--loss PCT] [--dup PCT] [--delay-ms N] [--jitter-ms N] [--seed N] [--stats-every-ms N]";

const HELP: &str = "\
A user-space UDP relay that drops, duplicates, delays and reorders datagrams, for tests and
benchmarks on kernels without the netem qdisc.

Each client source address gets its own socket on the --listen IP towards --to; what --to
sends back to that socket returns to the client from --listen. The impairment applies in
both directions, each with its own schedule derived from the seed.

Options (ADDR is IP:PORT; a value may also be given as --option=VALUE):
  --listen ADDR         where clients send to; port 0 picks a free port (required)
  --to ADDR             the upstream to forward to (required)
  --loss PCT            percent of datagrams dropped, 0 to 100 [default: 0]
  --dup PCT             percent of surviving datagrams sent twice, 0 to 100 [default: 0]
  --delay-ms N          base one-way delay in milliseconds [default: 0]
  --jitter-ms N         each copy's delay is uniform in [delay-N, delay+N] ms, clamped at 0;
                        jitter is what reorders datagrams [default: 0]
  --seed N              seed of the impairment schedules; equal seeds give equal loss,
                        duplicate and delay patterns per client [default: 0]
  --stats-every-ms N    print a `spook-relay: stats ...` line every N ms, 0 for never
                        [default: 0]
  -h, --help            print this help
  -V, --version         print the version

At start it prints `spook-relay: listening on ADDR -> ADDR (loss X%, dup Y%, delay A±B ms,
seed S)` with the bound address, then runs until killed. Exit status 2 on bad arguments,
1 if the relay cannot start.";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Command {
    Run(Options),
    Help,
    Version,
}

#[derive(Debug, PartialEq)]
struct Options {
    listen: SocketAddr,
    to: SocketAddr,
    imp: Impairment,
    stats_every_ms: u64,
}

fn main() -> ExitCode {
    let args: Vec<String> = match env::args_os().skip(1).map(|a| a.into_string()).collect() {
        Ok(args) => args,
        Err(bad) => return usage_error(&format!("argument {bad:?} is not UTF-8")),
    };
    let options = match parse(&args) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            println!("{USAGE}\n\n{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("spook-relay {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => return usage_error(&message),
    };
    let relay = match Relay::spawn(options.listen, options.to, options.imp) {
        Ok(relay) => relay,
        Err(e) => {
            eprintln!("spook-relay: cannot relay {} -> {}: {e}", options.listen, options.to);
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    // Tests wait for this line: flush it at once. A closed stdout is no reason to stop.
    let _ = writeln!(stdout, "spook-relay: listening on {} -> {} ({})", relay.local_addr(), relay.upstream(), options.imp);
    let _ = stdout.flush();
    loop {
        if options.stats_every_ms == 0 {
            thread::park();
            continue;
        }
        thread::sleep(Duration::from_millis(options.stats_every_ms));
        let _ = writeln!(stdout, "spook-relay: stats {}", relay.stats());
        let _ = stdout.flush();
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("spook-relay: {message}\n{USAGE}\nTry 'spook-relay --help' for more.");
    ExitCode::from(2)
}

fn parse(args: &[String]) -> Result<Command, String> {
    let mut listen = None;
    let mut to = None;
    let mut imp = Impairment::default();
    let mut stats_every_ms = 0;
    let mut seen: Vec<String> = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            _ => {}
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        if !matches!(name, "--listen" | "--to" | "--loss" | "--dup" | "--delay-ms" | "--jitter-ms" | "--seed" | "--stats-every-ms") {
            return Err(format!("unknown argument '{arg}'"));
        }
        if seen.iter().any(|s| s == name) {
            return Err(format!("{name} given twice"));
        }
        seen.push(name.to_owned());
        let value = match inline {
            Some(value) => value,
            None => rest.next().cloned().ok_or_else(|| format!("{name} needs a value"))?,
        };
        match name {
            "--listen" => listen = Some(parse_value::<SocketAddr>(name, &value, "an IP:PORT address")?),
            "--to" => to = Some(parse_value::<SocketAddr>(name, &value, "an IP:PORT address")?),
            "--loss" => imp.loss_pct = parse_pct(name, &value)?,
            "--dup" => imp.dup_pct = parse_pct(name, &value)?,
            "--delay-ms" => imp.delay_ms = parse_value(name, &value, "a whole number of milliseconds")?,
            "--jitter-ms" => imp.jitter_ms = parse_value(name, &value, "a whole number of milliseconds")?,
            "--seed" => imp.seed = parse_value(name, &value, "an unsigned 64-bit integer")?,
            _ => stats_every_ms = parse_value(name, &value, "a whole number of milliseconds")?,
        }
    }
    let listen = listen.ok_or("--listen ADDR is required")?;
    let to = to.ok_or("--to ADDR is required")?;
    imp.validate().map_err(|e| e.to_string())?;
    Ok(Command::Run(Options { listen, to, imp, stats_every_ms }))
}

fn parse_value<T: FromStr>(name: &str, value: &str, expected: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("{name} '{value}': expected {expected}"))
}

/// A percentage, with or without a trailing `%`; the range is checked by
/// [`Impairment::validate`].
fn parse_pct(name: &str, value: &str) -> Result<f64, String> {
    let number: f64 = parse_value(name, value.strip_suffix('%').unwrap_or(value), "a percentage")?;
    if number.is_finite() {
        Ok(number)
    } else {
        Err(format!("{name} '{value}': expected a percentage"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on purpose
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_everything_in_both_spellings() {
        let parsed = parse(&args(
            "--listen 127.0.0.1:0 --to=127.0.0.1:9000 --loss 10% --dup=5 --delay-ms 20 --jitter-ms=15 --seed 42 --stats-every-ms 1000",
        ));
        let expected = Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            to: "127.0.0.1:9000".parse().unwrap(),
            imp: Impairment { loss_pct: 10.0, dup_pct: 5.0, delay_ms: 20, jitter_ms: 15, seed: 42 },
            stats_every_ms: 1000,
        };
        assert_eq!(parsed, Ok(Command::Run(expected)));
    }

    #[test]
    fn defaults_impair_nothing() {
        let Ok(Command::Run(options)) = parse(&args("--to 127.0.0.1:2 --listen 127.0.0.1:1")) else { panic!() };
        assert_eq!(options.imp, Impairment::default());
        assert_eq!(options.stats_every_ms, 0);
    }

    #[test]
    fn help_and_version_win() {
        assert_eq!(parse(&args("--loss 500 --help")), Ok(Command::Help));
        assert_eq!(parse(&args("-h")), Ok(Command::Help));
        assert_eq!(parse(&args("-V")), Ok(Command::Version));
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        let base = "--listen 127.0.0.1:1 --to 127.0.0.1:2";
        let cases = [
            ("", "--listen ADDR is required"),
            ("--listen 127.0.0.1:1", "--to ADDR is required"),
            ("--listen localhost:1 --to 127.0.0.1:2", "--listen 'localhost:1': expected an IP:PORT address"),
            (&format!("{base} --loss"), "--loss needs a value"),
            (&format!("{base} --loss 101"), "loss percentage 101 is outside 0..=100"),
            (&format!("{base} --dup -1"), "duplicate percentage -1 is outside 0..=100"),
            (&format!("{base} --dup NaN"), "--dup 'NaN': expected a percentage"),
            (&format!("{base} --delay-ms -5"), "--delay-ms '-5': expected a whole number of milliseconds"),
            (&format!("{base} --delay-ms 600000 --jitter-ms 1"), "delay 600000 ms + jitter 1 ms exceeds the maximum of 600000 ms"),
            (&format!("{base} --seed x"), "--seed 'x': expected an unsigned 64-bit integer"),
            (&format!("{base} --to 127.0.0.1:3"), "--to given twice"),
            (&format!("{base} --lose 5"), "unknown argument '--lose'"),
            (&format!("{base} extra"), "unknown argument 'extra'"),
        ];
        for (line, message) in cases {
            assert_eq!(parse(&args(line)), Err(message.to_owned()), "for '{line}'");
        }
    }
}
