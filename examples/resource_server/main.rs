//! An API protected by Portcullis access tokens: `cargo run --example resource_server`.
//!
//! ```sh
//! portcullis resource create --identifier https://orders.example.com --scope orders:read
//! portcullis client create --name batch --grant client_credentials --scope orders:read \
//!     --resource https://orders.example.com --json
//! TOKEN=$(curl -s -u "$ID:$SECRET" http://localhost:8080/token -d grant_type=client_credentials \
//!     -d resource=https://orders.example.com | jq -r .access_token)
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3001/orders
//! ```
//!
//! Settings from the environment: `ISSUER` (default http://localhost:8080), `AUDIENCE` (this
//! API's resource identifier, default https://orders.example.com), `LISTEN` (default
//! 127.0.0.1:3001) and `PUBLIC_URL` (how clients reach it, for DPoP proofs' `htu`).

mod guard;

use std::sync::Arc;

use poem::listener::TcpListener;
use poem::Server;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let issuer = env("ISSUER", "http://localhost:8080");
    let audience = env("AUDIENCE", "https://orders.example.com");
    let listen = env("LISTEN", "127.0.0.1:3001");
    let public_url = env("PUBLIC_URL", &format!("http://{listen}"));
    let guard = Arc::new(guard::Guard::new(&issuer, &audience, &public_url));
    println!("orders API on {public_url}, accepting tokens of {issuer} for {audience}");
    Server::new(TcpListener::bind(listen))
        .run(guard::app(guard))
        .await
}
