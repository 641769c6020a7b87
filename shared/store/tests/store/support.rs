//! A database of the test's own, with a pool on it.

use crust_testing::TestDb;
use sqlx::PgPool;

pub struct Store {
    pub pool: PgPool,
    _db: TestDb,
}

impl Store {
    /// A fresh database (cloned from the migrated template) and a pool.
    pub async fn new() -> Store {
        let db = TestDb::new().await;
        let pool = PgPool::connect(&db.url).await.unwrap();
        Store { pool, _db: db }
    }
}
