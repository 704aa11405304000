//! Cluster singleton jobs under a Redis lock: the history retention job runs on one instance
//! at a time, and resumes on another when its holder is killed.

use std::time::Duration;

use crate::harness::cluster::TestCluster;

/// Retention settings that make one purge take several seconds: two messages per batch.
const JOB_ENV: [(&str, &str); 5] = [
    ("HISTORY_RETENTION_DAYS", "1"),
    ("HISTORY_RETENTION_INTERVAL_SECS", "1"),
    ("HISTORY_RETENTION_BATCH_SIZE", "2"),
    ("HISTORY_RETENTION_BATCH_PAUSE_MS", "400"),
    ("JOB_LOCK_TTL_SECS", "5"),
];

async fn number(cluster: &TestCluster, sql: &str) -> i64 {
    cluster.sql_number(sql).await
}

/// `(instance, started_at, last sign of life)` of every retention run.
async fn runs(cluster: &TestCluster) -> Vec<(String, i64, i64)> {
    cluster
        .postgres
        .psql(
            "SELECT instance_id || ',' || started_at || ',' || COALESCE(finished_at, updated_at) \
             FROM job_runs WHERE job = 'history-retention' ORDER BY started_at",
        )
        .await
        .lines()
        .filter_map(|line| {
            let mut parts = line.split(',');
            Some((
                parts.next()?.to_owned(),
                parts.next()?.parse().ok()?,
                parts.next()?.parse().ok()?,
            ))
        })
        .collect()
}

#[tokio::test]
async fn the_retention_job_runs_on_one_instance_at_a_time_and_resumes_after_its_holder_is_killed() {
    let mut cluster = TestCluster::start(0).await;
    cluster.add_instance_with(&JOB_ENV).await;
    cluster.add_instance_with(&JOB_ENV).await;
    cluster
        .postgres
        .psql(
            "INSERT INTO users (id, username, username_key, password_hash, analytics_opted_out, created_at) \
             VALUES (900000, 'archivist', 'archivist', 'x', 0, 0)",
        )
        .await;
    // 40 messages from 1970 (expired) and 3 from now (kept).
    cluster
        .postgres
        .psql(
            "INSERT INTO messages (id, room, user_id, username, body, instance_id, created_at) \
             SELECT 900000 + g, 'archive', 900000, 'archivist', 'old', 'web-0', 1000 \
             FROM generate_series(1, 40) g",
        )
        .await;
    cluster
        .postgres
        .psql(
            "INSERT INTO messages (id, room, user_id, username, body, instance_id, created_at) \
             SELECT 950000 + g, 'archive', 900000, 'archivist', 'new', 'web-0', \
             (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT FROM generate_series(1, 3) g",
        )
        .await;

    // Find the instance running the purge, and kill it mid-run.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let holder = loop {
        let holder = cluster
            .postgres
            .psql(
                "SELECT instance_id FROM job_runs WHERE job = 'history-retention' \
                 AND finished_at IS NULL AND affected > 0 LIMIT 1",
            )
            .await;
        if !holder.trim().is_empty() {
            break holder.trim().to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no instance started purging; runs: {:?}",
            runs(&cluster).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let index = match holder.as_str() {
        "web-1" => 0,
        "web-2" => 1,
        other => panic!("unexpected holder {other}"),
    };
    cluster.instances[index].signal("KILL");
    let _ = cluster.instances[index]
        .wait_exit(Duration::from_secs(10))
        .await;
    let left_by_holder = number(&cluster, "SELECT COUNT(*) FROM messages WHERE body = 'old'").await;
    assert!(
        left_by_holder > 0,
        "the holder was killed mid-purge, so old messages remain"
    );

    let survivor = if index == 0 { "web-2" } else { "web-1" };
    let finished_by_survivor = format!(
        "SELECT COUNT(*) FROM job_runs WHERE job = 'history-retention' \
         AND instance_id = '{survivor}' AND affected > 0 AND finished_at IS NOT NULL"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while number(&cluster, &finished_by_survivor).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the purge did not resume and finish on {survivor}; runs: {:?}",
            runs(&cluster).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        number(&cluster, "SELECT COUNT(*) FROM messages WHERE body = 'old'").await,
        0,
        "every expired message is gone"
    );
    assert_eq!(
        number(&cluster, "SELECT COUNT(*) FROM messages WHERE body = 'new'").await,
        3,
        "recent messages are kept"
    );

    // No two runs of different instances overlap in time.
    let runs = runs(&cluster).await;
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            if a.0 != b.0 {
                assert!(
                    a.2 <= b.1 || b.2 <= a.1,
                    "runs overlap: {a:?} and {b:?} (all: {runs:?})"
                );
            }
        }
    }
}
