//! Room placement: `shard_for(room, n)` is a pure function of the room id and the shard
//! count, stable across processes and releases (it decides where a room's state lives).

use palaver_protocol::RoomId;

/// FNV-1a, 64-bit: tiny, stable by definition (unlike `std`'s hasher), good enough to
/// spread random ids.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Lamping and Veach's jump consistent hash: maps `key` to a bucket in `0..buckets`,
/// moving only `1/n` of keys when a bucket is added.
pub fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let buckets = buckets.max(1) as i64;
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = (((b + 1) as f64) * ((1i64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as usize
}

/// The shard that owns `room` among `shards` shards.
///
/// ```
/// use palaver_core::shard_for;
/// use palaver_protocol::RoomId;
/// let room = RoomId::parse("r_general").unwrap();
/// assert!(shard_for(&room, 4) < 4);
/// assert_eq!(shard_for(&room, 1), 0);
/// ```
pub fn shard_for(room: &RoomId, shards: usize) -> usize {
    jump_hash(stable_hash(room.as_str().as_bytes()), shards)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn placement_is_stable_across_releases() {
        // Pinned values: changing the hash would move every room to another shard.
        let room = RoomId::parse("r_general").unwrap();
        assert_eq!(stable_hash(b"r_general"), 0xd99b_989e_c937_03f6);
        let placements: Vec<usize> = [2, 3, 8, 16].iter().map(|&n| shard_for(&room, n)).collect();
        assert_eq!(placements, vec![1, 1, 1, 1]);
        let other = RoomId::parse("r_random").unwrap();
        assert_eq!(shard_for(&other, 1), 0);
    }

    proptest! {
        #[test]
        fn growing_the_shard_set_moves_keys_only_to_the_new_shard(key in any::<u64>(), n in 1usize..64) {
            let before = jump_hash(key, n);
            let after = jump_hash(key, n + 1);
            prop_assert!(before < n);
            prop_assert!(after == before || after == n);
        }
    }

    #[test]
    fn rooms_spread_evenly() {
        let mut counts = [0u32; 4];
        for i in 0..40_000 {
            let room = RoomId::from_body(&format!("{i:x}")).unwrap();
            counts[shard_for(&room, 4)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
