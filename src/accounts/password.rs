//! Passwords: a type that cannot be printed, a length policy, and argon2id hashing that runs on
//! a small dedicated thread pool, so it never stalls the async workers.

use std::fmt;
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};

use crate::config::PasswordSettings;

/// A candidate password that passed the policy. `Debug` never shows it.
pub struct Password(SecretString);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("the password must be at least {0} characters long")]
    TooShort(usize),
    #[error("the password must be at most {0} characters long")]
    TooLong(usize),
    #[error("this password is one of the most common passwords; choose another one")]
    Common,
    #[error("the password must not be your email address")]
    SameAsEmail,
    #[error("password hashing failed")]
    Hashing,
}

impl Password {
    /// Applies the length policy (NIST SP 800-63B §5.1.1.2: count characters, not bytes).
    pub fn parse(raw: String, policy: &PasswordSettings) -> Result<Password, PasswordError> {
        let len = raw.chars().count();
        if len < policy.min_length {
            return Err(PasswordError::TooShort(policy.min_length));
        }
        if len > policy.max_length {
            return Err(PasswordError::TooLong(policy.max_length));
        }
        Ok(Password(SecretString::from(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// argon2id with the configured parameters.
#[derive(Clone)]
pub struct PasswordHasher {
    argon: Arc<Argon2<'static>>,
    /// A hash of nothing in particular, verified against when the account does not exist,
    /// so that the answer takes as long either way (no enumeration by timing).
    dummy: Arc<tokio::sync::OnceCell<String>>,
    /// Hashes waiting for or running on the blocking pool.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// A few dedicated threads run the hashes: each takes `memory_kib` of RAM, so a login
    /// storm queues instead of spreading 19 MiB blocks over every thread of tokio's blocking
    /// pool (where the allocator keeps them: ~600 MiB measured), and other blocking work keeps
    /// its threads.
    pool: Arc<HashPool>,
}

/// A job gets its thread's argon2 memory: each hashing thread allocates `memory_kib` once and
/// reuses it, so the hashing memory is exactly `max_concurrent_hashes × memory_kib` and no
/// hash pays for mapping and faulting in 19 MiB of fresh pages.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// A fixed set of threads fed through a channel; they end when the hasher is dropped.
struct HashPool {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
}

impl HashPool {
    fn new(threads: usize) -> HashPool {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    let mut memory: Vec<Block> = Vec::new();
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut memory),
                            Err(_) => return,
                        }
                    }
                });
        }
        HashPool {
            jobs: std::sync::Mutex::new(tx),
        }
    }

    /// Runs `f` on a hashing thread and waits for it without blocking the async worker.
    /// The work runs in an `argon2` span, a child of the caller's, so traces show the time
    /// spent queueing (the gap before it) and hashing.
    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let parent = tracing::Span::current();
        let job: Job = Box::new(move |memory| {
            let _span = tracing::info_span!(parent: &parent, "argon2").entered();
            let _ = tx.send(f(memory));
        });
        self.jobs.lock().ok()?.send(job).ok()?;
        rx.await.ok()
    }
}

impl PasswordHasher {
    pub fn new(settings: &PasswordSettings) -> Result<PasswordHasher, PasswordError> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|_| PasswordError::Hashing)?;
        Ok(PasswordHasher {
            argon: Arc::new(Argon2::new(Algorithm::Argon2id, Version::V0x13, params)),
            dummy: Arc::new(tokio::sync::OnceCell::new()),
            in_flight: Arc::default(),
            pool: Arc::new(HashPool::new(settings.max_concurrent_hashes)),
        })
    }

    /// How many hashes are queued or running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn enter(&self) -> InFlight {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlight(self.in_flight.clone())
    }

    /// The PHC string of `password`, computed on a hashing thread.
    #[tracing::instrument(name = "password.hash", skip_all)]
    pub async fn hash(&self, password: &Password) -> Result<String, PasswordError> {
        let _queued = self.enter();
        let argon = self.argon.clone();
        let secret = SecretString::from(password.expose().to_string());
        self.pool
            .run(move |memory| {
                let salt = SaltString::generate(&mut OsRng);
                let budget = argon.params().block_count();
                let output = compute(&argon, memory, budget, secret.expose_secret(), &salt, None)?;
                let phc = PasswordHash {
                    algorithm: Algorithm::Argon2id.ident(),
                    version: Some(Version::V0x13.into()),
                    params: ParamsString::try_from(argon.params())
                        .map_err(|_| PasswordError::Hashing)?,
                    salt: Some(salt.as_salt()),
                    hash: Some(output),
                };
                Ok(phc.to_string())
            })
            .await
            .ok_or(PasswordError::Hashing)?
    }

    /// Like [`PasswordHasher::verify`], but with no stored hash it spends the same time on a
    /// dummy hash and answers false.
    pub async fn verify_or_dummy(&self, candidate: &str, stored: Option<&str>) -> bool {
        match stored {
            Some(hash) => self.verify(candidate, hash).await,
            None => {
                let dummy = self
                    .dummy
                    .get_or_init(|| async {
                        let filler =
                            Password(SecretString::from("portcullis-dummy-password".to_string()));
                        self.hash(&filler).await.unwrap_or_default()
                    })
                    .await;
                let _ = self.verify(candidate, dummy).await;
                false
            }
        }
    }

    /// Whether `candidate` matches the PHC string `stored` (compared in constant time).
    #[tracing::instrument(name = "password.verify", skip_all)]
    pub async fn verify(&self, candidate: &str, stored: &str) -> bool {
        let _queued = self.enter();
        let candidate = SecretString::from(candidate.to_string());
        let stored = stored.to_string();
        let budget = self.argon.params().block_count();
        self.pool
            .run(move |memory| matches(memory, budget, candidate.expose_secret(), &stored))
            .await
            .unwrap_or(false)
    }
}

/// A stored hash asking for more memory than this is refused rather than computed (a
/// corrupt or foreign hash must not make a hashing thread allocate gigabytes).
const MAX_STORED_MEMORY_KIB: u32 = 1024 * 1024;

/// argon2 of `password` and `salt` with `argon`'s parameters. Up to `budget` blocks (the
/// configured `memory_kib`) run in the thread's own `memory`, grown to fit once; a larger
/// stored hash (parameters since lowered) gets memory of its own for this one computation.
fn compute(
    argon: &Argon2<'_>,
    memory: &mut Vec<Block>,
    budget: usize,
    password: &str,
    salt: &SaltString,
    output_len: Option<usize>,
) -> Result<Output, PasswordError> {
    let mut salt_buf = [0u8; 64];
    let salt = salt
        .as_salt()
        .decode_b64(&mut salt_buf)
        .map_err(|_| PasswordError::Hashing)?;
    let blocks = argon.params().block_count();
    let mut own = Vec::new();
    let memory = if blocks <= budget { memory } else { &mut own };
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
    let len = output_len.unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let blocks = memory.get_mut(..blocks).ok_or(PasswordError::Hashing)?;
    Output::init_with(len, |out| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut *blocks)
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(|_| PasswordError::Hashing)
}

/// Whether `candidate` hashes to the PHC string `stored`, with the parameters `stored` names
/// (they may predate the configured ones: see the rehash at sign-in). `Output` compares in
/// constant time.
fn matches(memory: &mut Vec<Block>, budget: usize, candidate: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    if params.m_cost() > MAX_STORED_MEMORY_KIB {
        return false;
    }
    let Ok(salt) = SaltString::from_b64(salt.as_str()) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params);
    compute(
        &argon,
        memory,
        budget,
        candidate,
        &salt,
        Some(expected.len()),
    )
    .is_ok_and(|computed| computed == expected)
}

/// Counts a hash as in flight until dropped.
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordSettings {
        PasswordSettings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            ..PasswordSettings::default()
        }
    }

    #[test]
    fn length_policy_counts_characters() {
        let p = PasswordSettings::default();
        assert_eq!(
            Password::parse("short".into(), &p).unwrap_err(),
            PasswordError::TooShort(8)
        );
        assert!(Password::parse("ééééééé".into(), &p).is_err());
        assert!(Password::parse("éééééééé".into(), &p).is_ok());
        assert!(Password::parse("x".repeat(129), &p).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("hunter22".into(), &p).unwrap()),
            "Password([REDACTED])"
        );
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let hasher = PasswordHasher::new(&cheap()).unwrap();
        let pw = Password::parse("correct horse".into(), &cheap()).unwrap();
        let hash = hasher.hash(&pw).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(hasher.verify("correct horse", &hash).await);
        assert!(!hasher.verify("wrong horse", &hash).await);
        assert!(!hasher.verify("correct horse", "garbage").await);
    }

    /// The pool's reused memory gives the very hashes the argon2 crate's own API gives, both
    /// ways, and hashes made with other parameters (before a rehash) still verify.
    #[tokio::test]
    async fn hashes_match_the_argon2_crates_own_in_both_directions() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = PasswordHasher::new(&cheap()).unwrap();
        let pw = Password::parse("correct horse".into(), &cheap()).unwrap();
        let ours = hasher.hash(&pw).await.unwrap();
        let reference = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        );
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(reference.verify_password(b"correct horse", &parsed).is_ok());
        assert!(ours.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{ours}");

        for (m, t, p) in [(64, 1, 1), (256, 2, 1), (128, 1, 2)] {
            let other = Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(m, t, p, None).unwrap(),
            );
            let salt = SaltString::generate(&mut OsRng);
            let theirs = other
                .hash_password(b"correct horse", &salt)
                .unwrap()
                .to_string();
            assert!(hasher.verify("correct horse", &theirs).await, "{theirs}");
            assert!(!hasher.verify("correct horsf", &theirs).await);
        }
    }
}
