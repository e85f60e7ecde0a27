//! Connection ids that name their shard, and the routing of datagrams by them.
//!
//! Every shard runs its own QUIC endpoint on the same UDP port (`SO_REUSEPORT`); the
//! kernel spreads datagrams over the shards' sockets by their address and port, which a
//! client may change at any moment (NAT rebinding, migration). So the server's
//! connection ids carry the owning shard, and a datagram that lands on another shard is
//! passed to the owner by [`route`].
//!
//! A server id is [`CID_LEN`] bytes: a random nonce, the shard index masked by a keyed
//! hash of the nonce (an observer cannot tell which shard, nor link two ids of one
//! connection by it), and a keyed signature over both. The key comes from the TLS key,
//! so a restarted server still recognises the ids of the previous process as its own and
//! answers a client that kept talking to one with a stateless reset (quinn-proto only
//! resets ids its generator validates). The hash is not cryptographic (like quinn's own
//! keyed generator): it keeps stray packets out cheaply; TLS protects everything else.

use std::hash::Hasher as _;

use quinn_proto::{ConnectionId, ConnectionIdGenerator, InvalidCid};

/// Bytes in a connection id the server issues.
pub const CID_LEN: usize = NONCE_LEN + 1 + SIGNATURE_LEN;
const NONCE_LEN: usize = 4;
const SIGNATURE_LEN: usize = 4;
/// Shards a connection id can name (one byte).
pub const MAX_SHARDS: usize = 256;
/// Separates the masking hash from the signing hash under one key.
const MASK_TWEAK: u64 = 0x9e37_79b9_7f4a_7c15;

/// Issues (for one shard) and recognises (for every shard) the server's connection ids.
#[derive(Debug, Clone, Copy)]
pub struct ShardCids {
    key: u64,
    shard: u8,
}

impl ShardCids {
    /// The generator of shard `shard` (below [`MAX_SHARDS`]) under `key`.
    pub fn new(key: u64, shard: usize) -> Self {
        Self { key, shard: u8::try_from(shard).unwrap_or(u8::MAX) }
    }

    /// The id with `nonce` for `shard`.
    fn make(&self, nonce: [u8; NONCE_LEN], shard: u8) -> [u8; CID_LEN] {
        let mut cid = [0u8; CID_LEN];
        cid[..NONCE_LEN].copy_from_slice(&nonce);
        cid[NONCE_LEN] = shard ^ self.mask(&nonce);
        let signature = self.sign(&cid[..=NONCE_LEN]);
        cid[NONCE_LEN + 1..].copy_from_slice(&signature);
        cid
    }

    fn mask(&self, nonce: &[u8]) -> u8 {
        let mut hasher = rustc_hash::FxHasher::default();
        hasher.write_u64(self.key ^ MASK_TWEAK);
        hasher.write(nonce);
        hasher.finish().to_le_bytes()[7]
    }

    fn sign(&self, signed: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut hasher = rustc_hash::FxHasher::default();
        hasher.write_u64(self.key);
        hasher.write(signed);
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(&hasher.finish().to_le_bytes()[..SIGNATURE_LEN]);
        signature
    }

    /// The shard an id names, if it is one of the server's (right length and signature).
    pub fn shard_of(&self, cid: &[u8]) -> Option<usize> {
        if cid.len() != CID_LEN {
            return None;
        }
        let (signed, signature) = cid.split_at(NONCE_LEN + 1);
        if self.sign(signed) != signature {
            return None;
        }
        Some(usize::from(signed[NONCE_LEN] ^ self.mask(&signed[..NONCE_LEN])))
    }
}

impl ConnectionIdGenerator for ShardCids {
    fn generate_cid(&mut self) -> ConnectionId {
        ConnectionId::new(&self.make(rand::random(), self.shard))
    }

    fn validate(&self, cid: &ConnectionId) -> Result<(), InvalidCid> {
        self.shard_of(cid).map(|_| ()).ok_or(InvalidCid)
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}

/// The destination connection id of a QUIC datagram (of its first packet), as far as
/// the header shows it without keys: long headers carry its length, short headers carry
/// ids of the server's length.
pub fn destination_cid(datagram: &[u8]) -> Option<&[u8]> {
    let first = *datagram.first()?;
    if first & 0x80 != 0 {
        // Long header: flags, version (4), id length, id.
        let len = usize::from(*datagram.get(5)?);
        datagram.get(6..6 + len)
    } else {
        datagram.get(1..1 + CID_LEN)
    }
}

/// The shard that handles a datagram received by shard `here` of `shards`: the shard its
/// destination id names, when that id is one of the server's and names an existing shard;
/// otherwise `here` (a client's first Initial, whose id the client chose, and anything
/// that is not the server's is handled, or dropped, where it landed).
pub fn route(datagram: &[u8], cids: &ShardCids, here: usize, shards: usize) -> usize {
    destination_cid(datagram)
        .and_then(|cid| cids.shard_of(cid))
        .filter(|&shard| shard < shards)
        .unwrap_or(here)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short_packet(cid: &[u8]) -> Vec<u8> {
        let mut packet = vec![0x40];
        packet.extend_from_slice(cid);
        packet.extend_from_slice(&[0xaa; 30]);
        packet
    }

    fn long_packet(cid: &[u8]) -> Vec<u8> {
        let mut packet = vec![0xc0, 0, 0, 0, 1, u8::try_from(cid.len()).expect("short id")];
        packet.extend_from_slice(cid);
        packet.extend_from_slice(&[8, 1, 2, 3, 4, 5, 6, 7, 8]);
        packet.extend_from_slice(&[0; 1200]);
        packet
    }

    #[test]
    fn every_shard_reads_the_shard_any_shard_encoded() {
        for shard in [0, 1, 7, 255] {
            let mut generator = ShardCids::new(42, shard);
            for _ in 0..200 {
                let cid = generator.generate_cid();
                assert_eq!(cid.len(), CID_LEN);
                assert!(generator.validate(&cid).is_ok());
                // Another shard's generator (same key) reads it the same.
                assert_eq!(ShardCids::new(42, 3).shard_of(&cid), Some(shard));
            }
        }
    }

    #[test]
    fn ids_under_another_key_or_altered_are_not_the_servers() {
        let cid = ShardCids::new(42, 1).generate_cid();
        assert_eq!(ShardCids::new(43, 1).shard_of(&cid), None, "another server's key");
        for i in 0..CID_LEN {
            let mut altered = cid.to_vec();
            altered[i] ^= 0x01;
            assert_eq!(ShardCids::new(42, 1).shard_of(&altered), None, "byte {i} altered");
        }
        assert_eq!(ShardCids::new(42, 1).shard_of(&cid[..CID_LEN - 1]), None);
    }

    #[test]
    fn the_shard_byte_is_masked_per_id() {
        // Ids of one shard do not share a byte at the shard's position.
        let mut generator = ShardCids::new(7, 2);
        let bytes: std::collections::HashSet<u8> =
            (0..200).map(|_| generator.generate_cid()[NONCE_LEN]).collect();
        assert!(bytes.len() > 50, "{} distinct shard bytes", bytes.len());
    }

    #[test]
    fn datagrams_go_to_the_shard_their_id_names() {
        let cids = ShardCids::new(9, 0);
        let of_shard_1 = ShardCids::new(9, 1).generate_cid();
        let of_shard_5 = ShardCids::new(9, 5).generate_cid();
        // Short and long headers (a Handshake packet to the server's id) alike.
        assert_eq!(route(&short_packet(&of_shard_1), &cids, 0, 4), 1);
        assert_eq!(route(&long_packet(&of_shard_1), &cids, 0, 4), 1);
        // Already home.
        assert_eq!(route(&short_packet(&of_shard_1), &cids, 1, 4), 1);
        // A shard that does not exist (fewer shards since the id was issued): stays.
        assert_eq!(route(&short_packet(&of_shard_5), &cids, 2, 4), 2);
        // A client's first Initial: its own random id, handled where it landed.
        assert_eq!(route(&long_packet(&[0x11; 20]), &cids, 3, 4), 3);
        assert_eq!(route(&long_packet(&[0x11; CID_LEN]), &cids, 3, 4), 3);
        // Truncated and empty datagrams stay too (quinn-proto drops them).
        assert_eq!(route(&[], &cids, 2, 4), 2);
        assert_eq!(route(&[0x40, 1, 2], &cids, 2, 4), 2);
        assert_eq!(route(&[0xc0, 0, 0, 0, 1, 20, 1], &cids, 2, 4), 2);
    }
}
