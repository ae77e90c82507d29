//! Run only the Spook side of the comparison (for profiling): `spook_only [seed] [rounds]`.

use spook_bench::spook_side::run_spook;
use spook_bench::workload::Workload;

fn main() {
    let mut args = std::env::args().skip(1);
    let seed = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    for _ in 0..rounds {
        let (r, x) = run_spook(&Workload::scenario_a(seed));
        println!("{r:?} {x:?}");
    }
}
