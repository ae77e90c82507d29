//! Runs the four baselines on scenario A and scenario B (seed 1) and prints
//! a table. Run with `cargo run --release -p spook-bench --example baselines`.

use spook_bench::baselines::run_all;
use spook_bench::workload::Workload;

fn main() {
    let scenarios = [
        ("A (500/side, random)", Workload::scenario_a(1)),
        ("B (5000/side, 10 ent.)", Workload::scenario_b(1)),
    ];
    println!(
        "{:<22} {:<17} {:>10} {:>12} {:>14} {:>11}",
        "scenario", "system", "B/update", "write ns", "apply ops/s", "heal bytes"
    );
    for (name, w) in &scenarios {
        for r in run_all(w) {
            println!(
                "{:<22} {:<17} {:>10.1} {:>12.0} {:>14.0} {:>11}",
                name,
                r.system,
                r.bytes_per_update,
                r.local_write_ns,
                r.remote_apply_ops_per_s,
                r.heal_bytes
            );
        }
    }
}
