-- KMS key disabled
-- kms_key_disabled: see kms_key_disabled.yaml for what it means, references and tests.
SELECT principal, key_arn, account_id, aws_region,
       min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
       'DisableKey on ' || coalesce(key_arn, max(key_ref), 'a key') || ' by ' || coalesce(principal, 'an unknown principal') AS summary
FROM window_events
WHERE event_name = 'DisableKey' AND error_code IS NULL
GROUP BY principal, key_arn, account_id, aws_region
