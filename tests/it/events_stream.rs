//! The Redis stream (issue 18 §5): a consumer group reads every event in order; while Redis
//! is unreachable events wait in the outbox, and they flow when it returns. Redis sits
//! behind a TCP proxy the test can cut. Needs Redis: skipped without it, failed under CI.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis::store::EventQuery;

use crate::common::{app_with, redis_base_url, TestApp};
use crate::events::new_client;

/// A TCP proxy in front of Redis that can refuse and drop every connection.
struct Proxy {
    url: String,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let links = Arc::new(Mutex::new(Vec::new()));
        let (up2, links2) = (up.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                links2.lock().unwrap().push(link);
            }
        });
        Proxy { url, up, links }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

async fn unstreamed(app: &TestApp) -> usize {
    app.state
        .store
        .recent_events(&EventQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .filter(|e| e.streamed_at.is_none())
        .count()
}

/// Reads what the group has not seen yet: the event ids, in stream order.
async fn read_group(conn: &mut redis::aio::MultiplexedConnection, stream: &str) -> Vec<String> {
    let reply: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("provisioning")
        .arg("worker-1")
        .arg("COUNT")
        .arg(100)
        .arg("BLOCK")
        .arg(200)
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(conn)
        .await
        .unwrap_or(redis::Value::Nil);
    // [[stream, [[entry id, [field, value, ...]], ...]]]: the value after each `id` field.
    fn strings(v: &redis::Value, out: &mut Vec<String>) {
        match v {
            redis::Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
            redis::Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
            _ => {}
        }
    }
    let mut flat = Vec::new();
    strings(&reply, &mut flat);
    flat.windows(2)
        .filter(|w| w[0] == "id")
        .map(|w| w[1].clone())
        .collect()
}

async fn read_until(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    n: usize,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "the group read {} of {n}",
            got.len()
        );
        got.extend(read_group(conn, stream).await);
    }
    got
}

#[tokio::test]
async fn a_consumer_group_reads_every_event_and_an_outage_only_delays_them() {
    let Some(redis_url) = redis_base_url() else {
        eprintln!("skipped: set PORTCULLIS_TEST_REDIS_URL to test the Redis stream");
        return;
    };
    let upstream = url::Url::parse(&redis_url).unwrap();
    let upstream = format!(
        "{}:{}",
        upstream.host_str().unwrap(),
        upstream.port().unwrap_or(6379)
    );
    let proxy = Proxy::start(upstream).await;
    let stream = format!("pc-test-events-{}", uuid::Uuid::new_v4().simple());
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("provisioning")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .unwrap();
    let (proxy_url, name) = (proxy.url.clone(), stream.clone());
    let app = app_with(move |s| {
        s.redis.url = Some(proxy_url);
        s.events.redis_stream = Some(name);
        s.events.poll_interval_ms = 20;
    })
    .await;

    for i in 0..3 {
        new_client(&app, &format!("client {i}")).await;
    }
    let first = read_until(&mut conn, &stream, 3).await;
    let mut outbox: Vec<String> = app
        .state
        .store
        .recent_events(&EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    outbox.reverse();
    assert_eq!(first, outbox, "every event, in the outbox's order");

    // Redis unreachable: the events wait in the outbox, none is lost or marked streamed.
    proxy.cut();
    for i in 3..5 {
        new_client(&app, &format!("client {i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(unstreamed(&app).await, 2);
    let len: usize = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 3);

    // Back: they flow.
    proxy.restore();
    let rest = read_until(&mut conn, &stream, 2).await;
    assert_eq!(rest.len(), 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while unstreamed(&app).await > 0 {
        assert!(
            Instant::now() < deadline,
            "events still wait after Redis returned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut conn)
        .await
        .unwrap();
}
