-- Use of a key pending deletion
-- kms_key_pending_deletion_used: see kms_key_pending_deletion_used.yaml for what it means, references and tests.
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       count(*) || ' call(s) by ' || coalesce(principal, 'an unknown principal') || ' to ' || coalesce(key_arn, 'a key') || ', which is pending deletion' AS summary
FROM window_events
WHERE error_code = 'KMSInvalidStateException' AND lower(coalesce(error_message, '')) LIKE '%pending deletion%'
GROUP BY principal, key_arn, account_id, aws_region
