//! StateBlock: the immutable, structurally shared state of a group, with an incremental,
//! order-independent content hash.

use imbl::OrdMap;

use crate::field::{Fact, FieldState};
use crate::{FieldId, RegisterId, Schema, Value};

/// An order-independent set hash: the sum, lane by lane, of a keyed 128-bit SipHash-1-3 of
/// each element. Adding or removing one element costs O(1) and the result depends only on
/// the set. SipHash is a keyed PRF, so without the group's key nobody can craft elements
/// that collide in the digest; it is several times cheaper than BLAKE3 on the 40-80 byte
/// entries hashed per update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SetHash(pub [u64; 2]);

impl SetHash {
    fn lanes(key: &[u8; 32], bytes: &[u8]) -> [u64; 2] {
        use core::hash::Hasher as _;
        let mut k = [0u8; 16];
        k.copy_from_slice(&key[..16]);
        let mut h = siphasher::sip128::SipHasher13::new_with_key(&k);
        h.write(bytes);
        let v = siphasher::sip128::Hasher128::finish128(&h);
        [v.h1, v.h2]
    }
    /// Add an element.
    pub fn add(&mut self, key: &[u8; 32], bytes: &[u8]) {
        self.add_lanes(Self::lanes(key, bytes));
    }
    /// Remove an element previously added.
    pub fn remove(&mut self, key: &[u8; 32], bytes: &[u8]) {
        self.remove_lanes(Self::lanes(key, bytes));
    }
    fn add_lanes(&mut self, l: [u64; 2]) {
        for (a, b) in self.0.iter_mut().zip(l) {
            *a = a.wrapping_add(b);
        }
    }
    fn remove_lanes(&mut self, l: [u64; 2]) {
        for (a, b) in self.0.iter_mut().zip(l) {
            *a = a.wrapping_sub(b);
        }
    }
    /// Combine two hashes of disjoint sets.
    #[must_use]
    pub fn plus(self, o: SetHash) -> SetHash {
        let mut out = self;
        for (a, b) in out.0.iter_mut().zip(o.0) {
            *a = a.wrapping_add(b);
        }
        out
    }
    /// The 16 bytes carried in digests.
    #[must_use]
    pub fn short(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.0[0].to_le_bytes());
        out[8..].copy_from_slice(&self.0[1].to_le_bytes());
        out
    }
}

/// The state of a group's registers. Cloning is O(1) (structural sharing), so a reader can
/// hold a snapshot while the replica moves on.
#[derive(Clone, Debug, Default)]
pub struct StateBlock {
    /// Each field with the hash lanes of its canonical entry, so replacing it re-hashes once.
    fields: OrdMap<(RegisterId, FieldId), (FieldState, [u64; 2])>,
    hash: SetHash,
    scratch: Vec<u8>,
}

fn entry_bytes_into(b: &mut Vec<u8>, reg: RegisterId, field: FieldId, st: &FieldState) {
    b.clear();
    b.extend_from_slice(&reg.0.to_le_bytes());
    b.extend_from_slice(&field.0.to_le_bytes());
    st.canonical_bytes(b);
}

impl StateBlock {
    /// Merge a fact into one field; returns whether the field's value changed. O(log n) map
    /// work plus hashing that one field once.
    pub fn apply(&mut self, key: &[u8; 32], schema: &Schema, reg: RegisterId, field: FieldId, fact: &Fact) -> bool {
        let Some(def) = schema.def(field) else { return false };
        let mut buf = std::mem::take(&mut self.scratch);
        let changed = match self.fields.get_mut(&(reg, field)) {
            Some((st, lanes)) => {
                // A register whose winner did not change keeps its bytes: skip the re-hash.
                if let (FieldState::Reg(cur), Fact::Write(w)) = (&*st, fact) {
                    if !crate::field::wins(def.policy, w, cur) {
                        self.scratch = buf;
                        return false;
                    }
                }
                let changed = st.apply(def.policy, fact);
                entry_bytes_into(&mut buf, reg, field, st);
                let new = SetHash::lanes(key, &buf);
                if new != *lanes {
                    self.hash.remove_lanes(*lanes);
                    self.hash.add_lanes(new);
                    *lanes = new;
                }
                changed
            }
            None => match FieldState::from_fact(def.policy, fact) {
                Some(st) => {
                    entry_bytes_into(&mut buf, reg, field, &st);
                    let lanes = SetHash::lanes(key, &buf);
                    self.hash.add_lanes(lanes);
                    self.fields.insert((reg, field), (st, lanes));
                    true
                }
                None => false,
            },
        };
        self.scratch = buf;
        changed
    }

    /// Normalise the counter parts of one field (does not change its value or hash).
    pub fn normalize(&mut self, reg: RegisterId, field: FieldId, ctx: &crate::CausalContext) {
        if let Some((st, _)) = self.fields.get_mut(&(reg, field)) {
            st.normalize(ctx);
        }
    }

    /// The value of one field, if it was ever written.
    #[must_use]
    pub fn get(&self, reg: RegisterId, field: FieldId) -> Option<Value> {
        self.fields.get(&(reg, field)).map(|(st, _)| st.value())
    }

    /// The merged state of one field.
    #[must_use]
    pub fn field_state(&self, reg: RegisterId, field: FieldId) -> Option<&FieldState> {
        self.fields.get(&(reg, field)).map(|(st, _)| st)
    }

    /// Every written field, in (register, field) order.
    pub fn iter(&self) -> impl Iterator<Item = (&(RegisterId, FieldId), &FieldState)> {
        self.fields.iter().map(|(k, (st, _))| (k, st))
    }

    /// Number of written fields.
    #[must_use]
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether nothing was written.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The content hash of the fields: independent of the order facts arrived in.
    #[must_use]
    pub fn hash(&self) -> SetHash {
        self.hash
    }

    /// Canonical bytes of the whole block: equal blocks give equal bytes.
    #[must_use]
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut b = Vec::new();
        for ((r, f), (st, _)) in &self.fields {
            entry_bytes_into(&mut b, *r, *f, st);
            out.extend_from_slice(&b);
        }
        out
    }
}
