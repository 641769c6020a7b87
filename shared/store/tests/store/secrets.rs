//! Secrets at rest across a key rotation: sealed under the old key, opened
//! during the rotation with the old key as the previous one, sealed again
//! under the new key by `reencrypt`, then opened with the new key alone.

use crust_store::secrets::{self, Keyring, SecretKey};

use crate::support::Store;

const OLD: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const NEW: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf";

fn ring(current: &str, previous: Option<&str>) -> Keyring {
    Keyring {
        current: SecretKey::parse(current).unwrap(),
        previous: previous.map(|key| SecretKey::parse(key).unwrap()),
    }
}

#[tokio::test]
async fn a_key_rotation_reseals_every_secret_under_the_new_key() {
    let store = Store::new().await;
    let pool = &store.pool;
    secrets::put(pool, &ring(OLD, None), "one", "first-value")
        .await
        .unwrap();
    secrets::put(pool, &ring(OLD, None), "two", "second-value")
        .await
        .unwrap();

    // The new key alone opens nothing yet; with the old one beside it, all.
    assert!(secrets::load(pool, &ring(NEW, None)).await.is_err());
    let rotating = ring(NEW, Some(OLD));
    assert_eq!(secrets::load(pool, &rotating).await.unwrap().len(), 2);

    assert_eq!(secrets::reencrypt(pool, &rotating).await.unwrap(), 2);
    assert_eq!(
        secrets::reencrypt(pool, &rotating).await.unwrap(),
        0,
        "nothing left"
    );
    let values = secrets::load(pool, &ring(NEW, None)).await.unwrap();
    assert_eq!(values["one"], "first-value");
    assert_eq!(values["two"], "second-value");
    assert!(
        secrets::load(pool, &ring(OLD, None)).await.is_err(),
        "the old key is done"
    );
}
