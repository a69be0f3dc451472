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
                .filter(|r| r.contains(" = ") && !r.starts_with("master_key ="))
                .unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.toml");
    std::fs::write(&file, &uncommented).unwrap();
    let loaded = Settings::load(Some(&file)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.listen, "127.0.0.1:8080");
    // And every key of the defaults appears in the example.
    let defaults = toml_keys(&serde_json::to_value(Settings::default()).unwrap(), "");
    for key in defaults {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            text.contains(&format!("{leaf} =")),
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
