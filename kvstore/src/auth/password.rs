//! Password hashes: PBKDF2-HMAC-SHA256 (ring) with a random 16-byte salt.
//!
//! Contract: a password is hashed on the member that receives it, before anything is
//! proposed, so the Raft log, snapshots and the database only ever hold the salt and the
//! derived key; `verify` compares in constant time. etcd uses bcrypt; a hash here is not
//! interchangeable with etcd's.

use std::num::NonZeroU32;

use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::error::KvError;

/// PBKDF2 rounds for new hashes (about 40 ms of one core in a release build). Each hash
/// records its own count, so raising this later leaves old hashes valid.
pub const ITERATIONS: u32 = 100_000;

static ALGORITHM: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA256;

/// A stored password: never the password itself.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordHash {
    pub iterations: u32,
    pub salt: [u8; 16],
    pub hash: [u8; 32],
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordHash(pbkdf2-sha256, {} rounds)", self.iterations)
    }
}

/// Hashes `password` with a fresh salt and `iterations` rounds (0 is taken as 1).
pub fn hash_with(password: &[u8], iterations: u32) -> Result<PasswordHash, KvError> {
    let rounds = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| KvError::internal("no randomness for a password salt"))?;
    let mut hash = [0u8; 32];
    pbkdf2::derive(ALGORITHM, rounds, &salt, password, &mut hash);
    Ok(PasswordHash {
        iterations: rounds.get(),
        salt,
        hash,
    })
}

/// Hashes `password` with the default cost.
pub fn hash(password: &[u8]) -> Result<PasswordHash, KvError> {
    hash_with(password, ITERATIONS)
}

/// Whether `password` is the one `stored` was made from (constant-time comparison). A hash
/// that records zero rounds matches nothing.
pub fn verify(stored: &PasswordHash, password: &[u8]) -> bool {
    let Some(rounds) = NonZeroU32::new(stored.iterations) else {
        return false;
    };
    pbkdf2::verify(ALGORITHM, rounds, &stored.salt, password, &stored.hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_password_verifies() {
        let h = hash_with(b"s3cret", 1000).unwrap();
        assert!(verify(&h, b"s3cret"));
        assert!(!verify(&h, b"s3cret "));
        assert!(!verify(&h, b""));
        let empty = hash_with(b"", 1000).unwrap();
        assert!(verify(&empty, b""));
        assert!(!verify(&empty, b"x"));
    }

    #[test]
    fn each_hash_has_its_own_salt() {
        let a = hash_with(b"pw", 10).unwrap();
        let b = hash_with(b"pw", 10).unwrap();
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.hash, b.hash);
        assert_eq!(a.iterations, 10);
    }

    #[test]
    fn a_hash_with_zero_rounds_matches_nothing_and_never_shows_its_bytes() {
        let mut h = hash_with(b"pw", 10).unwrap();
        h.iterations = 0;
        assert!(!verify(&h, b"pw"));
        assert_eq!(format!("{h:?}"), "PasswordHash(pbkdf2-sha256, 0 rounds)");
    }
}
