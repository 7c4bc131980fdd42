WITH trail_buckets AS (
    SELECT DISTINCT bucket FROM (
        SELECT s3_bucket AS bucket FROM trail_events
        WHERE event_name IN ('CreateTrail', 'UpdateTrail') AND s3_bucket IS NOT NULL
        UNION ALL
        SELECT digest_s3_bucket AS bucket FROM digests_files WHERE digest_s3_bucket IS NOT NULL)
)
SELECT t.event_time, t.account_id, t.aws_region, t.event_name, t.impact, t.target,
       t.principal, t.source_ip, t.error_code,
       t.error_code IS NULL AND t.impact IN (
           'logging_stopped', 'trail_deleted', 'kms_events_excluded',
           'management_events_excluded', 'read_events_excluded', 'bucket_deleted',
           'bucket_policy_changed', 'bucket_policy_deleted', 'bucket_lifecycle_changed',
           'bucket_lifecycle_deleted') AS finding,
       t.event_id, t.source_object
FROM trail_events t CROSS JOIN report_period p
WHERE t.event_time >= p.since AND t.event_time < p.until
  AND (t.event_source = 'cloudtrail.amazonaws.com'
       OR EXISTS (SELECT 1 FROM trail_buckets b WHERE b.bucket = t.target))
ORDER BY t.event_time, t.event_id
