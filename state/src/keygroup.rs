//! The fixed key hash and key groups.

/// The number of key groups a job's state is split into unless configured
/// otherwise. Fixed when a job's state is first created.
pub const DEFAULT_KEY_GROUPS: u32 = 4096;

/// The key hash: 64-bit FNV-1a over the key's encoded bytes, finished with
/// MurmurHash3's `fmix64` so that the low bits are well mixed.
///
/// This is a persistent format: it decides key groups, worker routing and
/// `file` sink partitions, so it must never change. Its value for a few inputs
/// is pinned by tests.
pub fn key_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// How keys map to key groups and key groups to workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyGroups {
    groups: u32,
}

impl KeyGroups {
    /// `groups` key groups.
    ///
    /// # Panics
    /// If `groups` is 0 (an internal invariant: configuration is validated
    /// before this is called).
    pub fn new(groups: u32) -> KeyGroups {
        assert!(groups > 0, "key group count must be positive");
        KeyGroups { groups }
    }

    /// The number of key groups.
    pub fn count(self) -> u32 {
        self.groups
    }

    /// The key group of a key hash.
    pub fn group_of(self, hash: u64) -> u32 {
        // The remainder is below `groups`, a u32.
        u32::try_from(hash % u64::from(self.groups)).unwrap_or(0)
    }

    /// The worker that owns a key group among `peers` workers.
    pub fn owner(self, group: u32, peers: usize) -> usize {
        usize::try_from(group).unwrap_or(0) % peers.max(1)
    }

    /// The worker that owns a key hash: `(hash mod G) mod peers`.
    pub fn owner_of_hash(self, hash: u64, peers: usize) -> usize {
        self.owner(self.group_of(hash), peers)
    }
}

impl Default for KeyGroups {
    fn default() -> Self {
        KeyGroups::new(DEFAULT_KEY_GROUPS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_pinned() {
        // A persistent format: changing these moves every key. The values were
        // computed independently (a few lines of Python over the same
        // definition: FNV-1a 64, then MurmurHash3 fmix64).
        assert_eq!(key_hash(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(key_hash(b"a"), 0x82a2_a958_a9be_ce5b);
        assert_eq!(key_hash(b"lockstep"), 0xc3c3_ff12_7380_451f);
    }

    #[test]
    fn groups_cover_all_workers_evenly() {
        let kg = KeyGroups::default();
        let mut per = [0usize; 3];
        for i in 0u64..30_000 {
            let h = key_hash(&i.to_be_bytes());
            per[kg.owner_of_hash(h, 3)] += 1;
        }
        for n in per {
            assert!((9_000..11_000).contains(&n), "{per:?}");
        }
    }
}
