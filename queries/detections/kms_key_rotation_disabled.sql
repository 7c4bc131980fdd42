-- KMS key rotation disabled
-- kms_key_rotation_disabled: see kms_key_rotation_disabled.yaml for what it means, references and tests.
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       'DisableKeyRotation on ' || coalesce(key_arn, max(key_ref), 'a key') || ' by ' || coalesce(principal, 'an unknown principal') AS summary
FROM window_events
WHERE event_name = 'DisableKeyRotation' AND error_code IS NULL
GROUP BY principal, key_arn, account_id, aws_region
