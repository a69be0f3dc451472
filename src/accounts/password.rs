//! Passwords: a type that cannot be printed, a length policy, and argon2id hashing that runs on
//! a small dedicated thread pool, so it never stalls the async workers.

use std::fmt;
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
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

type Job = Box<dyn FnOnce() + Send>;

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
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
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
    async fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let parent = tracing::Span::current();
        let job: Job = Box::new(move || {
            let _span = tracing::info_span!(parent: &parent, "argon2").entered();
            let _ = tx.send(f());
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
            .run(move || {
                let salt = SaltString::generate(&mut OsRng);
                argon
                    .hash_password(secret.expose_secret().as_bytes(), &salt)
                    .map(|h| h.to_string())
                    .map_err(|_| PasswordError::Hashing)
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

    /// Whether `candidate` matches the PHC string `stored` (constant time inside argon2).
    #[tracing::instrument(name = "password.verify", skip_all)]
    pub async fn verify(&self, candidate: &str, stored: &str) -> bool {
        let _queued = self.enter();
        let argon = self.argon.clone();
        let candidate = SecretString::from(candidate.to_string());
        let stored = stored.to_string();
        self.pool
            .run(move || {
                PasswordHash::new(&stored)
                    .map(|parsed| {
                        argon
                            .verify_password(candidate.expose_secret().as_bytes(), &parsed)
                            .is_ok()
                    })
                    .unwrap_or(false)
            })
            .await
            .unwrap_or(false)
    }
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
}
