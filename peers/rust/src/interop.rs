// SPDX-License-Identifier: MIT
//! The payloads of the cross-language broadcast and state-board tests (tests/test_interop_bcast.py),
//! defined identically in Python and C++ (peers/c/bcast_common.hpp): every byte is derived from
//! one number, so a reader can tell a torn or misplaced value from a good one.

/// Broadcast messages: message `seq` has `2 + seq % (slot_size/8 - 1)` little-endian u64 words;
/// word 0 is `seq`, word `j >= 1` is `(seq + j) * K` (wrapping). Two different messages never
/// agree on any word, so a message mixed from two is always caught.
pub mod message {
    pub const K: u64 = 0x9E37_79B9_7F4A_7C15;

    /// Length in bytes of message `seq` in slots of `slot_size` bytes (at least 16).
    pub fn len(seq: u64, slot_size: u64) -> usize {
        let words = (slot_size / 8).max(2);
        (8 * (2 + seq % (words - 1))) as usize
    }

    fn word(seq: u64, j: usize) -> u64 {
        if j == 0 {
            seq
        } else {
            seq.wrapping_add(j as u64).wrapping_mul(K)
        }
    }

    /// Fills `dst` (of `len(seq, ..)` bytes) with message `seq`.
    pub fn fill(dst: &mut [u8], seq: u64) {
        for (j, w) in dst.chunks_exact_mut(8).enumerate() {
            w.copy_from_slice(&word(seq, j).to_le_bytes());
        }
    }

    /// The sequence number of a well-formed message, or what is wrong with it.
    pub fn verify(src: &[u8], slot_size: u64) -> Result<u64, String> {
        if src.len() < 16 || src.len() & 7 != 0 {
            return Err(format!("a message of {} bytes", src.len()));
        }
        let seq = u64::from_le_bytes(src[..8].try_into().unwrap());
        if src.len() != len(seq, slot_size) {
            return Err(format!("message {seq} has {} bytes, expected {}", src.len(), len(seq, slot_size)));
        }
        for (j, w) in src.chunks_exact(8).enumerate() {
            let got = u64::from_le_bytes(w.try_into().unwrap());
            if got != word(seq, j) {
                return Err(format!("message {seq}: word {j} is {got:#x}, expected {:#x}", word(seq, j)));
            }
        }
        Ok(seq)
    }
}

/// State-board values: a 256-byte record, the numpy dtype
/// `[('seq','<u8'), ('neg','<i8'), ('half','<f8'), ('lo','<u4'), ('hi','<u4'), ('last','<u4'),
/// ('mix','<u4'), ('arr','<u4',(54,))]`, every field derived from the counter `seq`:
/// `neg = -seq`, `half = seq / 2`, `lo`/`hi` its halves, `mix = lo ^ hi ^ 0xA5A5A5A5`,
/// `arr[i] = (seq + i) * 2654435761 mod 2^32`; `last` is 1 on the writer's final value.
pub mod counter {
    pub const SIZE: usize = 256;
    const ARR: usize = 54;
    const MUL: u64 = 2_654_435_761;
    /// What Python's `State.create(dtype=...)` stores as ChannelInfo.numpy_descr for this dtype.
    pub const NUMPY_DESCR: &str = "([('seq', '<u8'), ('neg', '<i8'), ('half', '<f8'), ('lo', '<u4'), ('hi', '<u4'), \
                                   ('last', '<u4'), ('mix', '<u4'), ('arr', '<u4', (54,))], ())";

    pub fn encode(seq: u64, last: bool) -> [u8; SIZE] {
        let mut b = [0u8; SIZE];
        let (lo, hi) = (seq as u32, (seq >> 32) as u32);
        b[0..8].copy_from_slice(&seq.to_le_bytes());
        b[8..16].copy_from_slice(&(seq as i64).wrapping_neg().to_le_bytes());
        b[16..24].copy_from_slice(&(seq as f64 * 0.5).to_le_bytes());
        b[24..28].copy_from_slice(&lo.to_le_bytes());
        b[28..32].copy_from_slice(&hi.to_le_bytes());
        b[32..36].copy_from_slice(&u32::from(last).to_le_bytes());
        b[36..40].copy_from_slice(&(lo ^ hi ^ 0xA5A5_A5A5).to_le_bytes());
        for i in 0..ARR {
            let v = seq.wrapping_add(i as u64).wrapping_mul(MUL) as u32;
            b[40 + 4 * i..44 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// `(seq, last)` of a consistent record, or what is wrong with it.
    pub fn decode(b: &[u8]) -> Result<(u64, bool), String> {
        if b.len() != SIZE {
            return Err(format!("a value of {} bytes, expected {SIZE}", b.len()));
        }
        let seq = u64::from_le_bytes(b[..8].try_into().unwrap());
        let last = u32::from_le_bytes(b[32..36].try_into().unwrap());
        if last > 1 {
            return Err(format!("value {seq}: last is {last}"));
        }
        let want = encode(seq, last == 1);
        if b != want {
            let at = b.iter().zip(want.iter()).position(|(x, y)| x != y).unwrap_or(0);
            return Err(format!("value {seq}: byte {at} is {:#x}, expected {:#x} (torn or inconsistent)", b[at], want[at]));
        }
        Ok((seq, last == 1))
    }
}
