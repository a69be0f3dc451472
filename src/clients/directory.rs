//! Registered clients as the endpoints read them: from memory for a moment, so a grant
//! does not wait on the database for a row that almost never changes. Decides nothing about
//! clients; never remembers a miss (unknown ids are whatever a caller sends).
//!
//! Staleness is bounded twice: an entry lives `database.client_cache_secs` (1 s by default),
//! and the CLI's `client delete` announces the change through Redis (when configured) so every
//! instance forgets its entries at once. A new client needs no announcement: misses are not
//! remembered.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::clock::Clock;
use crate::store::{Client, Store, StoreResult, Timestamp};

/// Beyond this many cached clients the memory starts over (a deployment has far fewer).
const CAPACITY: usize = 10_000;

#[derive(Default)]
struct Entries {
    by_id: HashMap<String, (Client, Timestamp)>,
    first_party: Option<(Client, Timestamp)>,
    /// Bumped by every invalidation: a read that started before one must not store what it
    /// read (it may be the client that was just deleted).
    generation: u64,
}

pub struct ClientDirectory {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// 0: every lookup reads the database.
    ttl_secs: i64,
    entries: RwLock<Entries>,
}

impl ClientDirectory {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ttl_secs: u64) -> ClientDirectory {
        ClientDirectory {
            store,
            clock,
            ttl_secs: ttl_secs as i64,
            entries: RwLock::default(),
        }
    }

    fn fresh(&self, entry: Option<&(Client, Timestamp)>) -> Option<Client> {
        let now = self.clock.now();
        entry
            .filter(|(_, until)| now < *until)
            .map(|(c, _)| c.clone())
    }

    fn generation(&self) -> u64 {
        self.entries.read().map(|e| e.generation).unwrap_or(0)
    }

    /// The client registered as `id`, if any.
    pub async fn get(&self, id: &str) -> StoreResult<Option<Client>> {
        if self.ttl_secs > 0 {
            if let Ok(entries) = self.entries.read() {
                if let Some(hit) = self.fresh(entries.by_id.get(id)) {
                    return Ok(Some(hit));
                }
            }
        }
        let generation = self.generation();
        // A switched-off client is unknown to every endpoint.
        let found = self.store.get_client(id).await?.filter(|c| !c.disabled);
        if let Some(client) = &found {
            self.remember(Some(id), client, generation);
        }
        Ok(found)
    }

    /// Keeps `client` (under `id`, or as the first-party client) unless the cache was
    /// invalidated since `generation` was read: that read may predate a deletion.
    fn remember(&self, id: Option<&str>, client: &Client, generation: u64) {
        if self.ttl_secs == 0 {
            return;
        }
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if entries.generation != generation {
            return;
        }
        let entry = (client.clone(), self.clock.now() + self.ttl_secs);
        match id {
            Some(id) => {
                if entries.by_id.len() >= CAPACITY {
                    entries.by_id.clear();
                }
                entries.by_id.insert(id.to_string(), entry);
            }
            None => entries.first_party = Some(entry),
        }
    }

    /// The first-party client the account API issues tokens to.
    pub async fn first_party(&self) -> StoreResult<Option<Client>> {
        if self.ttl_secs > 0 {
            if let Ok(entries) = self.entries.read() {
                if let Some(hit) = self.fresh(entries.first_party.as_ref()) {
                    return Ok(Some(hit));
                }
            }
        }
        let generation = self.generation();
        let found = self
            .store
            .first_party_client()
            .await?
            .filter(|c| !c.disabled);
        if let Some(client) = &found {
            self.remember(None, client, generation);
        }
        Ok(found)
    }

    /// Forgets everything: another process changed the clients.
    pub fn invalidate(&self) {
        if let Ok(mut entries) = self.entries.write() {
            let generation = entries.generation.wrapping_add(1);
            *entries = Entries {
                generation,
                ..Entries::default()
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    type Fixture = (
        ClientDirectory,
        Arc<dyn Store>,
        ManualClock,
        tempfile::TempDir,
    );

    async fn directory(ttl: u64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/c.db", dir.path().display());
        let store = crate::store::open(&url, 2).await.unwrap();
        let clock = ManualClock::new(1000);
        let d = ClientDirectory::new(store.clone(), Arc::new(clock.clone()), ttl);
        (d, store, clock, dir)
    }

    fn client(id: &str) -> Client {
        let reg = crate::clients::ClientRegistration {
            name: "c".into(),
            redirect_uris: vec!["https://rp.example.com/cb".into()],
            ..Default::default()
        };
        let mut c = crate::clients::prepare(&reg, 1000).unwrap().client;
        c.id = id.into();
        c
    }

    #[tokio::test]
    async fn a_deleted_client_is_forgotten_after_the_ttl_or_at_once_on_invalidation() {
        let (d, store, clock, _dir) = directory(10).await;
        assert_eq!(d.get("a").await.unwrap(), None, "misses are not remembered");
        store.create_client(&client("a"), &[]).await.unwrap();
        assert!(d.get("a").await.unwrap().is_some());
        store.delete_client("a", &[]).await.unwrap();
        assert!(d.get("a").await.unwrap().is_some(), "served from memory");
        clock.advance(10);
        assert_eq!(d.get("a").await.unwrap(), None, "the entry lived 10 s");

        store.create_client(&client("b"), &[]).await.unwrap();
        assert!(d.get("b").await.unwrap().is_some());
        store.delete_client("b", &[]).await.unwrap();
        d.invalidate();
        assert_eq!(d.get("b").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_read_that_straddles_an_invalidation_is_not_kept() {
        let (d, store, _, _dir) = directory(10).await;
        store.create_client(&client("a"), &[]).await.unwrap();
        let read_before = d.generation();
        let stale = store.get_client("a").await.unwrap().unwrap();
        // Meanwhile: the CLI deletes the client and the announcement arrives.
        store.delete_client("a", &[]).await.unwrap();
        d.invalidate();
        d.remember(Some("a"), &stale, read_before);
        d.remember(None, &stale, read_before);
        assert_eq!(d.get("a").await.unwrap(), None);
        assert_eq!(d.first_party().await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_zero_ttl_reads_the_database_every_time() {
        let (d, store, _, _dir) = directory(0).await;
        store.create_client(&client("a"), &[]).await.unwrap();
        assert!(d.get("a").await.unwrap().is_some());
        store.delete_client("a", &[]).await.unwrap();
        assert_eq!(d.get("a").await.unwrap(), None);
    }
}
