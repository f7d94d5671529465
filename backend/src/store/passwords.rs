//! Password hashes: Argon2id as PHC strings, computed as [`crate::cpu::heavy`] work (off the
//! async workers, at most half the cores' worth at once), each in a memory area kept for the
//! next one.
//!
//! A burst of log-ins (or sign-ups) from many addresses then costs a queue for log-ins, not the
//! whole machine. And memory stays flat: a fresh 19 MiB area per attempt, freed on a
//! blocking-pool thread, is kept by that thread's allocator arena, so a burst used to leave the
//! server hundreds of megabytes bigger.

use crate::cpu::heavy;
use crate::error::{Error, Result};
use argon2::password_hash::{rand_core::OsRng, Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::Mutex;

/// Memory areas of hashes that ran, for the next ones.
static AREAS: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Argon2 with `params` over `password` and `salt` into `out`, in a pooled memory area.
fn compute(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> std::result::Result<(), argon2::Error> {
    let blocks = params.block_count();
    let mut area = AREAS.lock().unwrap().pop().unwrap_or_default();
    area.resize(blocks, Block::default());
    let argon = Argon2::new(algorithm, version, params);
    let done = argon.hash_password_into_with_memory(password, salt, out, &mut area[..blocks]);
    let mut areas = AREAS.lock().unwrap();
    // Never more kept than hashes may run at once.
    if areas.len() < crate::cpu::permits() {
        areas.push(area);
    }
    done
}

/// The PHC string of `password` under a fresh salt, with Argon2id's default parameters.
pub async fn hash(password: String) -> Result<String> {
    heavy(move || {
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt.as_salt().decode_b64(&mut salt_bytes)?;
        let params = Params::default();
        let hash = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
            compute(
                Algorithm::Argon2id,
                Version::V0x13,
                params.clone(),
                password.as_bytes(),
                salt_bytes,
                out,
            )
            .map_err(Into::into)
        })?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: (&params).try_into()?,
            salt: Some(salt.as_salt()),
            hash: Some(hash),
        };
        Ok::<_, argon2::password_hash::Error>(phc.to_string())
    })
    .await?
    .map_err(|e| Error::Internal(e.to_string()))
}

/// Whether `password` is the one `stored` (a PHC string) was made from. With nothing stored
/// (no such user) the same work is done and the answer is no, so timing does not tell.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool> {
    heavy(move || {
        let Some(stored) = stored else {
            let _ = compute(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::default(),
                password.as_bytes(),
                &[0u8; 16],
                &mut [0u8; Params::DEFAULT_OUTPUT_LEN],
            );
            return false;
        };
        matches(&password, &stored).unwrap_or(false)
    })
    .await
}

fn matches(
    password: &str,
    stored: &str,
) -> std::result::Result<bool, argon2::password_hash::Error> {
    let phc = PasswordHash::new(stored)?;
    let algorithm = Algorithm::try_from(phc.algorithm)?;
    let version = phc
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(&phc)?;
    let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
        return Ok(false);
    };
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let got = Output::init_with(expected.len(), |out| {
        compute(
            algorithm,
            version,
            params,
            password.as_bytes(),
            salt_bytes,
            out,
        )
        .map_err(Into::into)
    })?;
    // Output's equality is constant-time.
    Ok(got == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordVerifier;

    #[tokio::test]
    async fn hashes_verify_here_and_with_the_argon2_crate() {
        let stored = hash("correct horse".into()).await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(verify("correct horse".into(), Some(stored.clone()))
            .await
            .unwrap());
        assert!(!verify("wrong horse".into(), Some(stored.clone()))
            .await
            .unwrap());
        assert!(!verify("correct horse".into(), None).await.unwrap());
        assert!(!verify("x".into(), Some("not a hash".into())).await.unwrap());
        // The same PHC string the argon2 crate's own hasher would write and read.
        let phc = PasswordHash::new(&stored).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &phc)
            .is_ok());
        use argon2::PasswordHasher;
        let theirs = Argon2::default()
            .hash_password(b"older", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(verify("older".into(), Some(theirs)).await.unwrap());
    }
}
