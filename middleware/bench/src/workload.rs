//! The shared workload: a fleet of entities, each with eight `f64` fields.
//!
//! Every system (Spook and each baseline) replays the same [`Workload`]:
//! the same initial values, the same stream of single-field updates and the
//! same two divergent update sets used to measure healing after a partition.
//! Everything is generated from a seed by a small SplitMix64 generator, so a
//! workload is reproducible byte for byte without a `rand` dependency.

/// One single-field write: `FIELDS[field]` of entity `entity` becomes `value`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Update {
    /// Entity number, `0..Workload::entities`.
    pub entity: u32,
    /// Field index into [`FIELDS`].
    pub field: u8,
    /// The new value.
    pub value: f64,
}

/// Number of entities in the full-size scenarios.
pub const ENTITIES: u32 = 1000;

/// The eight fields of every entity: a pose (position and orientation
/// quaternion) and a battery level.
pub const FIELDS: [&str; 8] = ["x", "y", "z", "qw", "qx", "qy", "qz", "battery"];

/// Number of single-field updates in the streamed part of a full-size workload.
pub const STREAM_UPDATES: usize = 20_000;

/// A complete, deterministic workload.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Seed the workload was generated from.
    pub seed: u64,
    /// Number of entities (`ENTITIES` for the full-size scenarios).
    pub entities: u32,
    /// Initial value of every field of every entity (`entities × 8` updates,
    /// entity-major, field-minor), shared by all replicas before the run.
    pub initial: Vec<Update>,
    /// Streamed single-field updates at random entities and fields.
    pub updates: Vec<Update>,
    /// Updates applied only at replica A while partitioned from B.
    pub side_a: Vec<Update>,
    /// Updates applied only at replica B while partitioned from A.
    pub side_b: Vec<Update>,
}

/// SplitMix64 (Steele, Lea and Flood 2014): tiny, fast and good enough for
/// picking entities, fields and values.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `0..n` (`n > 0`), by multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A uniform `f64` in `[0, 1)` with 53 random bits.
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A plausible full-precision value for `field`: positions in ±100 m,
/// quaternion components in ±1, battery in `[0, 1)`.
fn value_for(rng: &mut SplitMix64, field: u8) -> f64 {
    let u = rng.unit_f64();
    match field {
        0..=2 => u * 200.0 - 100.0,
        3..=6 => u * 2.0 - 1.0,
        _ => u,
    }
}

/// A random single-field update at an entity drawn from `entities`.
fn random_update(rng: &mut SplitMix64, entities: std::ops::Range<u32>) -> Update {
    let span = u64::from(entities.end - entities.start);
    let entity = entities.start + rng.below(span) as u32;
    let field = rng.below(FIELDS.len() as u64) as u8;
    let value = value_for(rng, field);
    Update {
        entity,
        field,
        value,
    }
}

impl Workload {
    /// Builds a workload. Each part has its own generator derived from
    /// `seed`, so changing one size does not reshuffle the others.
    fn build(
        seed: u64,
        entities: u32,
        stream: usize,
        per_side: usize,
        side_entities: std::ops::Range<u32>,
    ) -> Self {
        let mut rng = SplitMix64::new(seed ^ 0x1111_1111_1111_1111);
        let initial = (0..entities)
            .flat_map(|entity| (0..FIELDS.len() as u8).map(move |field| (entity, field)))
            .map(|(entity, field)| Update {
                entity,
                field,
                value: value_for(&mut rng, field),
            })
            .collect();
        let mut rng = SplitMix64::new(seed ^ 0x2222_2222_2222_2222);
        let updates = (0..stream)
            .map(|_| random_update(&mut rng, 0..entities))
            .collect();
        let mut rng = SplitMix64::new(seed ^ 0x3333_3333_3333_3333);
        let side_a = (0..per_side)
            .map(|_| random_update(&mut rng, side_entities.clone()))
            .collect();
        let mut rng = SplitMix64::new(seed ^ 0x4444_4444_4444_4444);
        let side_b = (0..per_side)
            .map(|_| random_update(&mut rng, side_entities.clone()))
            .collect();
        Self {
            seed,
            entities,
            initial,
            updates,
            side_a,
            side_b,
        }
    }

    /// Scenario A: 1,000 entities, 20,000 streamed updates, and a partition
    /// during which each side writes 500 updates at random entities.
    pub fn scenario_a(seed: u64) -> Self {
        Self::build(seed, ENTITIES, STREAM_UPDATES, 500, 0..ENTITIES)
    }

    /// Scenario B: like A, but during the partition each side writes 5,000
    /// updates concentrated on the same 10 entities (`0..10`), so most writes
    /// overwrite each other.
    pub fn scenario_b(seed: u64) -> Self {
        Self::build(seed, ENTITIES, STREAM_UPDATES, 5_000, 0..10)
    }

    /// A small workload for tests: 50 entities, 200 streamed updates and 20
    /// updates per side.
    pub fn small(seed: u64) -> Self {
        Self::build(seed, 50, 200, 20, 0..50)
    }

    /// The state every replica ends in after applying `initial` and then
    /// `updates` in order: `entities × 8` values, entity-major.
    pub fn final_stream_state(&self) -> Vec<f64> {
        let mut state = vec![0.0; self.entities as usize * FIELDS.len()];
        for u in self.initial.iter().chain(&self.updates) {
            state[u.entity as usize * FIELDS.len() + usize::from(u.field)] = u.value;
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_sized() {
        let a = Workload::scenario_a(1);
        let again = Workload::scenario_a(1);
        assert_eq!(a.updates, again.updates);
        assert_eq!(a.initial.len(), 8_000);
        assert_eq!(a.updates.len(), 20_000);
        assert_eq!((a.side_a.len(), a.side_b.len()), (500, 500));
        assert_ne!(a.side_a, a.side_b);
        let b = Workload::scenario_b(1);
        assert_eq!((b.side_a.len(), b.side_b.len()), (5_000, 5_000));
        assert!(b.side_a.iter().chain(&b.side_b).all(|u| u.entity < 10));
        assert!(a.updates.iter().all(|u| u.entity < ENTITIES && u.field < 8));
    }
}
