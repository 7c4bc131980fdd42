-- The trail's bucket: policy, lifecycle or the bucket itself changed
-- kms_trail_bucket_tampered: see kms_trail_bucket_tampered.yaml for what it means, references and tests.
SELECT principal, CAST(NULL AS VARCHAR) AS key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       array_to_string(array_agg(DISTINCT event_name), ', ') || ' on the trail bucket ' || target || ' by '
         || coalesce(principal, 'an unknown principal') AS summary,
       CASE WHEN bool_or(event_name = 'DeleteBucket') THEN 'critical' ELSE 'high' END AS severity,
       target AS dedup_on
FROM window_trail_events
WHERE event_source = 's3.amazonaws.com' AND error_code IS NULL
  AND target IN (SELECT bucket FROM trail_buckets)
GROUP BY principal, account_id, aws_region, target
