//! The foundation benchmark table: Spook against yrs, automerge, loro and a full-message
//! ROS 2 stream, on one seeded workload, in one run. Prints ratios against the best CRDT.
//!
//! `cargo run --release -p spook-bench --example compare [seed]`

use spook_bench::baselines::{run_automerge, run_loro, run_posestamped, run_yrs, BaselineResult};
use spook_bench::spook_side::{run_spook, ENVELOPE_BYTES};
use spook_bench::workload::Workload;

fn row(scenario: &str, r: &BaselineResult) {
    println!(
        "| {scenario} | {} | {:.1} | {:.0} | {:.0} | {} |",
        r.system, r.bytes_per_update, r.local_write_ns, r.remote_apply_ops_per_s, r.heal_bytes
    );
}

fn main() {
    let seed = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    println!("seed {seed}; 1,000 entities x 8 f64 fields, 20,000 single-field updates each shipped alone\n");
    println!("| scenario | system | bytes/update | local write ns | remote apply ops/s | heal bytes |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for (name, w) in [("a: 500 random/side", Workload::scenario_a(seed)), ("b: 5,000/side on 10 entities", Workload::scenario_b(seed))] {
        eprintln!("running scenario {name} ...");
        let (spook, x) = run_spook(&w);
        let others = [run_yrs(&w), run_automerge(&w), run_loro(&w), run_posestamped(&w)];
        row(name, &spook);
        for o in &others {
            row(name, o);
        }
        let best_crdt = others[..3].iter().min_by_key(|o| o.heal_bytes).map_or(1, |o| o.heal_bytes);
        let best_name = others[..3].iter().min_by_key(|o| o.heal_bytes).map_or("?", |o| o.system);
        let best_bpu = others[..3].iter().map(|o| o.bytes_per_update).fold(f64::INFINITY, f64::min);
        let best_apply = others[..3].iter().map(|o| o.remote_apply_ops_per_s).fold(0.0, f64::max);
        println!(
            "\n{name}: spook heal {} B in {} frames ({} fields diverged) = {:.2}x the best CRDT ({best_name}, {best_crdt} B); \
             bytes/update {:.2}x the best CRDT; remote apply {:.2}x the best CRDT; \
             single-update frame {:.1} B, batch of 10 {:.1} B/update, full wire with envelope+signature {:.1} B/update single, {:.1} B/update batched\n",
            spook.heal_bytes,
            x.heal_frames,
            x.diverged_fields,
            spook.heal_bytes as f64 / best_crdt as f64,
            spook.bytes_per_update / best_bpu,
            spook.remote_apply_ops_per_s / best_apply,
            x.single_update_frame,
            x.batch10_per_update,
            x.single_update_frame + ENVELOPE_BYTES as f64,
            x.batch10_per_update + ENVELOPE_BYTES as f64 / 10.0,
        );
    }
}
