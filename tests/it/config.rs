//! Layered configuration: defaults, then a TOML file.

use portcullis::config::Settings;

#[test]
fn the_example_config_is_valid_and_documents_every_key() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/portcullis.example.toml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    // Every key, uncommented, must load (the master key's placeholder aside).
    let uncommented: String = text
        .lines()
        .map(|l| {
            l.strip_prefix("# ")
                .filter(|r| {
                    (r.contains(" = ") && !r.starts_with("master_key =")) || *r == "[[upstream]]"
                })
                .unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.toml");
    std::fs::write(&file, &uncommented).unwrap();
    let loaded = Settings::load(Some(&file)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.listen, "127.0.0.1:8080");
    // The example's upstream providers load (and are validated) too.
    assert_eq!(loaded.upstream.len(), 3);
    // And every key of the defaults appears in the example.
    let defaults = toml_keys(&serde_json::to_value(Settings::default()).unwrap(), "");
    for key in defaults {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            text.contains(&format!("{leaf} =")) || text.contains(&format!("# [[{leaf}]]")),
            "config/portcullis.example.toml does not document `{key}`"
        );
    }
    assert!(text.contains("master_key ="), "master_key is documented");
    assert!(text.contains("[redis]") && text.contains("url ="));
}

fn toml_keys(v: &serde_json::Value, prefix: &str) -> Vec<String> {
    match v {
        serde_json::Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    serde_json::Value::Object(_) => toml_keys(v, &path),
                    _ => vec![path],
                }
            })
            .collect(),
        _ => vec![],
    }
}

#[test]
fn file_values_override_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        "issuer = \"https://id.example.com\"\n[tokens]\naccess_token_ttl_secs = 900\n",
    )
    .unwrap();
    let s = Settings::load(Some(&file)).unwrap();
    assert_eq!(s.issuer, "https://id.example.com");
    assert_eq!(s.tokens.access_token_ttl_secs, 900);
    assert_eq!(s.tokens.id_token_ttl_secs, 600);
    assert_eq!(s.database.url, "sqlite://data/portcullis.db");
}

#[test]
fn issuers_must_be_https_or_loopback_without_trailing_slash() {
    let mut s = Settings::default();
    for bad in [
        "http://id.example.com",
        "https://id.example.com/",
        "https://id.example.com?x=1",
        "id.example.com",
    ] {
        s.issuer = bad.into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("`issuer`") && err.contains(bad), "{err}");
    }
    for good in [
        "https://id.example.com",
        "https://example.com/auth",
        "http://localhost:8080",
        "http://127.0.0.1:9000",
    ] {
        s.issuer = good.into();
        s.validate().unwrap();
    }
}

#[test]
fn the_ipv6_prefix_must_lie_between_48_and_128() {
    let mut s = Settings::default();
    assert_eq!(s.rate_limits.ipv6_prefix, 64);
    for bad in [0u8, 47, 129, 255] {
        s.rate_limits.ipv6_prefix = bad;
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.contains("`rate_limits.ipv6_prefix`")
                && err.contains(&format!("\"{bad}\""))
                && err.contains("between 48 and 128"),
            "{err}"
        );
    }
    for good in [48u8, 56, 64, 128] {
        s.rate_limits.ipv6_prefix = good;
        s.validate().unwrap();
    }
    // From a file too, with the key named.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, "[rate_limits]\nipv6_prefix = 32\n").unwrap();
    let err = Settings::load(Some(&file)).unwrap_err().to_string();
    assert!(
        err.contains("rate_limits.ipv6_prefix") && err.contains("32"),
        "{err}"
    );
}

#[test]
fn upstream_entries_load_from_toml_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("u.toml");
    let load = |text: &str| {
        std::fs::write(&file, text).unwrap();
        Settings::load(Some(&file)).map_err(|e| e.to_string())
    };
    let s = load(
        r#"
[[upstream]]
id = "google"
name = "Google"
issuer = "https://accounts.google.com"
client_id = "abc"
client_secret = "shh"
trust_email = true

[[upstream]]
id = "gh"
name = "GitHub"
kind = "github"
client_id = "def"
client_secret_env = "GH_SECRET"
"#,
    )
    .unwrap();
    assert_eq!(s.upstream.len(), 2);
    assert_eq!(
        s.upstream[0].effective_scopes(),
        vec!["openid", "email", "profile"]
    );
    assert_eq!(
        s.upstream[1].token_endpoint().as_deref(),
        Some("https://github.com/login/oauth/access_token")
    );
    assert_eq!(s.upstream[1].claim_path("sub").as_deref(), Some("id"));

    let entry = |extra: &str| {
        format!("[[upstream]]\nid = \"x\"\nname = \"X\"\nclient_id = \"c\"\n{extra}\n")
    };
    for (text, key) in [
        (entry(""), "upstream.issuer"),
        (entry("issuer = \"not a url\""), "upstream.issuer"),
        (
            entry("issuer = \"https://x.example\"\nscopes = [\"email\"]"),
            "upstream.scopes",
        ),
        (entry("kind = \"oauth2\""), "upstream.authorization_url"),
        (
            entry("kind = \"oauth2\"\nauthorization_url = \"https://x.example/a\"\ntoken_url = \"https://x.example/t\"\nuserinfo_url = \"https://x.example/u\""),
            "upstream.claims",
        ),
        (
            entry("kind = \"github\"\nclaims = { subject = \"id\" }"),
            "upstream.claims",
        ),
        (
            entry("kind = \"github\"\nclient_secret = \"a\"\nclient_secret_env = \"B\""),
            "upstream.client_secret_env",
        ),
        (
            "[[upstream]]\nid = \"has space\"\nname = \"X\"\nclient_id = \"c\"\nkind = \"github\"\n"
                .to_string(),
            "upstream.id",
        ),
        (
            format!("{}{}", entry("kind = \"github\""), entry("kind = \"github\"")),
            "upstream.id",
        ),
    ] {
        let err = load(&text).unwrap_err();
        assert!(err.contains(key), "{text} -> {err}");
    }
    // An unknown key is named too.
    let err = load(&entry("kind = \"github\"\nsecret = \"typo\"")).unwrap_err();
    assert!(err.contains("secret"), "{err}");
}

#[tokio::test]
async fn a_missing_client_secret_variable_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::common::fresh_database_url(dir.path()).await;
    let mut s = crate::common::test_settings(dir.path(), url);
    let text = "[[upstream]]\nid = \"gh\"\nname = \"GitHub\"\nkind = \"github\"\nclient_id = \"c\"\nclient_secret_env = \"PORTCULLIS_TEST_SURELY_UNSET_SECRET\"\n";
    let file = dir.path().join("u.toml");
    std::fs::write(&file, text).unwrap();
    s.upstream = Settings::load(Some(&file)).unwrap().upstream;
    let err = match portcullis::Portcullis::build(s).await {
        Ok(_) => panic!("started without the secret"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("PORTCULLIS_TEST_SURELY_UNSET_SECRET") && err.contains("gh"),
        "{err}"
    );
}
