-- KMS key scheduled for deletion
-- kms_key_deletion_scheduled: see kms_key_deletion_scheduled.yaml for what it means, references and tests.
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       'ScheduleKeyDeletion of ' || coalesce(key_arn, max(key_ref), 'a key') || ' with a ' || coalesce(CAST(min(pending_window_in_days) AS VARCHAR), '?') || '-day window by ' || coalesce(principal, 'an unknown principal') AS summary,
       CASE WHEN min(pending_window_in_days) <= 7 THEN 'critical' ELSE 'high' END AS severity
FROM window_events
WHERE event_name = 'ScheduleKeyDeletion' AND error_code IS NULL
GROUP BY principal, key_arn, account_id, aws_region
