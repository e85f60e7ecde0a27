//! Which cids a room's storage may hold, answered from memory.
//!
//! Every new message's cid is looked up in the `room_cid_seq` keyspace first (the
//! idempotency check), and almost every answer is "not there". That lookup walks fjall's
//! memtable skiplists: under durable load it was a tenth of the server's CPU. A
//! [`CidFilter`] is a Bloom filter over every cid stored for one room, so a new cid is
//! known to be new without touching storage.
//!
//! It never says "absent" for a stored cid (no false negatives), so the idempotency
//! contract ("remembered forever") holds exactly: "maybe present" (a stored cid, or a
//! false positive for well under one new cid in a hundred) falls back to the storage
//! lookup.
//!
//! Layout: a list of blocked Bloom filters (each key sets 7 bits inside one 64-byte
//! block, so a probe touches one cache line), each layer twice the capacity of the one
//! before, so a growing room never rehashes and a lookup checks a handful of layers.

use std::hash::Hasher;

use palaver_protocol::{ClientMsgId, UserId};

/// The most cids one room's filter holds (at most 4 MiB of layers at the cap); past it
/// the room goes back to looking every cid up.
pub const MAX_FILTERED_CIDS: usize = 1 << 20;

/// Bits per key: about 0.1 % false positives per full layer with [`PROBES`] probes in
/// 512-bit blocks (0.5 % over the seven layers of a filter grown to 50,000 cids).
const BITS_PER_KEY: usize = 16;
const PROBES: u32 = 7;
const BLOCK_BITS: usize = 512;
// Each probe takes the next 9 bits (one of 512) of a 64-bit word.
const _: () = assert!(PROBES * 9 <= 64 && BLOCK_BITS == 1 << 9);
/// The smallest layer: most rooms hold few messages, and a loaded room is kept for the
/// process's life.
const MIN_LAYER_KEYS: usize = 256;

/// A cid's 64-bit hash, computed once (a filter being built collects these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CidHash(u64);

impl CidHash {
    /// The hash of a sender's cid.
    pub fn of(sender: &UserId, cid: &ClientMsgId) -> Self {
        Self::of_bytes(&crate::keys::sender_cid(sender, cid))
    }

    /// The hash of a cid's bytes (as stored after the room prefix of its key).
    pub(crate) fn of_bytes(bytes: &[u8]) -> Self {
        // SipHash with fixed keys: deterministic, and crafted collisions only cost lookups.
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write(bytes);
        Self(hasher.finish())
    }

    /// The block (from the high half) and a second, independent word for the bits.
    fn split(self, blocks: usize) -> (usize, u64) {
        let block = ((self.0 >> 32) * blocks as u64) >> 32;
        // splitmix64's finalizer: the bit positions must not correlate with the block.
        let mut z = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (block as usize, z ^ (z >> 31))
    }
}

#[derive(Clone)]
struct Layer {
    blocks: Vec<[u64; BLOCK_BITS / 64]>,
    keys: usize,
    capacity: usize,
}

impl Layer {
    fn with_capacity(capacity: usize) -> Self {
        let blocks = (capacity * BITS_PER_KEY).div_ceil(BLOCK_BITS).max(1);
        Self { blocks: vec![[0; BLOCK_BITS / 64]; blocks], keys: 0, capacity }
    }

    fn insert(&mut self, hash: CidHash) {
        let (block, mut bits) = hash.split(self.blocks.len());
        let block = &mut self.blocks[block];
        for _ in 0..PROBES {
            let bit = (bits as usize) % BLOCK_BITS;
            block[bit / 64] |= 1 << (bit % 64);
            bits >>= 9;
        }
        self.keys += 1;
    }

    fn may_contain(&self, hash: CidHash) -> bool {
        let (block, mut bits) = hash.split(self.blocks.len());
        let block = &self.blocks[block];
        (0..PROBES).all(|_| {
            let bit = (bits as usize) % BLOCK_BITS;
            bits >>= 9;
            block[bit / 64] & (1 << (bit % 64)) != 0
        })
    }
}

/// A Bloom filter over every cid stored for one room. See the module docs.
#[derive(Clone, Default)]
pub struct CidFilter {
    layers: Vec<Layer>,
    keys: usize,
}

/// Its size, not its megabytes of bits.
impl std::fmt::Debug for CidFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CidFilter")
            .field("keys", &self.keys)
            .field("layers", &self.layers.len())
            .field("bytes", &self.memory_bytes())
            .finish()
    }
}

/// [`CidFilter::insert`] found the filter at [`MAX_FILTERED_CIDS`]: drop it and look
/// every cid up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterFull;

impl CidFilter {
    /// An empty filter: a room with no messages stores no cids.
    pub fn new() -> Self {
        Self::default()
    }

    /// A filter whose first layer holds `expected` keys without growing.
    fn with_expected(expected: usize) -> Self {
        Self { layers: vec![Layer::with_capacity(expected.max(MIN_LAYER_KEYS))], keys: 0 }
    }

    /// A filter over these cids, sized for them; `None` past [`MAX_FILTERED_CIDS`].
    pub(crate) fn from_hashes(hashes: &[CidHash]) -> Option<Self> {
        let mut filter = Self::with_expected(hashes.len());
        for &hash in hashes {
            filter.insert(hash).ok()?;
        }
        Some(filter)
    }

    /// How many cids went in.
    pub fn len(&self) -> usize {
        self.keys
    }

    /// Whether no cid went in.
    pub fn is_empty(&self) -> bool {
        self.keys == 0
    }

    /// Adds a cid that storage holds (or is about to).
    pub fn insert(&mut self, hash: CidHash) -> Result<(), FilterFull> {
        if self.keys >= MAX_FILTERED_CIDS {
            return Err(FilterFull);
        }
        if self.layers.last().is_none_or(|layer| layer.keys >= layer.capacity) {
            // Doubling: each new layer holds as many keys as all the ones before it.
            let total: usize = self.layers.iter().map(|l| l.capacity).sum();
            self.layers.push(Layer::with_capacity(total.max(MIN_LAYER_KEYS)));
        }
        if let Some(layer) = self.layers.last_mut() {
            layer.insert(hash);
            self.keys += 1;
        }
        Ok(())
    }

    /// `false`: storage holds no such cid for this room. `true`: it may; look it up.
    pub fn may_contain(&self, hash: CidHash) -> bool {
        self.layers.iter().any(|layer| layer.may_contain(hash))
    }

    /// Bytes of filter held in memory.
    pub fn memory_bytes(&self) -> usize {
        self.layers.iter().map(|l| l.blocks.len() * BLOCK_BITS / 8).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tester() -> UserId {
        UserId::parse("u_tester").expect("valid id")
    }

    fn cid(s: &str) -> ClientMsgId {
        ClientMsgId::parse(s).expect("valid cid")
    }

    #[test]
    fn an_empty_filter_contains_nothing() {
        let filter = CidFilter::new();
        assert!(!filter.may_contain(CidHash::of(&tester(), &cid("c-1"))));
        assert_eq!(filter.memory_bytes(), 0);
    }

    #[test]
    fn the_false_positive_rate_stays_near_one_percent_as_layers_grow() {
        let mut filter = CidFilter::with_expected(1000);
        for i in 0..50_000 {
            filter.insert(CidHash::of(&tester(), &cid(&format!("in-{i}")))).expect("below the cap");
        }
        assert!(filter.layers.len() > 3, "it grew by layers");
        let false_positives = (0..100_000)
            .filter(|i| filter.may_contain(CidHash::of(&tester(), &cid(&format!("out-{i}")))))
            .count();
        // Each full layer adds its ~0.1 %: 0.5 % measured over these seven.
        assert!(false_positives < 1_500, "{false_positives} false positives in 100,000");
        // 16 bits per key, twice over for the doubling slack.
        assert!(filter.memory_bytes() <= 50_000 * BITS_PER_KEY * 2 / 8 + 4096);
    }

    #[test]
    fn a_full_filter_says_so_and_keeps_what_it_holds() {
        let mut filter = CidFilter::new();
        filter.keys = MAX_FILTERED_CIDS - 1;
        let last = CidHash::of(&tester(), &cid("last"));
        assert_eq!(filter.insert(last), Ok(()));
        assert_eq!(filter.insert(CidHash::of(&tester(), &cid("one-too-many"))), Err(FilterFull));
        assert!(filter.may_contain(last));
    }

    proptest! {
        /// No false negatives: every inserted cid is "maybe present", however the layers grew.
        #[test]
        fn every_inserted_cid_may_be_present(
            expected in 0usize..600,
            cids in proptest::collection::vec("[a-zA-Z0-9_-]{1,64}", 0..2_000),
        ) {
            let mut filter = CidFilter::with_expected(expected);
            for c in &cids {
                filter.insert(CidHash::of(&tester(), &cid(c))).expect("below the cap");
            }
            for c in &cids {
                prop_assert!(filter.may_contain(CidHash::of(&tester(), &cid(c))));
            }
            prop_assert_eq!(filter.len(), cids.len());
        }
    }
}
